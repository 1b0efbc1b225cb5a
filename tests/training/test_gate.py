"""The gate's rules (training/gate.py): pure decisions, and scoring a real exported model."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from inference.onnx_io import make_feeds
from inference.schema import FEATURES
from tests.helpers import REPO_DB, Project, make_db, tiny_factory
from training import bootstrap, data, export, gate

RANGED = gate.Scores(300.0, "1.16", level=0.8, coverage=0.80, mean_width=1000.0, holdout_rows=4000, version=None)
PLAIN_V2 = gate.Scores(300.0, None, holdout_rows=4000, version=2)


def test_no_current_model_promotes() -> None:
    decision = gate.decide(RANGED, None)
    assert decision.promote and "no current model" in decision.reason


def test_a_lower_mae_without_its_rows_is_no_evidence_and_names_both_figures() -> None:
    """Changed with the evidence rule: a lower MAE alone used to promote; without the per-row
    errors there is no interval, so it is rejected as not distinguishable."""
    decision = gate.decide(gate.Scores(299.99, None, holdout_rows=4000), PLAIN_V2)
    assert not decision.promote and "not distinguishable" in decision.reason and decision.difference is None
    assert "299.99" in decision.reason and "300.00" in decision.reason and "current v2" in decision.reason


def test_equal_mae_without_a_new_capability_rejects() -> None:
    decision = gate.decide(gate.Scores(300.0, None, holdout_rows=4000), PLAIN_V2)
    assert not decision.promote and "MAE not lower" in decision.reason


def test_equal_mae_that_adds_capabilities_promotes_and_says_why() -> None:
    decision = gate.decide(RANGED, PLAIN_V2)
    assert decision.promote
    assert "as good" in decision.reason and "price range (80%)" in decision.reason
    assert "onnxruntime >= 1.16" in decision.reason and "80.0%" in decision.reason


def test_an_input_baseline_is_a_capability_at_the_same_mae() -> None:
    decision = gate.decide(gate.Scores(300.0, None, holdout_rows=4000, baseline=True), PLAIN_V2)
    assert decision.promote and "an input baseline for drift" in decision.reason
    same = gate.Scores(300.0, None, holdout_rows=4000, version=2, baseline=True)
    assert not gate.decide(gate.Scores(300.0, None, holdout_rows=4000, baseline=True), same).promote


def test_a_capability_never_buys_a_higher_mae() -> None:
    worse = gate.Scores(300.01, "1.16", level=0.8, coverage=0.8, mean_width=1000.0, holdout_rows=4000)
    assert not gate.decide(worse, PLAIN_V2).promote


def test_the_same_capabilities_are_no_reason_to_promote() -> None:
    assert not gate.decide(RANGED, RANGED).promote


@pytest.mark.parametrize("mae", [math.inf, math.nan])
def test_a_non_finite_mae_is_never_promoted(mae: float) -> None:
    decision = gate.decide(gate.Scores(mae, None, holdout_rows=4000), None)
    assert not decision.promote and "not a finite number" in decision.reason


@pytest.mark.parametrize(("coverage", "promote"), [(0.769, False), (0.771, True), (0.829, True), (0.831, False)])
def test_coverage_more_than_three_points_off_is_rejected(coverage: float, promote: bool) -> None:
    candidate = gate.Scores(
        1.0, "1.16", level=0.8, coverage=coverage, mean_width=1.0, holdout_rows=4056, calibration_rows=7140
    )
    assert candidate.coverage_tolerance() == gate.COVERAGE_TOLERANCE  # the shipped data's size: plain 3 points
    decision = gate.decide(candidate, None)
    assert decision.promote is promote
    if not promote:
        assert "held-out prices" in decision.reason and "nominal 80%" in decision.reason


def test_on_small_data_the_tolerance_widens_to_three_standard_errors() -> None:
    small = gate.Scores(1.0, "1.16", level=0.8, coverage=0.85, mean_width=1.0, holdout_rows=300, calibration_rows=500)
    expected = 3 * math.sqrt(0.8 * 0.2 * (1 / 300 + 1 / 500))
    assert small.coverage_tolerance() == pytest.approx(expected)
    assert gate.decide(small, None).promote
    assert not gate.decide(gate.Scores(**{**small.__dict__, "coverage": 0.8 - expected - 0.001}), None).promote


def test_score_measures_mae_coverage_and_width_from_the_onnx(trained: Project) -> None:
    ds = data.load(trained.db)
    holdout = ds.frame[ds.holdout]
    blob = (trained.registry / "diamond_price-v1.onnx").read_bytes()  # the tiny pipeline, with its range
    scores = gate.score(blob, holdout, version=1)
    price, low, high = ort.InferenceSession(blob).run(
        None, make_feeds({n: holdout[n].to_numpy() for n in FEATURES.names})
    )
    y = holdout["price"].to_numpy()
    assert scores.mae == pytest.approx(float(np.mean(np.abs(price.ravel() - y))), rel=1e-6)
    assert scores.coverage == pytest.approx(float(np.mean((low.ravel() <= y) & (y <= high.ravel()))))
    assert scores.mean_width == pytest.approx(float(np.mean(high - low)), rel=1e-5)
    assert scores.level == 0.8 and scores.min_onnxruntime == export.MIN_ONNXRUNTIME
    assert scores.holdout_rows == len(holdout) and scores.calibration_rows > 0
    assert (low <= price).all() and (price <= high).all()


def test_a_current_model_that_cannot_price_the_holdout_loses_to_any_finite_candidate() -> None:
    broken = gate.Scores(math.inf, None, holdout_rows=4000, version=3)
    decision = gate.decide(gate.Scores(10_000.0, None, holdout_rows=4000), broken)
    assert decision.promote and "cannot price every held-out row" in decision.reason


# -- the evidence rule: a paired bootstrap over the same held-out rows -----------------------


def real_errors(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A real model's absolute errors on real held-out diamonds, and a second model's: the first
    with each row's error moved by noise, half up and half down (a model "better" by luck only)."""
    ds = data.load(REPO_DB)
    y = ds.frame["price"].to_numpy()[:rows]
    errors = np.abs(y - np.median(y))  # the error of pricing every stone at the median price
    noise = np.random.default_rng(seed).normal(0, 200, rows)
    return errors, np.abs(errors + noise)


def test_the_bootstrap_matches_the_textbook_interval_and_repeats() -> None:
    current, candidate = real_errors(3000, seed=1)
    diff = candidate - current
    found = bootstrap.paired_difference(candidate, current)
    assert found == bootstrap.paired_difference(candidate, current)  # seeded: the same rows, the same interval
    assert found.resamples >= 2000 and found.mean == pytest.approx(float(diff.mean()))
    half = 1.96 * float(diff.std()) / math.sqrt(len(diff))  # the normal approximation, fine at 3,000 rows
    assert found.high - found.low == pytest.approx(2 * half, rel=0.1)
    assert found.low < found.mean < found.high


def test_the_bootstrap_is_the_plain_loop_vectorised() -> None:
    current, candidate = real_errors(500, seed=2)
    found = bootstrap.paired_difference(candidate, current, resamples=2000)
    rng, diff = np.random.default_rng(bootstrap.SEED), candidate - current
    means = [diff[rng.integers(0, len(diff), size=len(diff))].mean() for _ in range(2000)]
    assert (found.low, found.high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), abs=1e-9)


@pytest.mark.parametrize("shape", [(0,), (3, 2)])
def test_the_bootstrap_refuses_what_it_cannot_resample(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="finite errors"):
        bootstrap.paired_difference(np.zeros(shape), np.zeros(shape))


def fitted_blob(frame: pd.DataFrame, **params: object) -> bytes:
    pipeline = tiny_factory(interval=False, **params)()
    pipeline.fit(frame[list(FEATURES.names)], frame[FEATURES.target].to_numpy())
    return export.to_onnx(pipeline, version=1, metadata={}).SerializeToString()


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Real diamonds: 6,000 rows, about 600 of them held out as the gate holds them out."""
    ds = data.load(make_db(tmp_path_factory.mktemp("gate") / "d.db", rows=6000))
    return ds.frame[~ds.holdout], ds.frame[ds.holdout]


def test_a_candidate_better_by_noise_only_is_rejected(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Two real fits that differ only in their random seed; the one that happens to score lower
    is the candidate. The old rule (any lower MAE) would have promoted it."""
    train, holdout = split
    a, b = (gate.score(fitted_blob(train, max_features=0.5, random_state=seed), holdout, version=1) for seed in (0, 1))
    candidate, current = (a, b) if a.mae < b.mae else (b, a)
    assert candidate.mae < current.mae  # lower, by the seed's luck
    decision = gate.decide(candidate, current)
    assert not decision.promote and "not distinguishable" in decision.reason
    assert decision.difference is not None and decision.difference.low < 0 < decision.difference.high
    assert decision.difference.describe() in decision.reason


def test_a_truly_better_candidate_is_promoted_with_its_interval(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, holdout = split
    current = gate.score(fitted_blob(train, max_iter=3), holdout, version=1)
    candidate = gate.score(fitted_blob(train, max_iter=60), holdout)
    decision = gate.decide(candidate, current)
    assert decision.promote and "lower MAE, the interval of the difference below zero" in decision.reason
    difference = decision.difference
    assert difference is not None and difference.high < 0
    assert difference.mean == pytest.approx(candidate.mae - current.mae)
    assert "95% paired bootstrap" in decision.reason and f"{difference.high:+.2f}]" in decision.reason
    assert not gate.decide(current, candidate).promote  # and the other way round, "MAE not lower"
    assert "MAE not lower" in gate.decide(current, candidate).reason
