"""The JSON part of a V2 inference request, checked in the order that keeps hostile input cheap:
count structural bytes, parse strictly, bound lists and objects, then validate."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from inference.errors import BadRequest, Location, field_path, invalid, problem_list, quote
from inference.rest.wire import strict_loads, structural_bytes
from inference.schema import FEATURES, MAX_BATCH
from inference.v2.bodies import InferenceRequest

MAX_TENSORS = 16
MAX_PARAMETERS = 64
MAX_DIMS = 8
"""Bounds checked before validation: the model has 4 inputs and 3 outputs, a tensor at most 2 dimensions."""
MAX_PROBLEMS = 10
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_inference_request(head: bytes) -> InferenceRequest:
    """The validated request; a :class:`BadRequest` naming the problem otherwise."""
    _check_size(head)
    raw = strict_loads(head)
    _check_counts(raw)
    try:
        request = InferenceRequest.model_validate(raw)
    except ValidationError as exc:
        tensors = raw.get("inputs") if isinstance(raw, dict) else None

        def locate(loc: Location) -> str:
            """``input carat: data.3`` inside a named input tensor, else the dotted path."""
            if len(loc) >= 2 and loc[0] == "inputs" and isinstance(loc[1], int) and isinstance(tensors, list):
                tensor = tensors[loc[1]]
                if isinstance(tensor, dict) and isinstance(tensor.get("name"), str):
                    return f"input {quote(tensor['name'])}: {field_path(loc[2:])}"
            return field_path(loc)

        problems = problem_list(exc.errors(include_url=False)[:MAX_PROBLEMS], locate)
        raise invalid(problems, exc.error_count(), BadRequest, "inference request") from None
    if request.id is not None and not request.id.isprintable() and _SURROGATE.search(request.id):
        raise BadRequest("id: must be valid Unicode text (it holds a lone surrogate escape)")
    return request


def _check_size(head: bytes) -> None:
    """Refuse a JSON head with more values than any valid request holds, by counting bytes before parsing
    (a megabyte of ``{}`` costs the parser far more than the count)."""
    inputs = len(FEATURES.names)
    limit = inputs * (3 * MAX_BATCH + 64) + 4096
    if len(head) > limit and structural_bytes(head) > limit:  # a shorter head cannot hold more
        raise BadRequest(f"the request holds more JSON values than {MAX_BATCH} rows of {inputs} inputs can")


def _check_counts(raw: Any) -> None:
    """Bound the lists and objects pydantic would report one error per element of."""
    if not isinstance(raw, dict):
        return
    _check_parameters(raw.get("parameters"), "parameters")
    for key in ("inputs", "outputs"):
        tensors = raw.get(key)
        if not isinstance(tensors, list):
            continue
        if len(tensors) > MAX_TENSORS:
            raise BadRequest(f"{key}: at most {MAX_TENSORS} tensors, got {len(tensors)}")
        for i, tensor in enumerate(tensors):
            if isinstance(tensor, dict):
                _check_parameters(tensor.get("parameters"), f"{key}.{i}.parameters")
                shape = tensor.get("shape")
                if isinstance(shape, list) and len(shape) > MAX_DIMS:
                    raise BadRequest(f"{key}.{i}.shape: at most {MAX_DIMS} dimensions, got {len(shape)}")


def _check_parameters(parameters: Any, where: str) -> None:
    if isinstance(parameters, dict) and len(parameters) > MAX_PARAMETERS:
        raise BadRequest(f"{where}: at most {MAX_PARAMETERS} parameters, got {len(parameters)}")
