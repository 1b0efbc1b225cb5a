"""Export a fitted pipeline to a self-contained ONNX model, and prove it prices the same.

skl2onnx converts the whole pipeline, preprocessing included (the regressor through
:mod:`training.onnx_converters`). The model's interface:

* inputs: one per feature, ``[N, 1]``: numeric as float32, categorical as string;
* outputs: ``price`` float32 ``[N, 1]`` and, for a model with a price range,
  ``price_low`` and ``price_high`` (its bounds, ``low <= price <= high``); NaN in every
  output for a row outside the feature schema (an unknown category, a numeric value
  missing or out of range), so an embedder can never get a plausible price for a
  diamond the model does not know;
* operators: only those every onnxruntime from :data:`MIN_ONNXRUNTIME` on implements
  (default opset :data:`OPSET`, ``ai.onnx.ml`` opset 3);
* ``metadata_props``: name, version, the feature schema, the outputs, the minimum
  onnxruntime, the MAE and its protocol, the training rows' input baseline (``input_baseline``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.pipeline import Pipeline

from inference.baseline import BASELINE_KEY, Baseline
from inference.modelsettings import MODEL_NAME
from inference.onnx_io import OUTPUT, make_feeds, open_session, predict_outputs
from inference.schema import FEATURES, FeatureSchema
from training import onnx_converters

OPSET = 17
ML_OPSET = 3
MIN_ONNXRUNTIME = "1.16"
"""The oldest onnxruntime that runs the exported graph (``ai.onnx.ml`` 3, default opset 17),
tested in ``tests/training/test_portability.py``."""
PARITY_TOLERANCE = 0.01
"""Largest allowed |onnxruntime - scikit-learn| on any row, in dollars."""
INVALID_ROWS_RULE = (
    "price is NaN for a row outside feature_schema: an unknown category, or a numeric "
    "feature that is missing or out of range. Treat NaN as 'cannot price', never as a number."
)


class ExportError(Exception):
    """The pipeline did not export, or the export does not price like scikit-learn."""


def to_onnx(
    pipeline: Pipeline,
    *,
    version: int,
    metadata: dict[str, Any],
    schema: FeatureSchema = FEATURES,
    baseline: Baseline | None = None,
) -> onnx.ModelProto:
    """The fitted ``pipeline`` as an ONNX model with the project's interface, carrying the training
    rows' ``baseline`` (:mod:`training.baseline`) when given."""
    onnx_converters.register()
    initial_types: list[tuple[str, Any]] = [(n, FloatTensorType([None, 1])) for n in schema.numeric]
    initial_types += [(n, StringTensorType([None, 1])) for n in schema.categorical]
    try:
        model = convert_sklearn(
            pipeline,
            initial_types=initial_types,
            target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
            naming="sk_",
        )
    except NotImplementedError as exc:
        raise ExportError(str(exc)) from exc
    except Exception as exc:  # skl2onnx raises many kinds; all mean "did not export"
        raise ExportError(f"skl2onnx could not convert the pipeline: {exc}") from exc
    assert isinstance(model, onnx.ModelProto)
    outputs = model_outputs(pipeline)
    _split_output(model.graph, outputs)
    model.graph.name = MODEL_NAME
    model.model_version = version
    model.producer_name = "diamond-price training"
    model.doc_string = "Diamond price in USD from carat, cut, color and clarity. " + INVALID_ROWS_RULE
    props = {
        "name": MODEL_NAME,
        "version": str(version),
        "feature_schema": schema.to_json(),
        "invalid_rows": INVALID_ROWS_RULE,
        "outputs": _json(list(outputs)),
        "min_onnxruntime": MIN_ONNXRUNTIME,
        **_range_props(pipeline),
        **({} if baseline is None else {BASELINE_KEY: baseline.to_json()}),
        **{k: v if isinstance(v, str) else _json(v) for k, v in metadata.items()},
    }
    helper.set_model_props(model, props)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ExportError(f"exported model fails the ONNX checker: {exc}") from exc
    return model


def model_outputs(pipeline: Pipeline) -> tuple[str, ...]:
    """The exported model's output names: the regressor's ``outputs`` (``price`` alone by default)."""
    return tuple(getattr(pipeline.steps[-1][1], "outputs", (OUTPUT,)))


def _range_props(pipeline: Pipeline) -> dict[str, str]:
    regress = pipeline.steps[-1][1]
    level = getattr(regress, "level", None)
    if level is None:
        return {}
    return {
        "price_range_level": str(level),
        "price_range_calibration_rows": str(getattr(regress, "calibration_rows_", 0)),
        "price_range": (
            f"price_low and price_high bound a {level:.0%} central interval of the price "
            f"(conformalized quantile regression, calibrated at training); price_low <= price <= price_high"
        ),
    }


def _split_output(graph: onnx.GraphProto, names: tuple[str, ...]) -> None:
    """Replace the converter's one ``[N, k]`` output by ``k`` named ``[N, 1]`` outputs."""
    (combined,) = graph.output
    sizes = f"{combined.name}_split_sizes"
    graph.initializer.append(numpy_helper.from_array(np.ones(len(names), dtype=np.int64), sizes))
    graph.node.append(helper.make_node("Split", [combined.name, sizes], list(names), axis=1, name="split_outputs"))
    del graph.output[:]
    graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [None, 1]) for n in names)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def cut_probes(pipeline: Pipeline, schema: FeatureSchema = FEATURES, per_value: int = 2, seed: int = 0) -> pd.DataFrame:
    """Rows that probe every numeric cut of the compiled model.

    For each breakpoint b of each numeric input (see ``BoostedLogPrice.breakpoints``),
    the float32 values just below b, b itself and just above b, each ``per_value`` times
    with categories drawn at random (other numeric inputs at random inside their range).
    A split placed one float32 off would send one of the three to the wrong cell.
    """
    regress = pipeline.steps[-1][1]
    if not hasattr(regress, "breakpoints"):
        return pd.DataFrame(columns=list(schema.names))
    cuts = regress.breakpoints()
    rng = np.random.default_rng(seed)
    parts = []
    for column, name in enumerate(schema.numeric):
        b = np.asarray(cuts[column], dtype=np.float32)
        values = np.concatenate([np.nextafter(b, np.float32(-np.inf)), b, np.nextafter(b, np.float32(np.inf))])
        values = np.repeat(values, per_value).astype(np.float64)
        part = {
            n: rng.uniform(lo, hi, size=values.size).astype(np.float32).astype(np.float64)
            for n, (lo, hi) in schema.numeric.items()
        }
        part[name] = values
        part.update(
            {n: rng.choice(np.asarray(v, dtype=object), size=values.size) for n, v in schema.categorical.items()}
        )
        parts.append(pd.DataFrame(part, columns=list(schema.names)))
    return pd.concat(parts, ignore_index=True)


def check_parity(blob: bytes, pipeline: Pipeline, frame: pd.DataFrame, schema: FeatureSchema = FEATURES) -> float:
    """Largest |onnxruntime - scikit-learn|, over every output, on ``frame`` and every cut's neighbourhood
    (:func:`cut_probes`); raises :class:`ExportError` past the tolerance.

    Every row of ``frame`` must get a price. A probe may fall outside the valid range:
    there both sides must agree that it has none (NaN).
    """
    probes = cut_probes(pipeline, schema)
    rows = pd.concat([frame[list(schema.names)], probes], ignore_index=True) if len(probes) else frame
    names = model_outputs(pipeline)
    feeds = make_feeds({n: rows[n].to_numpy() for n in schema.names}, schema)
    ours = predict_outputs(open_session(blob), feeds, names).astype(np.float64)
    reference = reference_outputs(pipeline, rows[list(schema.names)])
    in_frame = np.arange(len(rows)) < len(frame)
    if np.isnan(ours[in_frame]).any():
        bad = int(np.isnan(ours[in_frame]).any(axis=1).sum())
        raise ExportError(f"the exported model returned NaN for {bad} in-schema rows")
    disagree = (np.isnan(ours) != np.isnan(reference)).any(axis=1)
    if disagree.any():
        row = rows[disagree].iloc[0].to_dict()
        raise ExportError(f"onnxruntime and scikit-learn disagree on whether {row} has a price")
    gap = np.abs(np.where(np.isnan(ours), 0.0, ours - reference)).max(axis=1)
    worst = float(np.max(gap, initial=0.0))
    if not worst <= PARITY_TOLERANCE:
        row = rows.iloc[int(np.argmax(gap))].to_dict()
        raise ExportError(f"onnxruntime differs from scikit-learn by ${worst:.4f} (> ${PARITY_TOLERANCE}) on {row}")
    return worst


def reference_outputs(pipeline: Pipeline, rows: pd.DataFrame) -> np.ndarray:
    """scikit-learn's values of the model's outputs, ``[N, len(outputs)]`` float64."""
    regress = pipeline.steps[-1][1]
    if hasattr(regress, "predict_all"):
        return np.asarray(regress.predict_all(pipeline[:-1].transform(rows)), dtype=np.float64)
    return np.asarray(pipeline.predict(rows), dtype=np.float64).reshape(-1, 1)
