from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from inference.onnx_io import make_feeds, predict
from inference.schema import FEATURES
from tests.conftest import TINY, make_db
from training import data, export
from training.estimator import float32_below
from training.pipeline import build_pipeline


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, data.Dataset]:
    ds = data.load(make_db(tmp_path_factory.mktemp("export") / "d.db", rows=3000))
    pipe = build_pipeline(boosters=(TINY, {**TINY, "learning_rate": 0.2, "max_features": 0.5, "random_state": 1}))
    pipe.fit(ds.frame[list(FEATURES.names)], ds.frame["price"].to_numpy())
    return pipe, ds


@pytest.fixture(scope="module")
def session(fitted: tuple[Pipeline, data.Dataset]) -> ort.InferenceSession:
    pipe, _ = fitted
    model = export.to_onnx(pipe, version=7, metadata={"mae": 123.5, "train_rows": 3000})
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def feeds(rows: list[tuple[float, str, str, str]]) -> dict[str, np.ndarray]:
    return make_feeds({n: [r[i] for r in rows] for i, n in enumerate(FEATURES.names)})


def test_interface_is_one_named_input_per_feature(session: ort.InferenceSession) -> None:
    inputs = [(i.name, i.type, i.shape) for i in session.get_inputs()]
    assert inputs == [
        ("carat", "tensor(float)", [None, 1]),
        ("cut", "tensor(string)", [None, 1]),
        ("color", "tensor(string)", [None, 1]),
        ("clarity", "tensor(string)", [None, 1]),
    ]
    assert [(o.name, o.type, o.shape) for o in session.get_outputs()] == [("price", "tensor(float)", [None, 1])]


def test_metadata_carries_version_schema_and_mae(session: ort.InferenceSession) -> None:
    meta = session.get_modelmeta()
    props = meta.custom_metadata_map
    assert props["version"] == "7"
    assert json.loads(props["mae"]) == 123.5
    assert json.loads(props["feature_schema"]) == FEATURES.to_dict()
    assert "NaN" in props["invalid_rows"]
    assert meta.version == 7


def test_parity_with_scikit_learn_on_every_row(fitted: tuple[Pipeline, data.Dataset]) -> None:
    pipe, ds = fitted
    blob = export.to_onnx(pipe, version=1, metadata={}).SerializeToString()
    worst = export.check_parity(blob, pipe, ds.frame)
    assert worst <= export.PARITY_TOLERANCE
    # And independently of check_parity: plain onnxruntime through the named inputs.
    ours = predict(ort.InferenceSession(blob), make_feeds({n: ds.frame[n].to_numpy() for n in FEATURES.names}))
    np.testing.assert_allclose(ours, pipe.predict(ds.frame[list(FEATURES.names)]), atol=0.01, rtol=0)


@pytest.mark.parametrize(
    "row",
    [
        (0.7, "Ideal", "G", "XX"),  # unknown clarity
        (0.7, "ideal", "G", "VS2"),  # case matters
        (0.7, "", "G", "VS2"),
        (0.7, "Ideal", "K", "VS2"),
        (0.1, "Ideal", "G", "VS2"),  # below the carat range
        (6.0, "Ideal", "G", "VS2"),  # above it
        (float("nan"), "Ideal", "G", "VS2"),
    ],
)
def test_rows_outside_the_schema_price_as_nan(session: ort.InferenceSession, row: tuple[float, str, str, str]) -> None:
    good = (0.7, "Ideal", "G", "VS2")
    prices = predict(session, feeds([good, row, good]))
    assert np.isfinite(prices[0]) and np.isfinite(prices[2])
    assert np.isnan(prices[1])


def test_schema_edges_are_priced(session: ort.InferenceSession) -> None:
    lo, hi = FEATURES.numeric["carat"]
    rows = [(lo, "Fair", "J", "I1"), (hi, "Ideal", "D", "IF")]
    assert np.isfinite(predict(session, feeds(rows))).all()


def test_parity_failure_is_reported(fitted: tuple[Pipeline, data.Dataset]) -> None:
    pipe, ds = fitted
    other = build_pipeline(boosters=({**TINY, "max_iter": 5},))
    other.fit(ds.frame[list(FEATURES.names)], ds.frame["price"].to_numpy())
    blob = export.to_onnx(other, version=1, metadata={}).SerializeToString()
    with pytest.raises(export.ExportError, match="differs from scikit-learn"):
        export.check_parity(blob, pipe, ds.frame)


def test_native_categorical_trees_do_not_pass_the_parity_check(tmp_path: Path) -> None:
    """HistGradientBoosting's native categorical splits never reach the registry."""
    ds = data.load(make_db(tmp_path / "d.db", rows=1500))
    X = ds.frame[list(FEATURES.names)]
    pipe = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [("n", "passthrough", ["carat"]), ("c", OrdinalEncoder(), ["cut", "color", "clarity"])]
                ),
            ),
            ("hgb", HistGradientBoostingRegressor(max_iter=20, categorical_features=[1, 2, 3], random_state=0)),
        ]
    )
    pipe.fit(X, ds.frame["price"].to_numpy())

    def export_and_check() -> None:
        blob = export.to_onnx(pipe, version=1, metadata={}).SerializeToString()
        export.check_parity(blob, pipe, ds.frame)

    # Depending on the skl2onnx and protobuf versions the conversion itself fails, or it
    # succeeds and the prices differ; either way nothing gets through.
    with pytest.raises(export.ExportError, match=r"could not convert|differs from scikit-learn"):
        export_and_check()


def test_exported_graph_passes_the_onnx_checker(fitted: tuple[Pipeline, data.Dataset]) -> None:
    pipe, _ = fitted
    model = export.to_onnx(pipe, version=1, metadata={})
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"TreeEnsemble", "Gather"} <= ops  # the ensemble is compiled into one table lookup
    assert "TreeEnsembleRegressor" not in ops
    assert len(model.graph.node) < 20


def test_compiled_model_prices_every_carat_like_scikit_learn(fitted: tuple[Pipeline, data.Dataset]) -> None:
    """Every carat on the 0.01 grid of the schema's range, and every breakpoint itself,
    sent as float32 through the whole graph, prices as scikit-learn prices the float64
    value (float32 output rounding aside), for every grade."""
    pipe, _ = fitted
    regress = pipe.named_steps["regress"]
    lo, hi = FEATURES.numeric["carat"]
    cuts = regress.breakpoints()[0]
    carats = np.unique(
        np.concatenate([np.round(np.arange(lo, hi + 0.001, 0.01), 2), cuts[(cuts >= lo) & (cuts <= hi)]])
    )
    rng = np.random.default_rng(1)
    rows = pd.DataFrame(
        {"carat": carats, **{n: rng.choice(v, size=len(carats)) for n, v in FEATURES.categorical.items()}}
    )
    blob = export.to_onnx(pipe, version=1, metadata={}).SerializeToString()
    ours = predict(ort.InferenceSession(blob), make_feeds({n: rows[n].to_numpy() for n in FEATURES.names}))
    reference = pipe.predict(rows)
    np.testing.assert_allclose(ours, reference, rtol=2e-7, atol=0)  # float32's own rounding of the price
    assert regress.upper_from is not None and np.float32(regress.upper_from) == regress.upper_from
    assert np.nextafter(np.float32(regress.upper_from), np.float32(-1)) in cuts


def test_breakpoints_include_the_valid_ranges_for_float32_inputs(fitted: tuple[Pipeline, data.Dataset]) -> None:
    pipe, _ = fitted
    regress = pipe.named_steps["regress"]
    lo, hi = FEATURES.numeric["carat"]
    carat_cuts = regress.breakpoints()[0]
    assert float32_below(lo) in carat_cuts and hi in carat_cuts
    assert np.float32(float32_below(lo)) < np.float32(lo) and np.nextafter(
        np.float32(float32_below(lo)), 1
    ) == np.float32(lo)
    for column, allowed in enumerate(FEATURES.categorical.values(), start=1):
        cuts = regress.breakpoints()[column]
        assert cuts[0] == float32_below(0.0) and cuts[-1] == len(allowed) - 1


def test_scikit_learn_side_also_prices_unknowns_as_nan(fitted: tuple[Pipeline, data.Dataset]) -> None:
    """The pipeline and its export share one rule: outside the schema, NaN."""
    pipe, _ = fitted
    rows = pd.DataFrame(
        {"carat": [0.7, 0.7, 9.0, 0.1], "cut": ["Ideal", "Superb", "Ideal", "Ideal"], "color": ["G"] * 4,
         "clarity": ["VS2"] * 4}
    )  # fmt: skip
    prices = pipe.predict(rows)
    assert np.isfinite(prices[0]) and np.isnan(prices[1:]).all()
