"""The HTML of the run page's sections, from plain figures: the data, the comparison, the interval, the candidate.

Each builder takes the values it shows (no :class:`~training.report.content.RunFacts`) and returns
a fragment of escaped HTML for :func:`training.report.page.render`; :mod:`training.report.content`
decides which sections a page has and feeds them.
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

from training import floor
from training.bootstrap import Difference
from training.report import evaluation
from training.report.evaluation import Interval, Segment
from training.report.page import table, usd


def data_html(data: dict[str, Any]) -> str:
    """The Data section: rows read, what each cleaning rule removed, the split and the fingerprint.

    ``data`` is the run's data summary, as the page's JSON block holds it.
    """
    rows = [["rows read", f"{data['rows_read']:,}"]]
    rows += [[f"removed: {escape(rule)}", f"{count:,}"] for rule, count in data["removed"].items()]
    rows += [
        ["clean rows", f"{data['clean_rows']:,}"],
        ["train rows", f"{data['train_rows']:,}"],
        ["holdout rows (the gate scores both models on these)", f"{data['holdout_rows']:,}"],
    ]
    new = data.get("new_rows")
    if new:
        since = f"since the current model {escape(str(new['since']))}" if new["since"] else "ever"
        rows += [
            [f"imported {since}", f"{new['imported']:,}"],
            ["of them clean: train / holdout", f"{new['clean']:,}: {new['train']:,} / {new['holdout']:,}"],
        ]
    return (
        f"<p>Read from <code>{escape(data['db'])}</code>; the cleaning rules ran in this order.</p>"
        + table(["", "rows"], rows)
        + f"<p>Data fingerprint: <code>{escape(data['data_fingerprint'])}</code></p>"
    )


def comparison_html(
    holdout_rows: int,
    candidate_mae: float,
    current_mae: float | None,
    segments: list[Segment],
    cand: str,
    curr: str | None,
) -> str:
    """The comparison section: overall MAE, then a table per segment kind.

    ``cand`` and ``curr`` label the two models' columns; ``curr`` is None without a current model.
    """
    n = f"{holdout_rows:,}"
    overall = [[escape(cand), n, usd(candidate_mae, 4)]]
    if curr is not None:
        overall.append([escape(curr), n, usd(current_mae, 4)])
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


def difference_html(difference: Difference | None) -> str:
    """The gate's evidence: the MAE difference (candidate − current) with its paired bootstrap interval."""
    if difference is None:
        return ""
    css = "win" if difference.below_zero else "loss" if difference.low > 0 else ""
    return (
        f'<p>Candidate − current MAE: <span class="{css}">{escape(difference.describe())}</span>. '
        "The gate promotes for a lower MAE only when the whole interval is below zero.</p>"
    )


def floor_html(bands: dict[str, list[floor.Band]], cand: str, curr: str | None) -> str:
    """The floor section: each model's MAE by carat band beside what identical stones' prices allow.

    ``bands`` maps ``candidate`` (and ``current``) to :func:`training.floor.by_band` of its errors.
    """
    current = bands.get("current")
    rows = []
    for i, b in enumerate(bands["candidate"]):
        cells = [escape(b.label), f"{b.rows:,}", usd(b.mae)]
        cells += [usd(current[i].mae)] if current is not None and curr is not None else []
        cells += [f"{b.floor_rows:,}", usd(b.mae_on_floor_rows)]
        cells += [usd(current[i].mae_on_floor_rows)] if current is not None and curr is not None else []
        cells += [f"{usd(b.floor)} [{usd(b.floor_low)}–{usd(b.floor_high)}]", _signed(b.gap)]
        rows.append(cells)
    both = current is not None and curr is not None
    headers = ["carat", "rows", f"{cand} MAE"] + ([f"{curr} MAE"] if both else [])
    headers += ["rows in cells of 2+", f"{cand} MAE there"] + ([f"{curr} MAE there"] if both else [])
    headers += ["floor there [bracket]", f"{cand} above the floor"]
    return (
        "<p>How far each model is from the error no model of these four inputs can avoid: stones of identical "
        "carat, cut, color and clarity sell at different prices. "
        f"{escape(floor.HOW[0].upper() + floor.HOW[1:])}.</p>" + table(headers, rows)
    )


def _signed(value: float) -> str:
    return usd(value) if not math.isfinite(value) else f"{value:+,.2f}"


def interval_html(intervals: dict[str, Interval | None]) -> str:
    """The interval section: each model's coverage and mean width (models without a range are left out)."""
    rows = [
        [escape(name), f"{i.rows:,}", f"{100 * i.nominal:.0f}%", f"{100 * i.coverage:.1f}%", usd(i.mean_width)]
        for name, i in intervals.items()
        if i is not None
    ]
    return (
        "<p>How often <code>[price_low, price_high]</code> holds the actual price on the held-out rows, "
        "against the share each model's range is made to hold (nominal), and how wide it is on average.</p>"
        + table(["model", "rows", "nominal", "coverage", "mean width (USD)"], rows)
    )


def candidate_html(record: dict[str, Any]) -> str:
    """The candidate section: its estimator, hyper-parameters, libraries and MAE protocol."""
    params = json.dumps(record.get("params", {}), indent=1)
    libraries = ", ".join(f"{k} {v}" for k, v in record.get("libraries", {}).items())
    return (
        f"<p>{escape(str(record.get('estimator', '')))}</p><pre>{escape(params)}</pre>"
        f"<p class=muted>Libraries: {escape(libraries)}</p>"
        f"<p class=muted>Protocol: {escape(str(record.get('mae_protocol', '')))}</p>"
    )


def baseline_html(shares: dict[str, dict[str, float]], rows: int) -> str:
    """The input baseline section: the share of the training rows in each bin of each feature, as the
    model carries it for drift at serving (``docs/drift.md``)."""
    tables = "".join(
        table(["bin", "share"], [[escape(label), f"{100 * share:.1f}%"] for label, share in bins.items()], escape(name))
        for name, bins in shares.items()
    )
    return (
        f"<p>How the {rows:,} training rows are spread over each feature's bins; the model carries these "
        "shares, and the service compares the rows it prices against them (population stability index). "
        "<code>unpriceable</code> is the share of rows read that the feature schema refuses.</p>" + tables
    )
