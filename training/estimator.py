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

from typing import Any

import numpy as np
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


def float32_below(value: float) -> float:
    """The largest float32 that is smaller than ``value``'s float32 rounding: with float32
    inputs, ``x <= float32_below(v)`` is exactly "x is below v"."""
    return float(np.nextafter(np.float32(value), np.float32(-np.inf)))


class BoostedLogPrice(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Mean of several ``HistGradientBoostingRegressor(loss="absolute_error")`` on log(price).

    Column 0 of ``X`` is carat; the others are used as they are. With ``input_ranges``
    (inclusive (min, max) per column), a row with any value outside its range, or
    missing, is predicted NaN: the model never prices what it does not know. (The
    pipeline encodes an unknown grade as -1, outside its range.)
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
        X = np.asarray(X, dtype=np.float64)
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
        X = np.asarray(X, dtype=np.float64)
        features = self._features(X)
        raw = np.mean([m.predict(features) for m in self.models_], axis=0)
        if self.input_ranges is not None:
            lo, hi = np.asarray(self.input_ranges, dtype=np.float64).T
            inside = np.all((lo <= X) & (hi >= X), axis=1)  # NaN compares false
            raw = np.where(inside, raw, np.nan)
        return np.asarray(raw, dtype=np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(np.exp(self.predict_log(X)), dtype=np.float64)

    def breakpoints(self) -> list[np.ndarray]:
        """Per input column, sorted points b such that the prediction is constant on every
        interval (b[k-1], b[k]] (``x <= b`` on the left), for float32 inputs."""
        check_is_fitted(self, "models_")
        n = self.n_features_in_
        found: list[set[float]] = [set() for _ in range(n)]
        for model in self.models_:
            for iteration in model._predictors:
                for predictor in iteration:
                    nodes = predictor.nodes
                    if np.any(nodes["is_categorical"]):
                        raise NotImplementedError("native categorical splits do not export; encode categories first")
                    split = nodes[nodes["is_leaf"] == 0]
                    for feature, threshold in zip(split["feature_idx"], split["num_threshold"], strict=True):
                        # The extra column is carat itself where present: its cuts are carat cuts.
                        found[int(feature) if feature < n else 0].add(float(threshold))
        if self.upper_from is not None:
            found[0].add(float32_below(self.upper_from))  # below it, the extra column is missing
        for column, (lo, hi) in enumerate(self.input_ranges or ()):
            found[column].update((float32_below(lo), float(hi)))  # the edges of the valid range
        return [np.array(sorted(s), dtype=np.float64) for s in found]
