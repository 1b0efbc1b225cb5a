"""Export a fitted pipeline to a self-contained ONNX model, and prove it prices the same.

skl2onnx converts the whole pipeline, preprocessing included (the regressor through
:mod:`training.onnx_converters`). The model's interface:

* inputs: one per feature, ``[N, 1]``: numeric as float32, categorical as string;
* output: ``price`` float32 ``[N, 1]``, and NaN for every row outside the feature
  schema (an unknown category, a numeric value missing or out of range), so an
  embedder can never get a plausible price for a diamond the model does not know;
* ``metadata_props``: name, version, the feature schema, the MAE and its protocol.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
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
    initial_types: list[tuple[str, Any]] = [(n, FloatTensorType([None, 1])) for n in schema.numeric]
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
    _rename_output(model.graph, OUTPUT)
    model.graph.name = "diamond_price"
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


def _rename_output(graph: onnx.GraphProto, name: str) -> None:
    (output,) = graph.output
    for node in graph.node:
        node.output[:] = [name if o == output.name else o for o in node.output]
    output.name = name


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


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
