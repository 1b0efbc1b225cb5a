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
