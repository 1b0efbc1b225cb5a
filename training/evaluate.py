"""``python -m training.evaluate``: the model-quality protocol, printed as a table.

Protocol (fixed, so that figures compare): the clean rows of ``diamond.db`` (training's
cleaning: 39,756 rows from the public data), features carat, cut, color and clarity,
target price, ``KFold(n_splits=10, shuffle=True, random_state=0)``; the figure is the
mean absolute error over folds and its standard deviation (numpy's default, ddof=0).
``--seed`` shuffles the folds differently, to check that a gain is not one split's luck.

Rows: the pipeline training ships; a plain HistGradientBoosting baseline; and LightGBM
with the original service's parameters, only when lightgbm happens to be installed (it
is not a dependency). ``--onnx`` scores the shipped pipeline through its exported
``.onnx`` with onnxruntime, as the registry would serve it.

After the table, the shipped pipeline's out-of-fold MAE by carat band beside the noise floor
(:mod:`training.floor`): each row priced once, by the fold's model that did not see it.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from inference.logs import configure_logging
from inference.onnx_io import make_feeds, open_session, predict_outputs
from inference.schema import FEATURES
from training import data, export, floor
from training.paths import TrainingPaths
from training.pipeline import build_pipeline

log = logging.getLogger("training.evaluate")
Predictor = Callable[[pd.DataFrame, np.ndarray, pd.DataFrame], np.ndarray]
"""(train features, train target, test features) -> predicted prices ``[N]``, or
``[N, 3]`` (price, low, high) for a model with a price range."""


@dataclass(frozen=True)
class Score:
    """One model's cross-validated figures: a row of the table."""

    name: str
    fold_maes: list[float]
    seconds: float
    fold_coverage: list[float] | None = None
    """Per fold, the share of prices inside the price range (models with a range)."""
    fold_width: list[float] | None = None
    """Per fold, the range's mean width in USD."""
    out_of_fold: np.ndarray | None = None
    """Each row's price from the fold that held it out, in the frame's order."""

    @property
    def mean(self) -> float:
        """Mean MAE over the folds."""
        return float(np.mean(self.fold_maes))

    @property
    def std(self) -> float:
        """Standard deviation of the folds' MAE (ddof=0)."""
        return float(np.std(self.fold_maes))


@dataclass(frozen=True)
class Fold:
    """One fold's MAE and, for a model with a price range, its coverage and mean width."""

    mae: float
    coverage: float | None
    width: float | None
    rows: np.ndarray | None = None
    """The fold's test rows (positions in the frame)."""
    price: np.ndarray | None = None
    """The model's price for each of them."""


def cross_validate(frame: pd.DataFrame, fit_predict: Predictor, folds: int = 10, seed: int = 0) -> list[Fold]:
    """Score ``fit_predict`` on each of ``folds`` shuffled K-fold splits of ``frame`` (the protocol's)."""
    X = frame[list(FEATURES.names)]
    y = frame[FEATURES.target].to_numpy(dtype=np.float64)
    found = []
    for train, test in KFold(n_splits=folds, shuffle=True, random_state=seed).split(X):
        prices = fit_predict(X.iloc[train], y[train], X.iloc[test])
        price = prices.reshape(len(test), -1)[:, 0]
        mae = float(np.mean(np.abs(price - y[test])))
        if prices.ndim == 2 and prices.shape[1] == 3:
            low, high = prices[:, 1], prices[:, 2]
            cover, width = float(np.mean((low <= y[test]) & (y[test] <= high))), float(np.mean(high - low))
            found.append(Fold(mae, cover, width, test, price))
        else:
            found.append(Fold(mae, None, None, test, price))
    return found


def sklearn_predictor(factory: Callable[[], Pipeline]) -> Predictor:
    """A predictor that fits a fresh ``factory()`` pipeline and predicts with scikit-learn."""

    def run(X: pd.DataFrame, y: np.ndarray, X_test: pd.DataFrame) -> np.ndarray:
        return export.reference_outputs(factory().fit(X, y), X_test)

    return run


def onnx_predictor(factory: Callable[[], Pipeline]) -> Predictor:
    """A predictor that fits a fresh ``factory()`` pipeline, exports it and predicts from the ``.onnx``."""

    def run(X: pd.DataFrame, y: np.ndarray, X_test: pd.DataFrame) -> np.ndarray:
        pipeline = factory().fit(X, y)
        blob = export.to_onnx(pipeline, version=1, metadata={}).SerializeToString()
        feeds = make_feeds({n: X_test[n].to_numpy() for n in FEATURES.names})
        return predict_outputs(open_session(blob), feeds, export.model_outputs(pipeline)).astype(np.float64)

    return run


def baseline() -> Pipeline:
    """HistGradientBoostingRegressor(loss="absolute_error") with its defaults, ordinal grades."""
    encode = ColumnTransformer(
        [
            ("numeric", "passthrough", list(FEATURES.numeric)),
            ("grades", OrdinalEncoder(categories=[list(v) for v in FEATURES.categorical.values()]),
             list(FEATURES.categorical)),
        ]
    )  # fmt: skip
    # Defaults, except that random_state pins the early-stopping split so the figure repeats.
    return Pipeline([("encode", encode), ("hgb", HistGradientBoostingRegressor(loss="absolute_error", random_state=0))])


def lightgbm_predictor() -> Predictor:
    """LightGBM with the original service's parameters, categories as pandas ``category``."""
    import lightgbm

    def as_categories(X: pd.DataFrame) -> pd.DataFrame:
        X = X.copy()
        for name, allowed in FEATURES.categorical.items():
            X[name] = pd.Categorical(X[name], categories=list(allowed))
        return X

    def run(X: pd.DataFrame, y: np.ndarray, X_test: pd.DataFrame) -> np.ndarray:
        model = lightgbm.LGBMRegressor(
            objective="mae", n_estimators=397, num_leaves=37, learning_rate=0.1, colsample_bytree=0.9,
            random_state=1, verbose=-1,
        )  # fmt: skip
        model.fit(as_categories(X), y)
        return np.asarray(model.predict(as_categories(X_test)), dtype=np.float64)

    return run


def evaluate(frame: pd.DataFrame, folds: int, use_onnx: bool, seed: int = 0) -> list[Score]:
    """Cross-validate every contender (the module's rows) on ``frame``."""
    contenders: list[tuple[str, Predictor]] = [
        (
            "shipped pipeline" + (" (scored from its .onnx)" if use_onnx else ""),
            (onnx_predictor if use_onnx else sklearn_predictor)(build_pipeline),
        ),
        ("HistGradientBoostingRegressor(loss='absolute_error'), defaults", sklearn_predictor(baseline)),
    ]
    if importlib.util.find_spec("lightgbm") is not None:
        contenders.append(("LightGBM, original service's parameters", lightgbm_predictor()))
    scores = []
    for name, fit_predict in contenders:
        log.info("cross-validating: %s", name)
        started = time.perf_counter()
        found = cross_validate(frame, fit_predict, folds, seed)
        ranged = all(f.coverage is not None for f in found)
        out_of_fold = np.full(len(frame), np.nan)
        for f in found:
            if f.rows is not None and f.price is not None:
                out_of_fold[f.rows] = f.price
        scores.append(
            Score(
                name,
                [f.mae for f in found],
                time.perf_counter() - started,
                [float(f.coverage) for f in found if f.coverage is not None] if ranged else None,
                [float(f.width) for f in found if f.width is not None] if ranged else None,
                out_of_fold,
            )
        )
    return scores


def format_table(scores: list[Score], rows: int, folds: int, seed: int = 0) -> str:
    """The scores as a Markdown table, then per-fold tables for models with a price range."""
    lines = [
        f"{folds}-fold CV (KFold shuffle, random_state={seed}) on {rows:,} clean rows",
        "",
        "| model | CV MAE (USD) | price range coverage | mean range width (USD) | time |",
        "|---|---|---|---|---|",
    ]
    for s in scores:
        cover = f"{np.mean(s.fold_coverage):.1%}" if s.fold_coverage else "-"
        width = f"{np.mean(s.fold_width):,.0f}" if s.fold_width else "-"
        lines.append(f"| {s.name} | {s.mean:.1f} ± {s.std:.1f} | {cover} | {width} | {s.seconds:.0f} s |")
    for s in scores:
        if s.fold_coverage and s.fold_width:
            lines += ["", f"Per fold, {s.name}:", "", "| fold | MAE | coverage | mean width |", "|---|---|---|---|"]
            lines += [
                f"| {i} | {m:.1f} | {c:.1%} | {w:,.0f} |"
                for i, (m, c, w) in enumerate(zip(s.fold_maes, s.fold_coverage, s.fold_width, strict=True), 1)
            ]
    return "\n".join(lines)


def format_floor(score: Score, frame: pd.DataFrame) -> str:
    """``score``'s out-of-fold MAE by carat band beside the noise floor, with how the floor is computed."""
    if score.out_of_fold is None:
        return ""
    actual = frame[FEATURES.target].to_numpy(dtype=np.float64)
    errors = np.abs(score.out_of_fold - actual)
    bands = floor.by_band(frame["carat"].to_numpy(dtype=np.float64), errors, floor.cell_spread(frame))
    title = f"Out-of-fold MAE by carat band, {score.name}, against the noise floor:"
    return "\n".join([title, "", floor.format_bands(bands), "", f"How: {floor.HOW}."])


def main(argv: list[str] | None = None) -> int:
    """Load the database, cross-validate, print the table."""
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="SQLite database (default: $DIAMOND_DB or the repo's diamond.db)")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="KFold's random_state (default 0, the protocol's)")
    parser.add_argument("--onnx", action="store_true", help="score the shipped pipeline through its exported .onnx")
    args = parser.parse_args(argv)
    configure_logging(fmt="%(message)s")
    dataset = data.load(TrainingPaths.from_env(db=args.db).db)
    scores = evaluate(dataset.frame, args.folds, args.onnx, args.seed)
    print(format_table(scores, len(dataset.frame), args.folds, args.seed))
    print()
    print(format_floor(scores[0], dataset.frame))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
