"""The report of a training run: one self-contained HTML page per run of ``python -m training``.

A completed run renders its report before it changes anything (:func:`render_run`), then saves it
(:func:`save_run`): beside the model for a promotion, under ``registry/reports/`` for a rejection.
A run that stops on an error gets a shorter report there too (:func:`write_failure`). See
:mod:`training.report.files` for the names, :mod:`training.report.content` for what a page holds.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from training.paths import TrainingPaths
from training.registry import Registry
from training.report.content import RunFacts, failure_page, run_page, summary_page
from training.report.files import relative_to_registry, save_promoted, save_unpromoted

__all__ = ["RunFacts", "relative_to_registry", "render_run", "save_run", "write_failure"]

log = logging.getLogger(__name__)


def render_run(facts: RunFacts) -> str:
    """The HTML report of a completed run (the gate has decided; nothing is written yet)."""
    started, cpu = time.perf_counter(), time.process_time()
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # a model may price absurdly: inf figures, not errors
            html = run_page(facts)
    except (ValueError, OverflowError, FloatingPointError) as exc:  # a report never costs a run its decision
        log.warning("report: the full page could not be drawn (%s); writing the decision alone", exc)
        html = summary_page(facts, exc)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    log.info("report rendered in %.1f s (%.1f s of CPU), %d KB", elapsed, cpu, len(html) // 1024)
    return html


def save_run(registry: Registry, html: str, version: int | None, created_at: str) -> Path:
    """Write the report where it belongs: beside version ``version``'s model, or (None) with the rejected."""
    if version is not None:
        path = save_promoted(registry.directory, version, html)
    else:
        path = save_unpromoted(registry.directory, datetime.fromisoformat(created_at), "rejected", html)
    return path


def write_failure(paths: TrainingPaths, error: BaseException) -> Path | None:
    """Report a run that stopped on ``error``; None if even that cannot be written.

    That is logged at info level (stdout): the run's own one-line error stays the only line on stderr.
    """
    registry = Registry(paths.settings, paths.registry)
    when = datetime.now(UTC)
    try:
        html = failure_page(paths, registry, error, when)
        return save_unpromoted(registry.directory, when, "failed", html)
    except Exception as exc:  # the run's own error is what matters; never mask it
        log.info("no failure report written: %s", exc)
        return None
