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
    """Largest |onnxruntime - scikit-learn| over ``frame`` and every cut's neighbourhood
    (:func:`cut_probes`); raises :class:`ExportError` past the tolerance.

    Every row of ``frame`` must get a price. A probe may fall outside the valid range:
    there both sides must agree that it has none (NaN).
    """
    probes = cut_probes(pipeline, schema)
    rows = pd.concat([frame[list(schema.names)], probes], ignore_index=True) if len(probes) else frame
    ours = predict(open_session(blob), make_feeds({n: rows[n].to_numpy() for n in schema.names}, schema))
    ours = ours.astype(np.float64)
    reference = np.asarray(pipeline.predict(rows[list(schema.names)]), dtype=np.float64)
    in_frame = np.arange(len(rows)) < len(frame)
    if np.isnan(ours[in_frame]).any():
        bad = int(np.isnan(ours[in_frame]).sum())
        raise ExportError(f"the exported model returned NaN for {bad} in-schema rows")
    disagree = np.isnan(ours) != np.isnan(reference)
    if disagree.any():
        row = rows[disagree].iloc[0].to_dict()
        raise ExportError(f"onnxruntime and scikit-learn disagree on whether {row} has a price")
    gap = np.abs(np.where(np.isnan(ours), 0.0, ours - reference))
    worst = float(np.max(gap, initial=0.0))
    if not worst <= PARITY_TOLERANCE:
        row = rows.iloc[int(np.argmax(gap))].to_dict()
        raise ExportError(f"onnxruntime differs from scikit-learn by ${worst:.4f} (> ${PARITY_TOLERANCE}) on {row}")
    return worst
