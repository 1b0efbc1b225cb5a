"""Where reports go, written once and never replaced.

    registry/diamond_price-v{N}.report.html                   the run that promoted version N
    registry/reports/diamond_price-{UTC}-rejected.report.html a run whose candidate lost the gate
    registry/reports/diamond_price-{UTC}-failed.report.html   a run that stopped on an error

``{UTC}`` is the run's time, e.g. ``20261130T052401Z``. The history line of a completed run names
its report relative to the registry directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from inference.modelsettings import MODEL_NAME, REPORT_SUFFIX, report_path
from inference.paths import PROJECT_ROOT
from training.registry import write_new

UNPROMOTED_DIR = "reports"


def write_once(path: Path, html: str) -> Path:
    """Write ``path`` atomically; fails with :class:`FileExistsError` rather than replace it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_new(path, html.encode())
    return path


def save_promoted(registry: Path, version: int, html: str) -> Path:
    """Version ``version``'s report, beside its model file."""
    return write_once(report_path(registry, version), html)


def save_unpromoted(registry: Path, when: datetime, outcome: str, html: str) -> Path:
    """A rejected or failed run's report under ``registry/reports/``, named by its UTC time."""
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    directory = registry / UNPROMOTED_DIR
    for n in range(1, 100):
        suffix = "" if n == 1 else f"-{n}"
        try:
            return write_once(directory / f"{MODEL_NAME}-{stamp}{suffix}-{outcome}{REPORT_SUFFIX}", html)
        except FileExistsError:
            continue  # another run in the same second
    raise FileExistsError(f"too many reports named {MODEL_NAME}-{stamp}-*-{outcome}{REPORT_SUFFIX} in {directory}")


def relative_to_registry(registry: Path, path: Path) -> str:
    """How a history line names a report."""
    return path.resolve().relative_to(registry.resolve()).as_posix()


def shown_path(path: Path) -> str:
    """How a report names a file: relative to the project when it is inside, else by its name alone.
    A report is shared and published; the directories of the machine that wrote it are not its content."""
    try:
        return path.resolve().relative_to(PROJECT_ROOT).as_posix()
    except (ValueError, OSError):
        return path.name


def without_paths(text: str, paths: Iterable[Path]) -> str:
    """``text`` (an error message) with each of ``paths``, as given or resolved, as :func:`shown_path` names it."""
    for path in paths:
        for spelling in sorted({str(path), str(path.resolve())}, key=len, reverse=True):
            text = text.replace(spelling, shown_path(path))
    return text
