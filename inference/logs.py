"""Logging set-up for the entry points: info and below to stdout, warnings and errors to stderr."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Below(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def configure_logging(level: int | str = logging.INFO, fmt: str = FORMAT) -> None:
    """Route records below WARNING to stdout and the rest to stderr. Call once, at start-up."""
    formatter = logging.Formatter(fmt)
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(_Below(logging.WARNING))
    out.setFormatter(formatter)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    err.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [out, err]
    root.setLevel(level)


def logging_dict(level: int | str = logging.INFO, fmt: str = FORMAT) -> dict[str, object]:
    """:func:`configure_logging`'s routing as a ``dictConfig``: uvicorn applies it in every worker."""
    level_name = logging.getLevelName(level) if isinstance(level, int) else level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"below_warning": {"()": _Below, "level": logging.WARNING}},
        "formatters": {"default": {"format": fmt}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "filters": ["below_warning"],
                "formatter": "default",
            },
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "level": "WARNING",
                "formatter": "default",
            },
        },
        "root": {"handlers": ["stdout", "stderr"], "level": level_name},
        "loggers": {
            "uvicorn": {"level": level_name},
            "uvicorn.error": {"level": level_name},
            "uvicorn.access": {"level": level_name},
        },
    }
