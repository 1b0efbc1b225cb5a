"""The model-quality protocol (`python -m training.evaluate`), on a small real database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import KFold

from tests.helpers import make_db, tiny_factory
from training import data, evaluate


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> data.Dataset:
    return data.load(make_db(tmp_path_factory.mktemp("eval") / "d.db", rows=2000))


@pytest.fixture(scope="module")
def sklearn_folds(frame: data.Dataset) -> list[evaluate.Fold]:
    """3-fold cross-validation of the tiny pipeline, scored with scikit-learn (read only)."""
    return evaluate.cross_validate(frame.frame, evaluate.sklearn_predictor(tiny_factory()), folds=3)


def test_cross_validation_follows_the_protocol(frame: data.Dataset) -> None:
    seen: list[np.ndarray] = []

    def mean_price(X: object, y: np.ndarray, X_test: object) -> np.ndarray:
        seen.append(y)
        return np.full(len(X_test), y.mean())  # type: ignore[arg-type]

    y = frame.frame["price"].to_numpy()
    for seed in (0, 7):  # the protocol's split, and another one asked for with --seed
        maes = [f.mae for f in evaluate.cross_validate(frame.frame, mean_price, folds=5, seed=seed)]
        expected = [
            float(np.mean(np.abs(y[test] - y[train].mean())))
            for train, test in KFold(n_splits=5, shuffle=True, random_state=seed).split(y)
        ]
        assert maes == pytest.approx(expected)
    assert len(seen) == 10


def test_onnx_scoring_agrees_with_scikit_learn(frame: data.Dataset, sklearn_folds: list[evaluate.Fold]) -> None:
    sk = sklearn_folds
    ours = evaluate.cross_validate(frame.frame, evaluate.onnx_predictor(tiny_factory()), folds=3)
    assert [f.mae for f in ours] == pytest.approx([f.mae for f in sk], abs=0.01)
    assert [f.width for f in ours] == pytest.approx([f.width for f in sk], abs=0.01)
    assert [f.coverage for f in ours] == [f.coverage for f in sk]


def test_price_range_coverage_and_width_per_fold(sklearn_folds: list[evaluate.Fold]) -> None:
    assert len(sklearn_folds) == 3
    for fold in sklearn_folds:
        assert fold.coverage is not None and fold.width is not None
        assert 0.6 < fold.coverage <= 1.0 and fold.width > 0


def test_command_prints_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = make_db(tmp_path / "d.db", rows=600)
    monkeypatch.setattr(evaluate, "build_pipeline", tiny_factory())
    assert evaluate.main(["--db", str(db), "--folds", "3", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "3-fold CV (KFold shuffle, random_state=3)" in out and "| shipped pipeline |" in out
    assert "HistGradientBoostingRegressor(loss='absolute_error'), defaults" in out
    row = next(line for line in out.splitlines() if line.startswith("| shipped pipeline"))
    mean, std = (float(x) for x in row.split("|")[2].split("±"))
    assert 0 < mean < 1000 and std >= 0
    coverage = float(row.split("|")[3].strip().rstrip("%"))
    assert 60 < coverage <= 100
    assert "Per fold, shipped pipeline:" in out
    per_fold = [line for line in out.splitlines() if line.startswith(("| 1 |", "| 2 |", "| 3 |"))]
    assert len(per_fold) == 3
    assert "Out-of-fold MAE by carat band, shipped pipeline, against the noise floor:" in out
    assert "How: floor: per cell of identical carat, cut, color and clarity" in out
    bands = [line.split("|") for line in out.splitlines() if line.startswith(("| 0.2–0.5 |", "| all |"))]
    assert len(bands) == 2
    rows, band_mae = int(bands[1][2].replace(",", "")), float(bands[1][3].replace(",", ""))
    assert rows == len(data.load(db).frame) and band_mae == pytest.approx(mean, abs=5)  # pooled folds vs their mean


def test_out_of_fold_prices_cover_every_row_once(frame: data.Dataset, sklearn_folds: list[evaluate.Fold]) -> None:
    rows = np.concatenate([f.rows for f in sklearn_folds if f.rows is not None])
    assert sorted(rows) == list(range(len(frame.frame)))
    y = frame.frame["price"].to_numpy()
    for f in sklearn_folds:
        assert f.rows is not None and f.price is not None
        assert f.mae == pytest.approx(float(np.mean(np.abs(f.price - y[f.rows]))))
