"""How rows become onnxruntime feeds, and how a model file becomes a session.

Training and serving both go through here, so both feed the graph alike."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from inference.modelsettings import ModelFileError
from inference.schema import FEATURES, FeatureSchema

OUTPUT = "price"
"""The point price, in every model."""
RANGE_OUTPUTS = ("price_low", "price_high")
"""The price range's bounds, in models that have one (``price_low <= price <= price_high``)."""


def make_feeds(
    columns: Mapping[str, Sequence[Any] | np.ndarray], schema: FeatureSchema = FEATURES
) -> dict[str, np.ndarray]:
    """Column-wise values -> named ``[N, 1]`` input arrays."""
    feeds: dict[str, np.ndarray] = {}
    for name in schema.numeric:
        feeds[name] = np.asarray(columns[name], dtype=np.float32).reshape(-1, 1)
    for name in schema.categorical:
        values = columns[name]
        arr = values.astype(object) if isinstance(values, np.ndarray) else np.array(values, dtype=object)
        feeds[name] = arr.reshape(-1, 1)
    return feeds


def open_session(blob: bytes) -> ort.InferenceSession:
    """An onnxruntime CPU session over the model bytes, with one intra-op thread: a server scales with
    processes (``WORKERS``), not with threads fighting over the same cores."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(blob, sess_options=options, providers=["CPUExecutionProvider"])


def predict(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray], options: ort.RunOptions | None = None
) -> np.ndarray:
    """Prices as a flat float32 array (NaN where the row is outside the schema)."""
    (prices,) = session.run([OUTPUT], feeds, options)
    return np.asarray(prices).reshape(-1)


def predict_outputs(
    session: ort.InferenceSession,
    feeds: dict[str, np.ndarray],
    names: Sequence[str],
    options: ort.RunOptions | None = None,
) -> np.ndarray:
    """The named outputs side by side, float32 ``[N, len(names)]``, in one onnxruntime call."""
    return np.concatenate(session.run(list(names), feeds, options), axis=1)


def range_level(session: ort.InferenceSession) -> float | None:
    """The price range's nominal coverage when the model has one, else None: serving, the gate and the
    report all decide "has a price range" here."""
    names = {o.name for o in session.get_outputs()}
    if not all(n in names for n in RANGE_OUTPUTS):
        return None
    try:
        level = float(metadata(session).get("price_range_level", "nan"))
    except ValueError:
        return None
    return level if 0 < level < 1 else None


def metadata(session: ort.InferenceSession) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map)


def check_inputs(session: ort.InferenceSession) -> None:
    """:class:`ModelFileError` unless the model takes exactly the feature schema's inputs, in order."""
    names = [i.name for i in session.get_inputs()]
    if names != list(FEATURES.names):
        raise ModelFileError(f"model inputs {names} do not match the feature schema {list(FEATURES.names)}")


def check_interface(session: ort.InferenceSession, options: ort.RunOptions | None = None) -> None:
    """What the service checks before it serves a model; :class:`ModelFileError` naming the first problem."""
    check_inputs(session)
    outputs = [o.name for o in session.get_outputs()]
    if OUTPUT not in outputs:
        raise ModelFileError(f"model has no {OUTPUT!r} output (outputs: {outputs})")
    if any(n in outputs for n in RANGE_OUTPUTS) and not all(n in outputs for n in RANGE_OUTPUTS):
        raise ModelFileError(f"model has only one of the price range's outputs {RANGE_OUTPUTS} (outputs: {outputs})")
    carried = metadata(session).get("feature_schema")
    if carried is not None:
        try:
            same = FeatureSchema.from_dict(json.loads(carried)) == FEATURES
        except (ValueError, KeyError, TypeError):
            same = False
        if not same:
            raise ModelFileError("the model was trained for a different feature schema than this service validates")
    probe: dict[str, list[Any]] = {n: [lo] for n, (lo, _) in FEATURES.numeric.items()}
    probe.update({n: [values[0]] for n, values in FEATURES.categorical.items()})
    try:
        price = predict(session, make_feeds(probe), options)
    except Exception as exc:
        if options is not None and options.terminate:
            raise  # stopped by its deadline: the caller says so
        raise ModelFileError(f"trial prediction failed: {exc}") from None
    if price.shape != (1,) or not np.isfinite(price[0]):
        raise ModelFileError(f"trial prediction returned {price!r}, expected one finite price")
