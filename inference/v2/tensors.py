"""V2 request tensors: inputs to feature columns, checked against the feature schema like the JSON
API. A value is checked once it is FP32, exactly what the model sees."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from inference.errors import BadRequest, quote, received
from inference.errors import shown as show_value
from inference.onnx_io import OUTPUT
from inference.schema import MAX_BATCH, FeatureSchema
from inference.v2.binary import HEADER_LENGTH, decode_bytes, decode_fp32, known_strings
from inference.v2.bodies import InferenceRequest, Parameters, RequestInput, TensorMetadata

NUMERIC = "FP32"
CATEGORICAL = "BYTES"
SHOWN = 5
"""Offending rows quoted in an error message."""

Column = np.ndarray | list[str]
_NUMBERS = frozenset({int, float})


def tensor_metadata(
    schema: FeatureSchema, outputs: Sequence[str] = (OUTPUT,)
) -> tuple[list[TensorMetadata], list[TensorMetadata]]:
    """The model's inputs and outputs as V2 tensor metadata; -1 is the batch dimension."""
    inputs = [
        TensorMetadata(name=n, datatype=NUMERIC if n in schema.numeric else CATEGORICAL, shape=[-1, 1])
        for n in schema.names
    ]
    return inputs, [TensorMetadata(name=n, datatype=NUMERIC, shape=[-1, 1]) for n in outputs]


def decode_inputs(inputs: Sequence[RequestInput], binary: memoryview, schema: FeatureSchema) -> dict[str, Column]:
    """One validated column per feature, from the request's input tensors and binary data."""
    expected = ", ".join(schema.names)
    seen: set[str] = set()
    for inp in inputs:
        if inp.name not in schema.names:
            raise BadRequest(f"unknown input {quote(inp.name)}: the model takes {expected}")
        if inp.name in seen:
            raise BadRequest(f"input {inp.name!r} is given twice")
        seen.add(inp.name)
        datatype = NUMERIC if inp.name in schema.numeric else CATEGORICAL
        if inp.datatype != datatype:
            raise BadRequest(f"input {inp.name!r}: datatype must be {datatype}, got {quote(inp.datatype)}")
    missing = [n for n in schema.names if n not in seen]
    if missing:
        raise BadRequest(f"missing input(s) {', '.join(missing)}: the model takes {expected}")
    rows = {inp.name: _rows(inp) for inp in inputs}
    if len(set(rows.values())) > 1:
        counts = ", ".join(f"{n} {r}" for n, r in rows.items())
        raise BadRequest(f"inputs disagree on the number of rows: {counts}")
    columns: dict[str, Column] = {}
    offset = 0
    for inp in inputs:
        where = f"input {inp.name!r}"
        n = rows[inp.name]
        numeric = inp.name in schema.numeric
        size = (inp.parameters or {}).get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise BadRequest(f"{where}: binary_data_size must be a byte count, got {quote(size)}")
            if inp.data is not None:
                raise BadRequest(f"{where}: has both data and binary_data_size; give one")
            if size > len(binary) - offset:
                raise BadRequest(
                    f"{where}: binary_data_size is {size} but only {len(binary) - offset} byte(s) of binary data "
                    f"remain after the JSON ({HEADER_LENGTH} says where the JSON ends)"
                )
            chunk = binary[offset : offset + size]
            offset += size
            if numeric:
                columns[inp.name] = values = decode_fp32(chunk, n, where)
                _check_range(values, schema.numeric[inp.name], where, as_fp32=True)
                continue
            known = known_strings(chunk, n, schema.categorical[inp.name])
            if known is not None:  # every element one of the categories: nothing left to check
                columns[inp.name] = known
                continue
            columns[inp.name] = decode_bytes(chunk, n, where)
        elif inp.data is None:
            raise BadRequest(f"{where}: has no data: give data, or binary_data_size and the binary tensor data")
        else:
            flat = _flatten(inp.data, inp.shape, n, where)
            if numeric:  # checked as sent, then narrowed: a value in range cannot overflow FP32
                wide = _numbers(flat, where)
                _check_range(wide, schema.numeric[inp.name], where, as_fp32=False)
                columns[inp.name] = wide.astype(np.float32)
                continue
            if _all_known(flat, schema.categorical[inp.name]):
                columns[inp.name] = flat
                continue
            columns[inp.name] = _strings(flat, where)
        _check_categories(columns[inp.name], schema.categorical[inp.name], where)
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} byte(s) of binary data follow the JSON but no input claims them")
    return columns


def _flag(parameters: Parameters | None, key: str, default: bool, where: str = "") -> bool:
    value = (parameters or {}).get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{where}parameter {key!r} must be true or false, got {quote(value)}")
    return value


def requested_outputs(req: InferenceRequest, available: Sequence[str]) -> list[tuple[str, bool]]:
    """``(output, as binary)`` per output to return, as the protocol specifies: an output's own
    ``binary_data`` wins over the request's ``binary_data_output``."""
    default = _flag(req.parameters, "binary_data_output", False)
    if not req.outputs:
        return [(name, default) for name in available]
    chosen: list[tuple[str, bool]] = []
    for out in req.outputs:
        if out.name not in available:
            raise BadRequest(f"unknown output {quote(out.name)}: the model's outputs are {', '.join(available)}")
        if any(out.name == name for name, _ in chosen):
            raise BadRequest(f"output {quote(out.name)} is requested twice")
        unsupported = sorted(k for k in out.parameters or {} if k == "classification" or k.startswith("shared_memory"))
        if unsupported:
            raise BadRequest(
                f"output {quote(out.name)}: parameter {quote(unsupported[0])} is not supported by this server"
            )
        chosen.append((out.name, _flag(out.parameters, "binary_data", default, f"output {quote(out.name)}: ")))
    return chosen


def _rows(inp: RequestInput) -> int:
    where = f"input {inp.name!r}"
    shape = inp.shape
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise BadRequest(f"{where}: shape {shape} must be [N] or [N, 1]")
    if shape[0] < 1:
        raise BadRequest(f"{where}: shape {shape} has no rows")
    if shape[0] > MAX_BATCH:
        raise BadRequest(f"{where}: {shape[0]} rows is more than the {MAX_BATCH} one request may price")
    return shape[0]


def _flatten(data: list[Any], shape: list[int], rows: int, where: str) -> list[Any]:
    # Whole-list checks (map, set) run at C speed: a 1,000-row tensor costs no Python loop per value.
    if len(shape) == 2 and data and type(data[0]) is list and set(map(type, data)) == {list}:
        if set(map(len, data)) != {1}:
            raise BadRequest(f"{where}: nested data must hold one value per row for shape {shape}")
        data = list(map(itemgetter(0), data))
    if len(data) != rows:
        raise BadRequest(f"{where}: data has {len(data)} value(s) but shape {shape} needs {rows}")
    return data


def _numbers(flat: list[Any], where: str) -> np.ndarray:
    """JSON numbers as float64, exactly as sent."""
    if not _NUMBERS.issuperset(map(type, flat)):  # JSON numbers are exactly int or float (bool is neither)
        for i, x in enumerate(flat):
            if isinstance(x, bool) or not isinstance(x, int | float):
                raise BadRequest(f"{where}: must be a number (datatype {NUMERIC}), got {received(x)} in row {i}")
    try:
        return np.array(flat, dtype=np.float64)
    except OverflowError:
        raise BadRequest(f"{where}: a value is too large for {NUMERIC}") from None


def _strings(flat: list[Any], where: str) -> list[str]:
    if set(map(type, flat)) != {str}:
        for i, x in enumerate(flat):
            if not isinstance(x, str):
                raise BadRequest(f"{where}: must be a string (datatype {CATEGORICAL}), got {received(x)} in row {i}")
    return flat


def _check_range(values: np.ndarray, bounds: tuple[float, float], where: str, *, as_fp32: bool) -> None:
    lo, hi = bounds
    # JSON numbers are checked as sent, against the JSON API's bounds (5.0100001 > 5.01); binary FP32
    # against the float32 nearest each bound (no float32 is 5.01). NaN fails both comparisons.
    low, high = (np.float32(lo), np.float32(hi)) if as_fp32 else (lo, hi)
    ok = (values >= low) & (values <= high)
    if ok.all():
        return
    bad = np.flatnonzero(~ok)
    rows = ", ".join(f"{show_value(float(values[i]))} in row {i}" for i in bad[:SHOWN])
    raise BadRequest(f"{where}: must be a finite number from {lo} to {hi}, got {rows}{_more(bad.size)}")


@functools.cache
def _category_set(allowed: tuple[str, ...]) -> frozenset[str]:
    return frozenset(allowed)


def _all_known(values: list[Any], allowed: tuple[str, ...]) -> bool:
    """Every value is one of ``allowed`` (so a string): one pass at C speed where the type check and
    the category check take two; False sends the values to those checks, which name the problem."""
    try:
        return _category_set(allowed).issuperset(values)
    except TypeError:  # an unhashable value (a JSON list or object)
        return False


def _check_categories(values: Column, allowed: tuple[str, ...], where: str) -> None:
    known = _category_set(allowed)
    if known.issuperset(values):
        return
    bad = [i for i, x in enumerate(values) if x not in known]
    if bad:
        rows = ", ".join(f"{show_value(values[i])} in row {i}" for i in bad[:SHOWN])
        raise BadRequest(f"{where}: must be one of {', '.join(allowed)}, got {rows}{_more(len(bad))}")


def _more(count: int) -> str:
    return f" (and {count - SHOWN} more)" if count > SHOWN else ""
