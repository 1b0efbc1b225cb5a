"""What a report page says, run by run: the facts of a run, and the pages they make.

:func:`run_page` is a completed run's full page (decision, data, comparison, interval, plots,
history, candidate), :func:`summary_page` its decision alone when the full page cannot be drawn,
:func:`failure_page` a run that stopped on an error. Each assembles its sections and its JSON
summary here; the sections' HTML is built in :mod:`training.report.sections` and
:mod:`training.report.history`, the page around them in :mod:`training.report.page`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd

from inference.baseline import BASELINE_KEY, Baseline
from inference.modelsettings import MODEL_NAME
from inference.schema import FEATURES
from training import floor
from training.bootstrap import Difference
from training.data import Dataset
from training.paths import TrainingPaths
from training.registry import Current, Registry
from training.report import evaluation, plots
from training.report.evaluation import Segment
from training.report.files import shown_path, without_paths
from training.report.history import history_section
from training.report.page import figure, render, table
from training.report.sections import (
    baseline_html,
    candidate_html,
    comparison_html,
    data_html,
    difference_html,
    floor_html,
    interval_html,
)

REPORT_FORMAT = 1


@dataclass(frozen=True)
class RunFacts:
    """Everything a completed run knows when the gate has decided."""

    db: Path
    dataset: Dataset
    """The clean rows, what cleaning removed, how many rows were read."""
    holdout: pd.DataFrame
    """The gate's rows: both models are scored on exactly these."""
    record: dict[str, Any]
    """The candidate's record (version, fingerprint, estimator, params, libraries, created_at...)."""
    candidate: bytes
    candidate_mae: float
    current: Current | None
    current_mae: float | None
    promoted: bool
    reason: str
    """The gate's reason for the decision (training/gate.py), with both models' figures."""
    registry: Registry
    """Read for its history and its versions, before this run adds to them."""
    new_rows: dict[str, Any] | None = None
    """Rows imported since the current model saw the database (:func:`training.provenance.new_rows`)."""
    difference: Difference | None = None
    """The gate's paired bootstrap of the MAE difference (candidate - current); None without a current model."""

    @property
    def train_rows(self) -> int:
        """The clean rows the candidate was fitted on: all but the holdout."""
        return len(self.dataset.frame) - len(self.holdout)


def run_page(facts: RunFacts) -> str:
    """A completed run's full page: both models scored again on the holdout, by segment, plotted."""
    version = int(facts.record["version"])
    current_version = facts.current.settings.version if facts.current else None
    actual = facts.holdout[FEATURES.target].to_numpy(dtype=np.float64)
    candidate = evaluation.predict_all(facts.candidate, facts.holdout)
    current = evaluation.predict_all(facts.current.blob, facts.holdout) if facts.current else None
    cand_err = candidate.errors(actual)
    curr_err = current.errors(actual) if current else None
    segments = evaluation.segments(facts.holdout, cand_err, curr_err)
    spread = floor.cell_spread(facts.dataset.frame)  # every clean row's price says how wide its cell is
    carat = facts.holdout["carat"].to_numpy(dtype=np.float64)
    held_spread = spread.take(facts.dataset.holdout)
    bands = {"candidate": floor.by_band(carat, cand_err, held_spread)}
    if curr_err is not None:
        bands["current"] = floor.by_band(carat, curr_err, held_spread)
    intervals = {"candidate": evaluation.interval(candidate, actual)}
    if current is not None:
        intervals[f"current v{current_version}"] = evaluation.interval(current, actual)
    has_interval = any(i is not None for i in intervals.values())

    decision = "promoted" if facts.promoted else "rejected"
    cand_label = f"candidate v{version}" if facts.promoted else "candidate"
    curr_label = f"current v{current_version}" if current_version is not None else None
    reason = _reason(facts, version, current_version, segments)
    summary: dict[str, Any] = {
        "report_format": REPORT_FORMAT,
        "decision": decision,
        "reason": reason,
        "time": facts.record["created_at"],
        "candidate_version": version,
        "version": version if facts.promoted else None,
        "candidate_mae": round(facts.candidate_mae, 4),
        "current_mae": None if facts.current_mae is None else round(facts.current_mae, 4),
        "current_version": current_version,
        "mae_difference": None if facts.difference is None else facts.difference.record(),
        "data": _data_summary(facts),
        "segments": [s.__dict__ for s in segments],
        "floor": {name: [b.__dict__ for b in found] for name, found in bands.items()},
    }
    if has_interval:
        summary["interval"] = {name: i.__dict__ for name, i in intervals.items() if i}

    series = [plots.Series(cand_label, candidate.price, plots.CANDIDATE)]
    if current is not None and curr_label is not None:
        series.append(plots.Series(curr_label, current.price, plots.CURRENT))
    by_kind: dict[str, list[tuple[str, int, float, float | None]]] = {}
    for s in segments:
        by_kind.setdefault(s.kind, []).append((s.label, s.rows, s.candidate_mae, s.current_mae))
    figures = [
        plots.predicted_vs_actual(actual, series),
        plots.residuals_vs_carat(carat, actual, series),
        plots.error_distribution(actual, series),
        plots.mae_by_segment(by_kind, (cand_label, curr_label)),
    ]
    this_run = (facts.record["created_at"], facts.candidate_mae, f"v{version}" if facts.promoted else "candidate")
    registry = facts.registry
    history_html = history_section(
        registry.history(), list(registry.versions()), this_run, current_version, registry.directory
    )

    sections = [
        ("decision", "Decision", f'<p class="decision {decision}">{escape(reason)}</p>'),
        ("data", "Data", data_html(summary["data"])),
        (
            "comparison",
            "Candidate against current",
            comparison_html(
                len(facts.holdout), facts.candidate_mae, facts.current_mae, segments, cand_label, curr_label
            )
            + difference_html(facts.difference),
        ),
        ("floor", "Against the noise floor", floor_html(bands, cand_label, curr_label)),
    ]
    if has_interval:
        sections.append(("interval", "Interval", interval_html(intervals)))
    inputs = _baseline(facts.candidate)
    if inputs is not None:
        summary["input_baseline"] = inputs.shares()
        sections.append(("baseline", "Input baseline", baseline_html(inputs.shares(), inputs.rows)))
    sections += [
        ("plots", "Plots", "".join(figure(p) for p in figures)),
        ("history", "Every version", history_html),
        ("candidate", "The candidate", candidate_html(facts.record)),
    ]
    verdict = f"v{version} promoted" if facts.promoted else "candidate rejected"
    title = f"{MODEL_NAME} training run {facts.record['created_at']}: {verdict}"
    return render(title, decision, sections, summary)


def summary_page(facts: RunFacts, error: BaseException) -> str:
    """The decision and its figures alone, when the full page cannot be drawn (absurd predictions)."""
    version = int(facts.record["version"])
    decision = "promoted" if facts.promoted else "rejected"
    reason = _reason(facts, version, facts.current.settings.version if facts.current else None, [])
    note = f"The plots and segment tables could not be drawn: {error}."
    sections = [("decision", "Decision", f'<p class="decision {decision}">{escape(reason)}</p><p>{escape(note)}</p>')]
    summary = {
        "report_format": REPORT_FORMAT,
        "decision": decision,
        "reason": reason,
        "error": str(error),
        "version": version if facts.promoted else None,
    }
    return render(f"{MODEL_NAME} training run {facts.record['created_at']}: {decision}", decision, sections, summary)


def failure_page(paths: TrainingPaths, registry: Registry, error: BaseException, when: datetime) -> str:
    """The page of a run that stopped on ``error`` at ``when``: the inputs and the registry's history."""
    stamp = when.isoformat(timespec="seconds")
    error_text = without_paths(str(error), (paths.db, paths.settings, paths.registry))
    try:
        settings = registry.current_settings()
        serving = f"v{settings.version}" if settings else "no model"
    except Exception as exc:
        settings, serving = None, f"unknown ({without_paths(str(exc), (paths.settings, paths.registry))})"
    reason = (
        f"The run stopped: {error_text}. Nothing was promoted; the registry and modelsettings.json are as they were "
        f"(but for this report), and {serving} keeps serving."
    )
    inputs = table(
        ["input", "path"],
        [
            ["database", escape(shown_path(paths.db))],
            ["settings", escape(shown_path(paths.settings))],
            ["registry", escape(shown_path(paths.registry))],
        ],
    )
    history = registry.history() if registry.directory.is_dir() else []
    sections = [
        ("decision", "Decision", f'<p class="decision failed">{escape(reason)}</p>'),
        ("data", "Inputs", inputs),
        (
            "history",
            "Every version",
            history_section(
                history, list(registry.versions()), None, settings.version if settings else None, registry.directory
            ),
        ),
    ]
    summary = {
        "report_format": REPORT_FORMAT,
        "decision": "failed",
        "reason": reason,
        "error": error_text,
        "time": stamp,
        "current_version": settings.version if settings else None,
    }
    return render(f"{MODEL_NAME} training run {stamp}: failed", "failed", sections, summary)


def _reason(facts: RunFacts, version: int, current_version: int | None, segments: list[Segment]) -> str:
    verdict = f"Promoted as v{version}" if facts.promoted else "Rejected"
    text = f"{verdict} on the same {len(facts.holdout)} held-out rows: {facts.reason}."
    if facts.current_mae is None:
        return text
    compared = [s for s in segments if s.rows and s.current_mae is not None]
    wins = sum(s.candidate_mae < (s.current_mae or 0) for s in compared)
    losses = sum(s.candidate_mae > (s.current_mae or 0) for s in compared)
    split = f"By segment, the candidate is better in {wins} of {len(compared)} and worse in {losses}."
    if facts.promoted:
        return f"{text} modelsettings.json now points at v{version}. {split}"
    return f"{text} v{current_version} keeps serving; only this report and a history line were written. {split}"


def _baseline(blob: bytes) -> Baseline | None:
    """The input baseline the model carries, if it carries a valid one."""
    props = {p.key: p.value for p in onnx.load_model_from_string(blob).metadata_props}
    try:
        return Baseline.from_json(props[BASELINE_KEY])
    except (KeyError, ValueError):
        return None


def _data_summary(facts: RunFacts) -> dict[str, Any]:
    """The Data section's figures, as the page's JSON block holds them."""
    return {
        "db": shown_path(facts.db),
        "rows_read": facts.dataset.rows_read,
        "removed": dict(facts.dataset.removed),
        "clean_rows": facts.train_rows + len(facts.holdout),
        "train_rows": facts.train_rows,
        "holdout_rows": len(facts.holdout),
        "data_fingerprint": facts.record["data_fingerprint"],
        "new_rows": facts.new_rows,
    }
