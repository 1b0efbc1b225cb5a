"""The regressor training ships: averaged HistGradientBoosting models on log(price).

Each input row is (carat, cut code, color code, clarity code), the grades already
ordinal-encoded by the pipeline. Two choices matter, both measured (see the README):

* **log(price) with absolute error.** A monotone transform keeps the conditional
  median, which is what MAE rewards, and the trees fit relative errors, which suit a
  price range from $300 to $19,000.
* **A second carat axis.** HistGradientBoosting cuts each feature into at most 255
  quantile bins; carats are dense below 0.7 and sparse above, so large stones share
  coarse bins. A copy of carat that is missing (NaN) below ``upper_from`` gets its own
  255 bins over the large stones alone.

:meth:`BoostedLogPrice.breakpoints` gives, per input column, the points where the
prediction can change; :mod:`training.onnx_lookup` turns that into an exact table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.utils.validation import check_is_fitted

BOOSTERS: tuple[dict[str, Any], ...] = (
    {"learning_rate": 0.05, "max_iter": 1600, "max_leaf_nodes": 15, "l2_regularization": 10.0, "random_state": 0},
    {
        "learning_rate": 0.05, "max_iter": 1600, "max_leaf_nodes": 15, "min_samples_leaf": 10,
        "max_features": 0.75, "random_state": 1,
    },
    {
        "learning_rate": 0.03, "max_iter": 1666, "max_leaf_nodes": 31, "min_samples_leaf": 40,
        "l2_regularization": 10.0, "max_features": 0.5, "random_state": 2,
    },
)  # fmt: skip
"""Hyper-parameters of the averaged models (found by the search in the README's model-quality section)."""


UPPER_FROM = 0.6953125
"""Where the second carat axis starts: between the 0.69 and 0.70 carat grades, and exactly
representable in float32 (89/128), so a float32 carat is on the same side of it as in float64."""


def float32_floor(value: float) -> float:
    """The largest float32 that is ``<= value`` (rounded down, never to nearest).

    For every float32 ``x``, ``x <= value`` holds exactly when ``x <= float32_floor(value)``;
    this is what makes a float32 split reproduce a float64 threshold.
    """
    f = np.float32(value)
    if float(f) > value:  # compare in float64: NumPy would compare a float32 with a Python float in float32
        f = np.nextafter(f, np.float32(-np.inf))
    return float(f)


def float32_below(value: float) -> float:
    """The largest float32 that is ``< value``: for every float32 ``x``, ``x < value`` holds
    exactly when ``x <= float32_below(value)``."""
    f = float32_floor(value)
    if f == value:
        f = float(np.nextafter(np.float32(f), np.float32(-np.inf)))
    return f


def as_float32(X: np.ndarray) -> np.ndarray:
    """``X`` as the ONNX graph sees it: every value rounded to float32 (held in float64)."""
    return np.asarray(X, dtype=np.float32).astype(np.float64)


def split_thresholds(model: HistGradientBoostingRegressor) -> Iterator[tuple[int, float]]:
    """``(feature, threshold)`` of every split of a fitted model; ``x <= threshold`` goes left.

    scikit-learn has no public API for its histogram trees, so this reads the private
    ``_predictors`` (a list of ``TreePredictor`` per iteration) and their ``nodes`` record
    arrays. If a scikit-learn release changes them, this fails with a clear message
    instead of exporting a wrong table (and ``pyproject.toml`` bounds the tested versions).
    """
    try:
        trees = [predictor.nodes for iteration in model._predictors for predictor in iteration]
        splits = [
            (nodes["feature_idx"], nodes["num_threshold"], nodes["is_categorical"], nodes["is_leaf"] == 0)
            for nodes in trees
        ]
    except (AttributeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise NotImplementedError(
            f"scikit-learn {sklearn.__version__} changed HistGradientBoosting's private tree structure "
            f"({exc!r}); the export supports the scikit-learn versions pyproject.toml allows"
        ) from exc
    for feature, threshold, categorical, is_split in splits:
        if np.any(categorical[is_split]):
            raise NotImplementedError("native categorical splits do not export; encode categories first")
        for f, t in zip(feature[is_split], threshold[is_split], strict=True):
            yield int(f), float(t)


class BoostedLogPrice(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Mean of several ``HistGradientBoostingRegressor(loss="absolute_error")`` on log(price).

    Column 0 of ``X`` is carat; the others are used as they are. With ``input_ranges``
    (inclusive (min, max) per column), a row with any value outside its range, or
    missing, is predicted NaN: the model never prices what it does not know. (The
    pipeline encodes an unknown grade as -1, outside its range.)

    **The model is defined on float32 inputs**, the numbers the ONNX graph sees: ``fit``
    and ``predict`` round every input to float32 first (:func:`as_float32`), and the range
    edges are float32 too. Every threshold scikit-learn learns then separates float32
    values, so a split written as ``x <= float32_floor(threshold)`` routes every float32
    input exactly as scikit-learn does, whatever the data (see :meth:`breakpoints`).
    """

    def __init__(
        self,
        boosters: tuple[dict[str, Any], ...] = BOOSTERS,
        upper_from: float | None = UPPER_FROM,
        input_ranges: tuple[tuple[float, float], ...] | None = None,
    ) -> None:
        self.boosters = boosters
        self.upper_from = upper_from
        self.input_ranges = input_ranges

    def _features(self, X: np.ndarray) -> np.ndarray:
        if self.upper_from is None:
            return X
        carat = X[:, :1]
        upper = np.where(carat >= self.upper_from, carat, np.nan)
        return np.hstack([X, upper])

    def fit(self, X: np.ndarray, y: np.ndarray) -> BoostedLogPrice:
        X = as_float32(X)
        features = self._features(X)
        target = np.log(np.asarray(y, dtype=np.float64))
        self.models_ = [
            HistGradientBoostingRegressor(loss="absolute_error", early_stopping=False, **params).fit(features, target)
            for params in self.boosters
        ]
        self.n_features_in_ = X.shape[1]
        return self

    def predict_log(self, X: np.ndarray) -> np.ndarray:
        """The ensemble's raw output, the mean predicted log(price); NaN outside ``input_ranges``."""
        check_is_fitted(self, "models_")
        X = as_float32(X)
        features = self._features(X)
        raw = np.mean([m.predict(features) for m in self.models_], axis=0)
        if self.input_ranges is not None:
            lo, hi = as_float32(np.asarray(self.input_ranges, dtype=np.float64)).T
            inside = np.all((lo <= X) & (hi >= X), axis=1)  # NaN compares false
            raw = np.where(inside, raw, np.nan)
        return np.asarray(raw, dtype=np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(np.exp(self.predict_log(X)), dtype=np.float64)

    def breakpoints(self) -> list[np.ndarray]:
        """Per input column, sorted float32 values b such that, for float32 inputs, the
        prediction is constant on every interval (b[k-1], b[k]] (``x <= b`` on the left).

        Each learned threshold t becomes :func:`float32_floor` (t), and each edge "below e"
        becomes :func:`float32_below` (e). Both are exact for float32 inputs, so the cells
        never straddle a split, however close a threshold falls to a data value.
        """
        check_is_fitted(self, "models_")
        n = self.n_features_in_
        found: list[set[float]] = [set() for _ in range(n)]
        for model in self.models_:
            for feature, threshold in split_thresholds(model):
                # The extra column is carat itself where present: its cuts are carat cuts.
                found[feature if feature < n else 0].add(float32_floor(threshold))
        if self.upper_from is not None:
            found[0].add(float32_below(self.upper_from))  # below it, the extra column is missing
        for column, (lo, hi) in enumerate(self.input_ranges or ()):
            # The edges of the valid range, which predict_log compares as float32 values.
            lo32, hi32 = as_float32(np.array([lo, hi]))
            found[column].update((float32_below(float(lo32)), float(hi32)))
        return [np.array(sorted(s), dtype=np.float64) for s in found]
