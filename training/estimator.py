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

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from inference.onnx_io import OUTPUT, RANGE_OUTPUTS

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


INTERVAL = (0.1, 0.9)
"""The price range's quantiles: a nominal 80% central interval."""

INTERVAL_BOOSTER: dict[str, Any] = {
    "learning_rate": 0.05, "max_iter": 500, "max_leaf_nodes": 15, "min_samples_leaf": 40,
    "l2_regularization": 10.0, "random_state": 3,
}  # fmt: skip
"""Hyper-parameters of the two quantile models (one fit each for the lower and upper bound)."""

FitHook = Callable[[HistGradientBoostingRegressor, np.ndarray, np.ndarray], HistGradientBoostingRegressor]
"""Fits one booster on (X, y) and returns it: how a caller watches the fits (training's progress)."""


def _fit(model: HistGradientBoostingRegressor, X: np.ndarray, y: np.ndarray) -> HistGradientBoostingRegressor:
    return model.fit(X, y)


FIT_THREADS = 1
"""OpenMP threads of every booster's fit, whatever ``OMP_NUM_THREADS`` says (it still sets the
threads of prediction: the export's table and the parity check). A boosting iteration over a few
features is too little work to share: a second thread barely helps on an idle machine, and on a
busy one threads that wait for each other at every iteration slow the fit down many times over.
The fitted model is the same at any thread count (``tests/training/test_estimator.py``): each
feature's histogram is summed by one thread, and the gradient sums are exact in float64."""


CALIBRATION_SHARE = 0.2
"""Share of the training rows held back from the quantile models to calibrate the interval."""

OUTPUTS = (OUTPUT, *RANGE_OUTPUTS)
"""The model's outputs with an interval; without one, only the first."""


class BoostedLogPrice(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Mean of several ``HistGradientBoostingRegressor(loss="absolute_error")`` on log(price),
    with an optional calibrated price range.

    Column 0 of ``X`` is carat; the others are used as they are. With ``input_ranges``
    (inclusive (min, max) per column), a row with any value outside its range, or
    missing, is predicted NaN: the model never prices what it does not know. (The
    pipeline encodes an unknown grade as -1, outside its range.)

    **The model is defined on float32 inputs**, the numbers the ONNX graph sees: ``fit``
    and ``predict`` round every input to float32 first (:func:`as_float32`), and the range
    edges are float32 too. Every threshold scikit-learn learns then separates float32
    values, so a split written as ``x <= float32_floor(threshold)`` routes every float32
    input exactly as scikit-learn does, whatever the data (see :meth:`breakpoints`).

    **The price range** (``interval=(q_lo, q_hi)``) is conformalized quantile regression:
    two ``HistGradientBoostingRegressor(loss="quantile")`` on log(price) are fitted on
    all but a random :data:`CALIBRATION_SHARE` of the training rows; on the rows held
    back, the smallest margin that widens both bounds enough to cover ``q_hi - q_lo`` of
    them is found, and added on the log scale. The bounds are then clipped to the
    median (``low <= price <= high``), so they never cross.
    """

    def __init__(
        self,
        boosters: tuple[dict[str, Any], ...] = BOOSTERS,
        upper_from: float | None = UPPER_FROM,
        input_ranges: tuple[tuple[float, float], ...] | None = None,
        interval: tuple[float, float] | None = INTERVAL,
        interval_booster: dict[str, Any] = INTERVAL_BOOSTER,
    ) -> None:
        self.boosters = boosters
        self.upper_from = upper_from
        self.input_ranges = input_ranges
        self.interval = interval
        self.interval_booster = interval_booster

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the columns :meth:`predict_all` returns, and of the exported model's outputs."""
        return OUTPUTS if self.interval is not None else OUTPUTS[:1]

    @property
    def level(self) -> float | None:
        """The price range's nominal coverage, e.g. 0.8; None without a range."""
        return None if self.interval is None else round(self.interval[1] - self.interval[0], 6)

    def _features(self, X: np.ndarray) -> np.ndarray:
        if self.upper_from is None:
            return X
        carat = X[:, :1]
        upper = np.where(carat >= self.upper_from, carat, np.nan)
        return np.hstack([X, upper])

    def planned_iterations(self) -> list[int]:
        """The boosting iterations of each fit :meth:`fit` runs, in order (for a progress estimate)."""
        boosters = [*self.boosters, *([self.interval_booster] * (2 if self.interval is not None else 0))]
        return [int(params.get("max_iter", 100)) for params in boosters]

    def fit(self, X: np.ndarray, y: np.ndarray, progress: FitHook | None = None) -> BoostedLogPrice:
        """Fit the boosters on log(``y``) and, with an interval, the calibrated price range.

        ``progress``, if given, runs each booster's fit (see :data:`FitHook`)."""
        with threadpool_limits(limits=FIT_THREADS, user_api="openmp"):
            return self._fit_all(X, y, progress or _fit)

    def _fit_all(self, X: np.ndarray, y: np.ndarray, fit_one: FitHook) -> BoostedLogPrice:
        X = as_float32(X)
        features = self._features(X)
        target = np.log(np.asarray(y, dtype=np.float64))
        self.models_ = [
            fit_one(
                HistGradientBoostingRegressor(loss="absolute_error", early_stopping=False, **params), features, target
            )
            for params in self.boosters
        ]
        self.bounds_: list[HistGradientBoostingRegressor] = []
        self.margin_ = 0.0
        self.calibration_rows_ = 0
        if self.interval is not None:
            self._fit_interval(features, target, self.interval, fit_one)
        self.n_features_in_ = X.shape[1]
        return self

    def _fit_interval(
        self, features: np.ndarray, target: np.ndarray, interval: tuple[float, float], fit_one: FitHook = _fit
    ) -> None:
        calibrate = np.random.default_rng(0).random(len(target)) < CALIBRATION_SHARE
        fit = ~calibrate
        self.calibration_rows_ = int(calibrate.sum())
        self.bounds_ = [
            fit_one(
                HistGradientBoostingRegressor(
                    loss="quantile", quantile=q, early_stopping=False, **self.interval_booster
                ),
                features[fit],
                target[fit],
            )
            for q in interval
        ]
        low, high = (m.predict(features[calibrate]) for m in self.bounds_)
        scores = np.maximum(low - target[calibrate], target[calibrate] - high)
        n = int(calibrate.sum())
        rank = min(1.0, np.ceil((n + 1) * (interval[1] - interval[0])) / n)  # split-conformal finite-sample rank
        self.margin_ = float(np.quantile(scores, rank, method="higher"))

    def predict_all(self, X: np.ndarray) -> np.ndarray:
        """``[N, len(outputs)]`` prices: the median and, with an interval, its low and high
        bounds (``low <= price <= high``); NaN rows outside ``input_ranges``."""
        check_is_fitted(self, "models_")
        X = as_float32(X)
        inside = np.ones(len(X), dtype=bool)
        if self.input_ranges is not None:
            lo, hi = as_float32(np.asarray(self.input_ranges, dtype=np.float64)).T
            inside = np.all((lo <= X) & (hi >= X), axis=1)  # NaN compares false
        raw = np.full((len(X), 3 if self.bounds_ else 1), np.nan)
        if inside.any():
            # Only the rows it prices: over half of the lookup grid's cells lie outside the
            # ranges (NaN whatever the trees say), and each row's value is its own.
            raw[inside] = self._raw(X[inside])
        return np.asarray(np.exp(raw), dtype=np.float64)

    def _raw(self, X: np.ndarray) -> np.ndarray:
        """``[N, len(outputs)]`` log prices of float32 rows: the median and, with a range, its bounds."""
        features = self._features(X)
        columns = [np.mean([m.predict(features) for m in self.models_], axis=0)]
        if self.bounds_:
            low, high = (m.predict(features) for m in self.bounds_)
            columns += [np.minimum(low - self.margin_, columns[0]), np.maximum(high + self.margin_, columns[0])]
        return np.stack(columns, axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The median price; NaN outside ``input_ranges``."""
        return self.predict_all(X)[:, 0]

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
        for model in [*self.models_, *self.bounds_]:
            for feature, threshold in split_thresholds(model):
                # The extra column is carat itself where present: its cuts are carat cuts.
                found[feature if feature < n else 0].add(float32_floor(threshold))
        if self.upper_from is not None:
            found[0].add(float32_below(self.upper_from))  # below it, the extra column is missing
        for column, (lo, hi) in enumerate(self.input_ranges or ()):
            # The edges of the valid range, which predict_all compares as float32 values.
            lo32, hi32 = as_float32(np.array([lo, hi]))
            found[column].update((float32_below(float(lo32)), float(hi32)))
        return [np.array(sorted(s), dtype=np.float64) for s in found]
