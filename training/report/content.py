"""What a report page says: the data, the comparison, the interval, the plots, the decision."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from inference.modelsettings import MODEL_NAME
from inference.schema import FEATURES
from training.data import Dataset
from training.paths import TrainingPaths
from training.registry import Current, Registry
from training.report import evaluation, plots
from training.report.evaluation import Interval, Segment
from training.report.history import history_section
from training.report.page import figure, render, table, usd

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

    @property
    def train_rows(self) -> int:
        return len(self.dataset.frame) - len(self.holdout)


def run_page(facts: RunFacts) -> str:
    version = int(facts.record["version"])
    current_version = facts.current.settings.version if facts.current else None
    actual = facts.holdout[FEATURES.target].to_numpy(dtype=np.float64)
    candidate = evaluation.predict_all(facts.candidate, facts.holdout)
    current = evaluation.predict_all(facts.current.blob, facts.holdout) if facts.current else None
    cand_err = candidate.errors(actual)
    curr_err = current.errors(actual) if current else None
    segments = evaluation.segments(facts.holdout, cand_err, curr_err)
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
        "data": _data_summary(facts),
        "segments": [s.__dict__ for s in segments],
    }
    if has_interval:
        summary["interval"] = {
            name: {**i.__dict__, "nominal": evaluation.NOMINAL_COVERAGE} for name, i in intervals.items() if i
        }

    series = [plots.Series(cand_label, candidate.price, plots.CANDIDATE)]
    if current is not None and curr_label is not None:
        series.append(plots.Series(curr_label, current.price, plots.CURRENT))
    carat = facts.holdout["carat"].to_numpy(dtype=np.float64)
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
        ("data", "Data", _data_html(facts)),
        ("comparison", "Candidate against current", _comparison_html(facts, segments, cand_label, curr_label)),
    ]
    if has_interval:
        sections.append(("interval", "Interval", _interval_html(intervals)))
    sections += [
        ("plots", "Plots", "".join(figure(p) for p in figures)),
        ("history", "Every version", history_html),
        ("candidate", "The candidate", _candidate_html(facts.record)),
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
    stamp = when.isoformat(timespec="seconds")
    try:
        settings = registry.current_settings()
        serving = f"v{settings.version}" if settings else "no model"
    except Exception as exc:
        settings, serving = None, f"unknown ({exc})"
    reason = (
        f"The run stopped: {error}. Nothing was promoted; the registry and modelsettings.json are as they were "
        f"(but for this report), and {serving} keeps serving."
    )
    inputs = table(
        ["input", "path"],
        [
            ["database", escape(str(paths.db))],
            ["settings", escape(str(paths.settings))],
            ["registry", escape(str(paths.registry))],
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
        "error": str(error),
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


def _data_summary(facts: RunFacts) -> dict[str, Any]:
    return {
        "db": str(facts.db),
        "rows_read": facts.dataset.rows_read,
        "removed": dict(facts.dataset.removed),
        "clean_rows": facts.train_rows + len(facts.holdout),
        "train_rows": facts.train_rows,
        "holdout_rows": len(facts.holdout),
        "data_fingerprint": facts.record["data_fingerprint"],
    }


def _data_html(facts: RunFacts) -> str:
    d = _data_summary(facts)
    rows = [["rows read", f"{d['rows_read']:,}"]]
    rows += [[f"removed: {escape(rule)}", f"{count:,}"] for rule, count in d["removed"].items()]
    rows += [
        ["clean rows", f"{d['clean_rows']:,}"],
        ["train rows", f"{d['train_rows']:,}"],
        ["holdout rows (the gate scores both models on these)", f"{d['holdout_rows']:,}"],
    ]
    return (
        f"<p>Read from <code>{escape(d['db'])}</code>; the cleaning rules ran in this order.</p>"
        + table(["", "rows"], rows)
        + f"<p>Data fingerprint: <code>{escape(d['data_fingerprint'])}</code></p>"
    )


def _comparison_html(facts: RunFacts, segments: list[Segment], cand: str, curr: str | None) -> str:
    n = f"{len(facts.holdout):,}"
    overall = [[escape(cand), n, usd(facts.candidate_mae, 4)]]
    if curr is not None:
        overall.append([escape(curr), n, usd(facts.current_mae, 4)])
    html = table(["model", "rows", "MAE (USD)"], overall, "Overall, on the same held-out rows")
    for kind in evaluation.segment_keys():
        rows = []
        for s in (s for s in segments if s.kind == kind):
            cells = [escape(s.label), f"{s.rows:,}", usd(s.candidate_mae)]
            if curr is not None:
                cells += [usd(s.current_mae), _delta(s)]
            rows.append(cells)
        headers = [kind, "rows", f"{cand} MAE"] + ([f"{curr} MAE", "candidate − current"] if curr else [])
        html += table(headers, rows, f"MAE by {kind}")
    return html


def _delta(s: Segment) -> str:
    if s.current_mae is None or not s.rows or not (math.isfinite(s.candidate_mae) and math.isfinite(s.current_mae)):
        return "—"
    d = s.candidate_mae - s.current_mae
    css = "win" if d < 0 else "loss" if d > 0 else ""
    return f'<span class="{css}">{d:+,.2f}</span>'


def _interval_html(intervals: dict[str, Interval | None]) -> str:
    rows = [
        [escape(name), f"{i.rows:,}", f"{100 * i.coverage:.1f}%", usd(i.mean_width)]
        for name, i in intervals.items()
        if i is not None
    ]
    nominal = f"{100 * evaluation.NOMINAL_COVERAGE:.0f}%"
    return (
        f"<p>How often <code>[price_low, price_high]</code> holds the actual price on the held-out rows "
        f"(nominal {nominal}), and how wide it is on average.</p>"
        + table(["model", "rows", "coverage", "mean width (USD)"], rows)
    )


def _candidate_html(record: dict[str, Any]) -> str:
    params = json.dumps(record.get("params", {}), indent=1)
    libraries = ", ".join(f"{k} {v}" for k, v in record.get("libraries", {}).items())
    return (
        f"<p>{escape(str(record.get('estimator', '')))}</p><pre>{escape(params)}</pre>"
        f"<p class=muted>Libraries: {escape(libraries)}</p>"
        f"<p class=muted>Protocol: {escape(str(record.get('mae_protocol', '')))}</p>"
    )
