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


class BoostedLogPrice(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Mean of several ``HistGradientBoostingRegressor(loss="absolute_error")`` on log(price).

    Column 0 of ``X`` is carat; the others are used as they are.
    """

    def __init__(self, boosters: tuple[dict[str, Any], ...] = BOOSTERS, upper_from: float | None = UPPER_FROM) -> None:
        self.boosters = boosters
        self.upper_from = upper_from

    def _features(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.upper_from is None:
            return X
        carat = X[:, :1]
        upper = np.where(carat >= self.upper_from, carat, np.nan)
        return np.hstack([X, upper])

    def fit(self, X: np.ndarray, y: np.ndarray) -> BoostedLogPrice:
        features = self._features(X)
        target = np.log(np.asarray(y, dtype=np.float64))
        self.models_ = [
            HistGradientBoostingRegressor(loss="absolute_error", early_stopping=False, **params).fit(features, target)
            for params in self.boosters
        ]
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict_log(self, X: np.ndarray) -> np.ndarray:
        """The ensemble's raw output: the mean predicted log(price)."""
        check_is_fitted(self, "models_")
        features = self._features(X)
        return np.asarray(np.mean([m.predict(features) for m in self.models_], axis=0), dtype=np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(np.exp(self.predict_log(X)), dtype=np.float64)

    def breakpoints(self) -> list[np.ndarray]:
        """Per input column, sorted points b such that the output is constant on every
        interval (b[k-1], b[k]] (with ``x <= b`` on the left), for non-missing inputs."""
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
            # Below upper_from the extra column is missing; for float32 inputs that side is
            # exactly x <= the float32 just below upper_from.
            below = np.nextafter(np.float32(self.upper_from), np.float32(-np.inf))
            found[0].add(float(below))
        return [np.array(sorted(s), dtype=np.float64) for s in found]
