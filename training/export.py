"""Export a fitted pipeline to a self-contained ONNX model, and prove it prices the same.

skl2onnx converts the whole pipeline (with the float64 tree converters of
:mod:`training.onnx_converters`). This module then shapes the graph's interface:

* inputs: one per feature, ``[N, 1]``: numeric as float32 (cast to float64 inside),
  categorical as string;
* output: ``price`` float32 ``[N, 1]``, and NaN for every row outside the feature
  schema (an unknown category, a numeric value missing or out of range), so an
  embedder can never get a plausible price for a diamond the model does not know;
* ``metadata_props``: name, version, the feature schema, the MAE and its protocol.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
from sklearn.pipeline import Pipeline

from inference.onnx_io import OUTPUT, make_feeds, open_session, predict
from inference.schema import FEATURES, FeatureSchema
from training import onnx_converters

OPSET = 17
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
) -> onnx.ModelProto:
    """The fitted ``pipeline`` as an ONNX model with the project's interface."""
    onnx_converters.register()
    initial_types: list[tuple[str, Any]] = [(n, DoubleTensorType([None, 1])) for n in schema.numeric]
    initial_types += [(n, StringTensorType([None, 1])) for n in schema.categorical]
    try:
        model = convert_sklearn(
            pipeline,
            initial_types=initial_types,
            target_opset={"": OPSET, "ai.onnx.ml": 3},
            naming="sk_",
        )
    except NotImplementedError as exc:
        raise ExportError(str(exc)) from exc
    except Exception as exc:  # skl2onnx raises many kinds; all mean "did not export"
        raise ExportError(f"skl2onnx could not convert the pipeline: {exc}") from exc
    assert isinstance(model, onnx.ModelProto)
    onnx_converters.raise_ml_opset(model)
    _shape_interface(model, schema)
    model.model_version = version
    model.producer_name = "diamond-price training"
    model.doc_string = "Diamond price in USD from carat, cut, color and clarity. " + INVALID_ROWS_RULE
    props = {
        "name": "diamond_price",
        "version": str(version),
        "feature_schema": schema.to_json(),
        "invalid_rows": INVALID_ROWS_RULE,
        **{k: v if isinstance(v, str) else _json(v) for k, v in metadata.items()},
    }
    helper.set_model_props(model, props)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ExportError(f"exported model fails the ONNX checker: {exc}") from exc
    return model


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _shape_interface(model: onnx.ModelProto, schema: FeatureSchema) -> None:
    graph = model.graph
    front: list[onnx.NodeProto] = []
    checks: list[str] = []

    def const(name: str, array: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(array, name))
        return name

    # Numeric inputs arrive as float32 and are widened once, so every split compares in float64.
    for name in schema.numeric:
        wide = f"{name}_f64"
        for node in graph.node:
            node.input[:] = [wide if i == name else i for i in node.input]
        (inp,) = [i for i in graph.input if i.name == name]
        inp.type.tensor_type.elem_type = TensorProto.FLOAT
        front.append(helper.make_node("Cast", [name], [wide], to=TensorProto.DOUBLE, name=f"widen_{name}"))
        lo, hi = schema.numeric[name]
        ge = f"{name}_ge_min"
        le = f"{name}_le_max"
        front.append(helper.make_node("GreaterOrEqual", [name, const(f"{name}_min", np.array(lo, np.float32))], [ge]))
        front.append(helper.make_node("LessOrEqual", [name, const(f"{name}_max", np.array(hi, np.float32))], [le]))
        ok = f"{name}_in_range"
        front.append(helper.make_node("And", [ge, le], [ok]))  # NaN compares false both ways
        checks.append(ok)

    for name, allowed in schema.categorical.items():
        code = f"{name}_code"
        front.append(
            helper.make_node(
                "LabelEncoder",
                [name],
                [code],
                domain="ai.onnx.ml",
                keys_strings=list(allowed),
                values_int64s=list(range(len(allowed))),
                default_int64=-1,
                name=f"check_{name}",
            )
        )
        ok = f"{name}_known"
        front.append(helper.make_node("GreaterOrEqual", [code, const(f"{name}_zero", np.array(0, np.int64))], [ok]))
        checks.append(ok)

    valid = checks[0]
    for i, other in enumerate(checks[1:]):
        nxt = f"valid_{i}"
        front.append(helper.make_node("And", [valid, other], [nxt]))
        valid = nxt

    (out,) = graph.output
    raw = out.name
    nan = const("nan_f64", np.array(np.nan, np.float64))
    tail = [
        helper.make_node("Where", [valid, raw, nan], ["price_f64"], name="nan_outside_schema"),
        helper.make_node("Cast", ["price_f64"], [OUTPUT], to=TensorProto.FLOAT, name="narrow_price"),
    ]
    nodes = [*front, *graph.node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, 1]))
    graph.name = "diamond_price"


def check_parity(blob: bytes, pipeline: Pipeline, frame: pd.DataFrame, schema: FeatureSchema = FEATURES) -> float:
    """Largest |onnxruntime - scikit-learn| over ``frame``; raises :class:`ExportError` past the tolerance."""
    columns = {n: frame[n].to_numpy() for n in schema.names}
    # The model takes float32 carats; scikit-learn is judged on the values as recorded.
    ours = predict(open_session(blob), make_feeds(columns, schema)).astype(np.float64)
    reference = pipeline.predict(frame[list(schema.names)])
    if np.isnan(ours).any():
        bad = int(np.isnan(ours).sum())
        raise ExportError(f"the exported model returned NaN for {bad} in-schema rows")
    worst = float(np.max(np.abs(ours - reference)))
    if not worst <= PARITY_TOLERANCE:
        raise ExportError(f"onnxruntime differs from scikit-learn by ${worst:.4f} (> ${PARITY_TOLERANCE})")
    return worst
