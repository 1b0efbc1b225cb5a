"""The estimator prices each row on its own: what it skips, or how many threads fit it, changes no price."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

from inference.schema import FEATURES
from tests.helpers import TINY, make_db
from training import data, estimator
from training.estimator import BoostedLogPrice
from training.onnx_lookup import representatives
from training.pipeline import build_pipeline

PARAMS: dict[str, Any] = {
    "boosters": (TINY, {**TINY, "max_features": 0.5, "random_state": 1}),
    "interval_booster": TINY,
}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, data.Dataset]:
    ds = data.load(make_db(tmp_path_factory.mktemp("estimator") / "d.db", rows=3000))
    pipe = build_pipeline(**PARAMS)
    pipe.fit(ds.frame[list(FEATURES.names)], ds.frame["price"].to_numpy())
    return pipe, ds


def grid(regress: BoostedLogPrice) -> np.ndarray:
    """Every cell of the lookup table, as the export fills it: valid and invalid cells alike."""
    axes = [representatives(c) for c in regress.breakpoints()]
    return np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)


def every_model_on_every_row(regress: BoostedLogPrice, X: np.ndarray) -> np.ndarray:
    """The estimator's definition written out: all models on all rows, then NaN outside the ranges."""
    X32 = np.asarray(X, dtype=np.float32).astype(np.float64)
    features = np.hstack([X32, np.where(X32[:, :1] >= regress.upper_from, X32[:, :1], np.nan)])
    median = np.mean([m.predict(features) for m in regress.models_], axis=0)
    low, high = (m.predict(features) for m in regress.bounds_)
    raw = np.stack([median, np.minimum(low - regress.margin_, median), np.maximum(high + regress.margin_, median)], 1)
    lo, hi = np.asarray(regress.input_ranges, dtype=np.float32).astype(np.float64).T
    inside = np.all((lo <= X32) & (hi >= X32), axis=1)
    return np.exp(np.where(inside[:, None], raw, np.nan))


def test_pricing_only_the_valid_rows_gives_the_same_table(fitted: tuple[Pipeline, data.Dataset]) -> None:
    """predict_all skips the rows outside the input ranges; every value, NaN included, is as before."""
    regress: BoostedLogPrice = fitted[0].named_steps["regress"]
    X = grid(regress)
    ours = regress.predict_all(X)
    valid = ~np.isnan(ours).any(axis=1)
    assert 0 < valid.sum() < len(X)  # the grid has cells on both sides of the ranges
    np.testing.assert_array_equal(ours, every_model_on_every_row(regress, X))


def test_a_batch_with_no_valid_row_prices_nan(fitted: tuple[Pipeline, data.Dataset]) -> None:
    regress: BoostedLogPrice = fitted[0].named_steps["regress"]
    out = regress.predict_all(np.array([[9.0, 0, 0, 0], [np.nan, 1, 1, 1], [1.0, -1, 2, 2]]))
    assert out.shape == (3, 3) and np.isnan(out).all()
    assert regress.predict_all(np.empty((0, 4))).shape == (0, 3)


def test_the_fit_is_the_same_on_one_thread_or_several(
    fitted: tuple[Pipeline, data.Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The boosters fit on FIT_THREADS OpenMP threads; on 2 the model, its cuts and every price of its
    lookup grid are the same bit for bit (so the thread count is a speed choice only)."""
    one, ds = fitted
    regress: BoostedLogPrice = one.named_steps["regress"]
    assert estimator.FIT_THREADS == 1
    X = grid(regress)
    for threads in (2,):
        monkeypatch.setattr(estimator, "FIT_THREADS", threads)
        many = build_pipeline(**PARAMS).fit(ds.frame[list(FEATURES.names)], ds.frame["price"].to_numpy())
        other: BoostedLogPrice = many.named_steps["regress"]
        for a, b in zip(regress.breakpoints(), other.breakpoints(), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(regress.predict_all(X), other.predict_all(X))
        assert regress.margin_ == other.margin_


def test_the_fit_runs_on_fit_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside fit, OpenMP (which HistGradientBoosting sizes itself by) is limited to FIT_THREADS."""
    seen: list[int] = []

    def record(model: Any, X: np.ndarray, y: np.ndarray) -> Any:
        seen.append(_openmp_effective_n_threads())
        return model.fit(X, y)

    rng = np.random.default_rng(0)
    X = np.column_stack(
        [rng.uniform(0.3, 2, 200), rng.integers(0, 5, 200), rng.integers(0, 7, 200), rng.integers(0, 8, 200)]
    )
    monkeypatch.setattr(estimator, "FIT_THREADS", 2)
    BoostedLogPrice(boosters=(TINY,), interval=None).fit(X, 1000 * X[:, 0] ** 2, progress=record)
    monkeypatch.setattr(estimator, "FIT_THREADS", 1)
    BoostedLogPrice(boosters=(TINY,), interval=None).fit(X, 1000 * X[:, 0] ** 2, progress=record)
    assert seen == [2, 1]
