"""What the report measures: both models' predictions on the holdout, MAE by segment, the interval.

Everything here is computed from the ``.onnx`` bytes by the gate's own :func:`training.gate.predict`
and :func:`training.gate.range_figures`, so the report's overall MAE, coverage and width are the
gate's. A row a model cannot price (NaN) counts as an infinite error, as it does for the gate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from inference.schema import FEATURES
from training import gate
from training.floor import band_labels, carat_band_labels


@dataclass(frozen=True)
class Predictions:
    """One model's output on the holdout rows, in the rows' order."""

    price: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    level: float | None = None
    """The range's nominal coverage, from the model's own metadata."""

    def errors(self, actual: np.ndarray) -> np.ndarray:
        """Absolute errors; an unpriced row counts as infinitely wrong."""
        errors = np.abs(self.price - actual)
        return np.where(np.isnan(errors), np.inf, errors)


@dataclass(frozen=True)
class Segment:
    """Both models' MAE on the held-out rows of one segment (a grade, or a carat band)."""

    kind: str
    """``cut``, ``color``, ``clarity`` or ``carat band``."""
    label: str
    rows: int
    candidate_mae: float
    current_mae: float | None


@dataclass(frozen=True)
class Interval:
    """How often ``[price_low, price_high]`` holds the actual price, and how wide it is."""

    coverage: float
    mean_width: float
    rows: int
    nominal: float
    """The model's own nominal coverage (0.8 for an 80% range)."""


def predict_all(blob: bytes, frame: pd.DataFrame) -> Predictions:
    """The model's price (and interval, if it has one) for every row of ``frame``."""
    out = gate.predict(blob, frame)
    if out.level is None:
        return Predictions(out.values[:, 0])
    return Predictions(out.values[:, 0], out.values[:, 1], out.values[:, 2], out.level)


def mae(errors: np.ndarray) -> float:
    """The mean of absolute ``errors``; NaN for a segment with no rows."""
    return float(np.mean(errors)) if len(errors) else math.nan


def segment_keys() -> dict[str, tuple[str, ...]]:
    """Segment kind -> its labels, in quality (or size) order."""
    return {**FEATURES.categorical, "carat band": band_labels()}


def segments(holdout: pd.DataFrame, candidate: np.ndarray, current: np.ndarray | None) -> list[Segment]:
    """MAE of both models on every segment of the holdout (absolute errors in, same row order)."""
    columns: dict[str, np.ndarray] = {name: holdout[name].to_numpy() for name in FEATURES.categorical}
    columns["carat band"] = carat_band_labels(holdout["carat"].to_numpy())
    found = []
    for kind, labels in segment_keys().items():
        for label in labels:
            mask = columns[kind] == label
            found.append(
                Segment(
                    kind,
                    label,
                    int(mask.sum()),
                    mae(candidate[mask]),
                    None if current is None else mae(current[mask]),
                )
            )
    return found


def interval(predictions: Predictions, actual: np.ndarray) -> Interval | None:
    """Coverage and mean width of the model's interval, or None when the model has none."""
    if predictions.low is None or predictions.high is None or predictions.level is None:
        return None
    coverage, mean_width = gate.range_figures(predictions.low, predictions.high, actual)
    return Interval(coverage, mean_width, len(actual), predictions.level)
