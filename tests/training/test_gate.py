"""The gate's rules (training/gate.py): pure decisions, and scoring a real exported model."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest

from inference.onnx_io import make_feeds
from inference.schema import FEATURES
from tests.helpers import Project
from training import data, export, gate

RANGED = gate.Scores(300.0, "1.16", level=0.8, coverage=0.80, mean_width=1000.0, holdout_rows=4000, version=None)
PLAIN_V2 = gate.Scores(300.0, None, holdout_rows=4000, version=2)


def test_no_current_model_promotes() -> None:
    decision = gate.decide(RANGED, None)
    assert decision.promote and "no current model" in decision.reason


def test_lower_mae_promotes_and_names_both_figures() -> None:
    decision = gate.decide(gate.Scores(299.99, None, holdout_rows=4000), PLAIN_V2)
    assert decision.promote and "lower MAE" in decision.reason
    assert "299.99" in decision.reason and "300.00" in decision.reason and "current v2" in decision.reason


def test_equal_mae_without_a_new_capability_rejects() -> None:
    decision = gate.decide(gate.Scores(300.0, None, holdout_rows=4000), PLAIN_V2)
    assert not decision.promote and "MAE not lower" in decision.reason


def test_equal_mae_that_adds_capabilities_promotes_and_says_why() -> None:
    decision = gate.decide(RANGED, PLAIN_V2)
    assert decision.promote
    assert "as good" in decision.reason and "price range (80%)" in decision.reason
    assert "onnxruntime >= 1.16" in decision.reason and "80.0%" in decision.reason


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
