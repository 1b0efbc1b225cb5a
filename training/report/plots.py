"""The report's plots, drawn with matplotlib's Agg and SVG backends into ``data:`` URIs.

No pyplot and no global state: each plot is its own :class:`~matplotlib.figure.Figure`. Dense
scatter plots are PNG (thousands of points would make a heavy SVG); the rest are SVG with the text
drawn as paths, so a page renders identically without any font or any request.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

CANDIDATE = "#1f77b4"
CURRENT = "#ff7f0e"
STYLE: dict[RcKeyType, Any] = {
    "svg.hashsalt": "diamond-price",  # stable element ids: the same plot gives the same bytes
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
PNG_DPI = 96


@dataclass(frozen=True)
class Series:
    """One model's values on the holdout, for the plots."""

    label: str
    predicted: np.ndarray
    color: str


@dataclass(frozen=True)
class Plot:
    """A drawn plot, ready for :func:`training.report.page.figure`."""

    title: str
    uri: str
    """``data:image/...;base64,...``"""
    alt: str
    note: str = ""
    """What the image cannot show by itself (e.g. a line hidden under an identical one)."""


def _uri(fig: Figure, fmt: str) -> str:
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    with rc_context(STYLE):
        fig.savefig(buffer, format=fmt, dpi=PNG_DPI, metadata=metadata)
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _figure(width: float, height: float, **margins: float) -> Figure:
    """A figure with fixed margins (in inches): a layout engine would double the drawing time."""
    inches = {"left": 0.75, "right": 0.15, "bottom": 0.6, "top": 0.35, **margins}
    with rc_context(STYLE):
        fig = Figure(figsize=(width, height))
    fig.subplots_adjust(
        left=inches["left"] / width,
        right=1 - inches["right"] / width,
        bottom=inches["bottom"] / height,
        top=1 - inches["top"] / height,
        wspace=margins.get("wspace", 0.08),
        hspace=margins.get("hspace", 0.45),
    )
    return fig


def predicted_vs_actual(actual: np.ndarray, series: Sequence[Series]) -> Plot:
    """One log-log scatter per model of predicted against actual price, with the diagonal."""
    with rc_context(STYLE):
        fig = _figure(4.2 * len(series), 4.0)
        axes = fig.subplots(1, len(series), sharex=True, sharey=True, squeeze=False)[0]
        finite = actual[np.isfinite(actual) & (actual > 0)]
        lo, hi = float(finite.min()) * 0.8, float(finite.max()) * 1.25
        for ax, s in zip(axes, series, strict=True):
            ok = np.isfinite(s.predicted) & (s.predicted > 0)
            ax.scatter(actual[ok], s.predicted[ok], s=3, alpha=0.35, color=s.color, linewidths=0)
            ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8)
            ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), title=s.label)
            ax.set_xlabel("actual price (USD)")
        axes[0].set_ylabel("predicted price (USD)")
    return Plot("Predicted against actual", _uri(fig, "png"), "scatter of predicted against actual price, log scales")


def residuals_vs_carat(carat: np.ndarray, actual: np.ndarray, series: Sequence[Series]) -> Plot:
    """One scatter per model of predicted − actual against carat."""
    with rc_context(STYLE):
        fig = _figure(4.2 * len(series), 3.6, left=0.95)
        axes = fig.subplots(1, len(series), sharex=True, sharey=True, squeeze=False)[0]
        for ax, s in zip(axes, series, strict=True):
            residual = s.predicted - actual
            ok = np.isfinite(residual)
            ax.scatter(carat[ok], residual[ok], s=3, alpha=0.35, color=s.color, linewidths=0)
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set(title=s.label, xlabel="carat")
        axes[0].set_ylabel("predicted − actual (USD)")
    return Plot("Residuals against carat", _uri(fig, "png"), "scatter of residuals against carat")


def error_distribution(actual: np.ndarray, series: Sequence[Series]) -> Plot:
    """Both models' residuals as step histograms on common bins (the 1st to 99th percentile).

    The second model's line is dashed, so that where the two coincide both colours still show, and
    a histogram identical to an earlier one says so in its legend entry and in the figure's note."""
    residuals = [s.predicted - actual for s in series]
    pooled = np.concatenate([r[np.isfinite(r)] for r in residuals])
    lo, hi = (float(v) for v in np.percentile(pooled, [1, 99])) if len(pooled) else (-1.0, 1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 61)
    clipped = [np.clip(r[np.isfinite(r)], bins[0], bins[-1]) for r in residuals]
    counts = [np.histogram(c, bins=bins)[0] for c in clipped]
    same = _identical(counts)
    with rc_context(STYLE):
        fig = _figure(7.0, 3.2)
        ax = fig.subplots()
        for i, (s, c) in enumerate(zip(series, clipped, strict=True)):
            label = s.label if i not in same else f"{s.label} (identical to {series[same[i]].label})"
            ax.hist(
                c,
                bins=bins.tolist(),
                histtype="step",
                linewidth=1.4 if i == 0 else 1.8,
                linestyle="solid" if i == 0 else (0, (4, 3)),
                color=s.color,
                label=label,
            )
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set(xlabel="predicted − actual (USD), clipped to the 1st–99th percentile", ylabel="held-out rows")
        ax.legend()
    note = "; ".join(
        f"{series[i].label} (dashed) has exactly the errors of {series[j].label}: its line lies on the other's"
        for i, j in same.items()
    )
    alt = "histograms of " + " and ".join(s.label for s in series) + "'s residuals"
    return Plot("Error distribution", _uri(fig, "svg"), alt, note)


def _identical(counts: Sequence[np.ndarray]) -> dict[int, int]:
    """Index -> the first earlier index with the same histogram, for each histogram that repeats one."""
    found: dict[int, int] = {}
    for i in range(len(counts)):
        earlier = [j for j in range(i) if np.array_equal(counts[i], counts[j])]
        if earlier:
            found[i] = earlier[0]
    return found


def mae_by_segment(
    kinds: dict[str, list[tuple[str, int, float, float | None]]], labels: tuple[str, str | None]
) -> Plot:
    """``kinds``: kind -> (label, rows, candidate MAE, current MAE) per segment."""
    with rc_context(STYLE):
        fig = _figure(9.0, 6.0, bottom=0.75, wspace=0.25, hspace=0.5)
        axes = fig.subplots(2, 2).reshape(-1)
        for ax, (kind, rows) in zip(axes, kinds.items(), strict=False):
            x = np.arange(len(rows))
            two = labels[1] is not None
            width = 0.4 if two else 0.7
            candidate = [_finite_or_nan(r[2]) for r in rows]
            ax.bar(x - (width / 2 if two else 0), candidate, width, color=CANDIDATE, label=labels[0])
            if two:
                current = [_finite_or_nan(r[3]) for r in rows]
                ax.bar(x + width / 2, current, width, color=CURRENT, label=labels[1])
            ax.set_xticks(x, [r[0] for r in rows], rotation=30 if max(len(r[0]) for r in rows) > 3 else 0)
            ax.set(title=f"by {kind}", ylabel="MAE (USD)")
        axes[0].legend()
    return Plot("MAE by segment", _uri(fig, "svg"), "bar charts of MAE by cut, color, clarity and carat band")


def mae_over_time(points: Sequence[tuple[datetime, float, str, str]]) -> Plot:
    """``points``: (time, MAE, label, kind) with kind ``version``, ``rejected`` or ``this run``.

    Versions are hollow circles and the other marks are drawn over them, so a rejected run with a
    version's MAE, trained minutes after it, still shows; the legend and the alt text name only the
    kinds drawn."""
    marks = {"version": ("o", CANDIDATE), "rejected": ("x", "#555555"), "this run": ("*", "#d62728")}
    drawn = []
    with rc_context(STYLE):
        fig = _figure(7.0, 3.2, bottom=0.95)
        ax = fig.subplots()
        versions = [(t, m) for t, m, _, kind in points if kind == "version" and math.isfinite(m)]
        if versions:
            ax.plot([_days(t) for t, _ in versions], [m for _, m in versions], color=CANDIDATE, linewidth=1)
        for z, (kind, (marker, color)) in enumerate(marks.items(), start=3):
            chosen = [(t, m, label) for t, m, label, k in points if k == kind and math.isfinite(m)]
            if chosen:
                drawn.append(kind)
                hollow: dict[str, Any] = (
                    {"facecolors": "none", "edgecolors": color} if kind == "version" else {"color": color}
                )
                ax.scatter(
                    [_days(c[0]) for c in chosen],
                    [c[1] for c in chosen],
                    marker=marker,
                    s=90 if kind == "this run" else 36,
                    label=kind,
                    zorder=z,
                    **hollow,
                )
            if kind != "rejected":
                for t, m, label in chosen:
                    ax.annotate(label, (_days(t), m), textcoords="offset points", xytext=(4, 5), fontsize=8)
        ax.xaxis_date(tz="UTC")
        ax.set(ylabel="holdout MAE (USD)", xlabel="time (UTC)")
        if drawn:
            ax.legend()
        fig.autofmt_xdate(bottom=0.95 / 3.2)
    alt = f"MAE of each registry version by training time; marked: {', '.join(drawn) or 'nothing'}"
    return Plot("MAE of every version over time", _uri(fig, "svg"), alt)


def _finite_or_nan(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else math.nan


def _days(t: datetime) -> float:
    """matplotlib's date number: days since its default epoch, 1970-01-01 UTC."""
    return t.timestamp() / 86400.0
