"""``python -m training export-triton --version N OUT``: a Triton model repository from the registry.

Writes, from registry version ``N``::

    OUT/diamond_price/config.pbtxt      onnxruntime backend, the model's inputs and outputs,
                                        max_batch_size, dynamic batching, version N
    OUT/diamond_price/N/model.onnx      the registry's file, byte for byte, checked against
                                        the sha256 recorded when it was published

The configuration is derived from the ``.onnx`` itself (every graph input and output,
with its element type and its shape less the batch axis), so it follows whatever
outputs the model has. Its ``version_policy`` names version ``N`` alone: exporting
another version into the same repository repoints Triton at that one (a rollback is
an export of the older version), and the configuration always describes the model it
serves. Files are written to a temporary name and renamed, so a Triton polling the
repository never sees half a file; an existing ``N/model.onnx`` with other bytes is
refused rather than replaced.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.modelsettings import MODEL_NAME, ModelFileError
from inference.onnx_io import check_inputs, open_session
from inference.schema import MAX_BATCH
from training.registry import Registry, atomic_write

log = logging.getLogger(__name__)

# onnxruntime's type strings -> Triton's DataType names (model_config.proto).
TRITON_TYPES = {
    "tensor(float)": "TYPE_FP32",
    "tensor(double)": "TYPE_FP64",
    "tensor(string)": "TYPE_STRING",
    "tensor(int64)": "TYPE_INT64",
    "tensor(int32)": "TYPE_INT32",
    "tensor(bool)": "TYPE_BOOL",
}
MAX_QUEUE_DELAY_US = 100
"""How long Triton's dynamic batcher may hold a request to batch it with others: far less than a
request's own latency, and enough to gather the requests that arrive together."""


@dataclass(frozen=True)
class Tensor:
    """One model input or output as ``config.pbtxt`` declares it (batch axis left out)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


def _tensors(args: Sequence[Any], what: str) -> list[Tensor]:
    """onnxruntime's NodeArgs -> Triton tensors; the first axis is the batch, left out."""
    tensors = []
    for arg in args:
        name, kind, shape = arg.name, arg.type, arg.shape
        if kind not in TRITON_TYPES:
            raise ModelFileError(f"{what} {name!r} has type {kind}, which this export does not map")
        if not shape or isinstance(shape[0], int):
            raise ModelFileError(f"{what} {name!r} has shape {shape}: the first axis must be the (dynamic) batch")
        rest = shape[1:]
        if not all(isinstance(d, int) and d > 0 for d in rest):
            raise ModelFileError(f"{what} {name!r} has shape {shape}: only the batch axis may be dynamic")
        tensors.append(Tensor(name, TRITON_TYPES[kind], tuple(rest)))
    return tensors


def signature(blob: bytes) -> tuple[list[Tensor], list[Tensor]]:
    """The model's inputs and outputs as Triton sees them (batch axis left out)."""
    session = open_session(blob)
    inputs = _tensors(session.get_inputs(), "input")
    outputs = _tensors(session.get_outputs(), "output")
    check_inputs(session)
    return inputs, outputs


def config_text(version: int, inputs: list[Tensor], outputs: list[Tensor], sha256: str) -> str:
    """``config.pbtxt`` in protobuf text format (Triton's ``ModelConfig``)."""

    def block(kind: str, tensors: list[Tensor]) -> list[str]:
        lines = [f"{kind} ["]
        for i, t in enumerate(tensors):
            dims = ", ".join(str(d) for d in t.dims)
            sep = "," if i < len(tensors) - 1 else ""
            lines.append(f'  {{ name: "{t.name}" data_type: {t.data_type} dims: [ {dims} ] }}{sep}')
        lines.append("]")
        return lines

    lines = [
        f"# Written by `python -m training export-triton --version {version}` from the registry's",
        f"# {MODEL_NAME}-v{version}.onnx, sha256 {sha256}.",
        "# Inputs and outputs are read from the model itself; the batch axis is left out of dims.",
        f'name: "{MODEL_NAME}"',
        'backend: "onnxruntime"',
        f"max_batch_size: {MAX_BATCH}",
        f"version_policy: {{ specific: {{ versions: [ {version} ] }} }}",
        *block("input", inputs),
        *block("output", outputs),
        f"dynamic_batching {{ max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US} }}",
        "instance_group [ { kind: KIND_CPU count: 1 } ]",
        "# One intra-op thread per instance, as the project's own service runs it: scale with instances.",
        'parameters { key: "intra_op_thread_count" value: { string_value: "1" } }',
        'parameters { key: "inter_op_thread_count" value: { string_value: "1" } }',
    ]
    return "\n".join(lines) + "\n"


def export(registry: Registry, version: int, out: Path) -> Path:
    """Write the Triton repository for ``version`` under ``out``; returns the model directory."""
    blob = registry.verified_blob(version)
    sha = expected = hashlib.sha256(blob).hexdigest()
    inputs, outputs = signature(blob)

    model_dir = out / MODEL_NAME
    target = model_dir / str(version) / "model.onnx"
    if target.exists():
        existing = hashlib.sha256(target.read_bytes()).hexdigest()
        if existing != sha:
            raise ModelFileError(f"{target} exists with other bytes (sha256 {existing}); refusing to replace it")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, blob)
    written = hashlib.sha256(target.read_bytes()).hexdigest()
    if written != expected:  # what Triton will load is exactly what the registry recorded
        raise ModelFileError(f"{target} does not verify after writing: sha256 {written}, recorded {expected}")
    atomic_write(model_dir / "config.pbtxt", config_text(version, inputs, outputs, sha).encode())
    log.info("Triton repository %s: %s v%d (%s)", out, MODEL_NAME, version, ", ".join(t.name for t in outputs))
    return model_dir
