"""The gate: whether a candidate replaces the current model, and why.

Both models are scored from their ``.onnx`` files with onnxruntime on the same held-out
rows (:func:`score`). The rules, in order (:func:`decide`):

1. A candidate whose MAE is not a finite number is rejected.
2. A candidate with a price range is rejected if the range's coverage on the holdout is
   more than :data:`COVERAGE_TOLERANCE` (3 points) away from its nominal level. On a
   small data set that tolerance would reject well-calibrated ranges on sampling noise
   alone, so it widens to :data:`NOISE_SIGMAS` standard errors of the measured coverage
   where that is larger (the error of a binomial proportion over the held-out rows, plus
   that of the calibration rows the range was fitted on). With the shipped data (4,056
   held-out and about 7,100 calibration rows) three standard errors are 2.4 points, so
   the tolerance is the plain 3 points.
3. With no current model, or one whose MAE is not finite (it cannot price every held-out
   row), the candidate is promoted.
4. **A lower MAE, on evidence.** The candidate is promoted when the 95% paired bootstrap
   interval of the MAE difference (candidate - current, :mod:`training.bootstrap`) lies
   entirely below zero. The holdout MAE has a standard error of several dollars, so a
   candidate a few dollars lower by the rows' luck alone is not promoted.
5. **As good, and more capable.** A candidate whose MAE is not higher than the current
   model's, and which adds a capability the current model lacks (a price range, a
   graph that runs on an older onnxruntime, or an input baseline the service's drift watch
   compares traffic with), is promoted. This is how a change of
   format or interface reaches the registry through the gate rather than by hand; MAE
   stays the primary criterion, since it can only tie, never lose.
6. Anything else is rejected: "not distinguishable" when the MAE is lower but the
   interval reaches zero, "MAE not lower" otherwise.

The decision's reason names the figures it used, the difference with its interval
included; training logs it and writes it to the history, so no promotion or rejection is
ever silent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from inference.baseline import BASELINE_KEY, Baseline
from inference.onnx_io import OUTPUT, RANGE_OUTPUTS, make_feeds, metadata, open_session, predict_outputs, range_level
from inference.schema import FEATURES
from training.bootstrap import Difference, paired_difference

COVERAGE_TOLERANCE = 0.03
"""Largest allowed |coverage - nominal level| of a candidate's price range on the holdout."""

NOISE_SIGMAS = 3.0
"""On small data, the tolerance is at least this many standard errors of the coverage."""

PORTABLE_RUNTIME = (1, 16)
"""A model whose ``min_onnxruntime`` is at most this runs on every onnxruntime we support."""


@dataclass(frozen=True)
class Scores:
    """One model's figures on the gate's held-out rows."""

    mae: float
    """Mean absolute error in USD; infinite if the model cannot price a held-out row."""
    min_onnxruntime: str | None
    """From the model's metadata; None for models that do not record it."""
    level: float | None = None
    """The price range's nominal coverage (e.g. 0.8); None for a model without a range."""
    coverage: float | None = None
    """Share of held-out prices inside the range."""
    mean_width: float | None = None
    """Mean of ``price_high - price_low`` in USD."""
    holdout_rows: int = 0
    """How many held-out rows the figures are over."""
    calibration_rows: int = 0
    """Training rows the range was calibrated on (from the model's metadata)."""
    version: int | None = None
    """The registry version scored, for the reason's wording; None when not given (the candidate)."""
    baseline: bool = False
    """Whether the model carries a readable input baseline (drift watch)."""
    errors: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Absolute error per held-out row, in the rows' order (infinite where unpriced): what the
    paired bootstrap resamples. None for figures without their rows, which rule 4 cannot use."""

    def coverage_tolerance(self) -> float:
        """:data:`COVERAGE_TOLERANCE`, or :data:`NOISE_SIGMAS` standard errors where larger."""
        if self.level is None or self.holdout_rows <= 0:
            return COVERAGE_TOLERANCE
        inverse = 1 / self.holdout_rows + (1 / self.calibration_rows if self.calibration_rows > 0 else 0.0)
        return max(COVERAGE_TOLERANCE, NOISE_SIGMAS * math.sqrt(self.level * (1 - self.level) * inverse))

    @property
    def capabilities(self) -> frozenset[str]:
        """What the model offers beyond a price, in words (rule 5 promotes a candidate that adds one)."""
        found = set()
        if self.level is not None:
            found.add(f"a price range ({self.level:.0%})")
        if self.min_onnxruntime is not None and _version(self.min_onnxruntime) <= PORTABLE_RUNTIME:
            found.add(f"runs on onnxruntime >= {self.min_onnxruntime}")
        if self.baseline:
            found.add("an input baseline for drift")
        return frozenset(found)

    def describe(self) -> str:
        """The figures as the decision's reason quotes them."""
        text = f"MAE {self.mae:.2f}"
        if self.coverage is not None and self.level is not None:
            text += f", {self.level:.0%} range covering {self.coverage:.1%} (mean width ${self.mean_width:,.0f})"
        return text

    def record(self) -> dict[str, object]:
        """The price range's figures for modelsettings.json and the history (empty without a range)."""
        if self.level is None or self.coverage is None or self.mean_width is None:
            return {}
        return {"level": self.level, "coverage": round(self.coverage, 4), "mean_width": round(self.mean_width, 2)}


@dataclass(frozen=True)
class Decision:
    """Whether the candidate is promoted, and why, with the figures used."""

    promote: bool
    reason: str
    difference: Difference | None = None
    """The paired bootstrap of the MAE difference (candidate - current), where both were scored."""


@dataclass(frozen=True)
class Outputs:
    """A model's outputs on some rows, as the gate and the report both read them."""

    values: np.ndarray
    """float64 ``[N, 1]`` (price) or ``[N, 3]`` (price, price_low, price_high); NaN where unpriced."""
    level: float | None
    """The price range's nominal coverage from the model's metadata; None without a range."""
    props: dict[str, str]
    """The model's ``metadata_props``."""


def predict(blob: bytes, frame: pd.DataFrame) -> Outputs:
    """Run an ``.onnx`` model on ``frame``, with its price range if it has one
    (:func:`inference.onnx_io.range_level`, the definition serving uses too)."""
    session = open_session(blob)
    level = range_level(session)
    wanted = [OUTPUT] if level is None else [OUTPUT, *RANGE_OUTPUTS]
    columns = {n: frame[n].to_numpy() for n in FEATURES.names}
    values = predict_outputs(session, make_feeds(columns), wanted).astype(np.float64)
    return Outputs(values, level, metadata(session))


def range_figures(low: np.ndarray, high: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """(coverage, mean width) of ``[low, high]`` over ``actual``: a NaN bound is a miss, and the width
    is the mean over priced rows (infinite when none is)."""
    with np.errstate(over="ignore", invalid="ignore"):
        inside = (low <= actual) & (actual <= high)
        width = high - low
        return float(np.mean(inside)), float(np.nanmean(width)) if np.isfinite(width).any() else math.inf


def score(blob: bytes, holdout: pd.DataFrame, version: int | None = None) -> Scores:
    """Score an ``.onnx`` model on ``holdout``: MAE, and the price range's coverage and width if it has one."""
    out = predict(blob, holdout)
    actual = holdout[FEATURES.target].to_numpy(dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is an infinite MAE, which decide() refuses
        return _scores(out.values, actual, out.props, len(holdout), version, out.level)


def _scores(
    values: np.ndarray, actual: np.ndarray, props: dict[str, str], rows: int, version: int | None, level: float | None
) -> Scores:
    baseline = _has_baseline(props)
    errors = np.abs(values[:, 0] - actual)
    errors = np.where(np.isnan(errors), np.inf, errors)
    mae = float(np.mean(errors))
    if level is None:
        return Scores(
            mae, props.get("min_onnxruntime"), holdout_rows=rows, version=version, baseline=baseline, errors=errors
        )
    coverage, mean_width = range_figures(values[:, 1], values[:, 2], actual)
    return Scores(
        mae,
        props.get("min_onnxruntime"),
        level=level,
        coverage=coverage,
        mean_width=mean_width,
        holdout_rows=rows,
        calibration_rows=int(props.get("price_range_calibration_rows", "0") or 0),
        version=version,
        baseline=baseline,
        errors=errors,
    )


def decide(candidate: Scores, current: Scores | None) -> Decision:
    """Apply the module's rules; the reason quotes both models' figures."""
    if not math.isfinite(candidate.mae):
        return Decision(False, f"the candidate's MAE is {candidate.mae}, not a finite number")
    if candidate.level is not None:
        coverage = candidate.coverage if candidate.coverage is not None else math.nan
        tolerance = candidate.coverage_tolerance()
        if not abs(coverage - candidate.level) <= tolerance:
            return Decision(
                False,
                f"the candidate's price range covers {coverage:.1%} of {candidate.holdout_rows} held-out prices, "
                f"more than {tolerance:.1%} from its nominal {candidate.level:.0%}",
            )
    if current is None:
        return Decision(True, f"no current model; candidate {candidate.describe()}")
    label = "current" if current.version is None else f"current v{current.version}"
    versus = f"candidate {candidate.describe()} vs {label} {current.describe()}"
    if not math.isfinite(current.mae):
        return Decision(True, f"the current model cannot price every held-out row: {versus}")
    difference = _difference(candidate, current)
    if difference is not None:
        versus += f"; difference {difference.describe()}"
    if difference is not None and difference.below_zero:
        return Decision(True, f"lower MAE, the interval of the difference below zero: {versus}", difference)
    added = sorted(candidate.capabilities - current.capabilities)
    if added and candidate.mae <= current.mae:
        return Decision(True, f"as good (MAE not higher) and adds {' and '.join(added)}: {versus}", difference)
    if candidate.mae < current.mae:
        return Decision(False, f"not distinguishable: lower MAE, but not beyond the rows' noise: {versus}", difference)
    return Decision(False, f"MAE not lower: {versus}", difference)


def _difference(candidate: Scores, current: Scores) -> Difference | None:
    """The paired bootstrap over both models' per-row errors; None without them, or on different rows."""
    if candidate.errors is None or current.errors is None or candidate.errors.shape != current.errors.shape:
        return None
    return paired_difference(candidate.errors, current.errors)


def _has_baseline(props: dict[str, str]) -> bool:
    text = props.get(BASELINE_KEY)
    if text is None:
        return False
    try:
        Baseline.from_json(text)
    except ValueError:
        return False
    return True


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        return (999,)
