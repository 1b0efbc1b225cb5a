"""The Open Inference Protocol (KServe V2) REST API, beside the JSON API, over the same model.

Same feature schema and model call as the JSON API, so a row gets the same price from either."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from inference.deadline import ModelTooSlow
from inference.errors import BadRequest, NotFound, UnpriceableRows, quote
from inference.loaded import LoadedModel
from inference.modelsettings import MODEL_NAME
from inference.rest.bodies import INLINE_BODY_BYTES, off_loop, read_body
from inference.rest.openapi import Error, Operation, Responses
from inference.rest.wire import JSON, json_response
from inference.schema import FEATURES
from inference.serving import batcher_of, holder_of, loaded_or_503
from inference.v2 import bodies as v
from inference.v2.binary import BINARY_MEDIA_TYPE, HEADER_LENGTH, encode_response, split_body
from inference.v2.bodies import InferenceRequest
from inference.v2.parse import parse_inference_request
from inference.v2.tensors import Column, decode_inputs, requested_outputs, tensor_metadata

PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data"]


def _named_model(request: Request) -> LoadedModel | None:
    """The current model, taken once so this request uses it to the end; 404 unless the path names it."""
    model = holder_of(request).current
    name = request.path_params["model_name"]
    served = model.settings.name if model is not None else MODEL_NAME
    if name != served:
        raise NotFound(f"unknown model {quote(name)}: this server serves {served!r}")
    version = request.path_params.get("model_version")
    if model is not None and version is not None and version != str(model.version):
        raise NotFound(f"model {name!r} has no version {quote(version)}: version {model.version} is serving")
    return model


def _serving_model(request: Request) -> LoadedModel:
    return loaded_or_503(holder_of(request), _named_model(request))


async def server_metadata(request: Request) -> Response:
    """``GET /v2``: the server's name, version and protocol extensions."""
    info = getattr(request.app.state, "openapi", {}).get("info", {})
    body = v.ServerMetadata(
        name=info.get("title", "diamond-price"), version=info.get("version", "unknown"), extensions=EXTENSIONS
    )
    return json_response(body.model_dump())


async def server_live(request: Request) -> Response:
    """``GET /v2/health/live``: the process answers."""
    return json_response({"live": True})


async def server_ready(request: Request) -> Response:
    """``GET /v2/health/ready``: 200 while a model is loaded, 503 before."""
    ready = holder_of(request).current is not None
    return json_response({"ready": ready}, status_code=200 if ready else 503)


async def model_ready(request: Request) -> Response:
    """``GET /v2/models/{name}[/versions/{v}]/ready``: 200 when that model is serving, 503 while none is."""
    model = _named_model(request)
    name = request.path_params["model_name"]
    return json_response({"name": name, "ready": model is not None}, status_code=200 if model else 503)


async def model_metadata(request: Request) -> Response:
    """``GET /v2/models/{name}[/versions/{v}]``: the model's versions, platform and tensors."""
    model = _serving_model(request)
    inputs, outputs = tensor_metadata(FEATURES, model.outputs)
    body = v.ModelMetadata(
        name=model.settings.name, versions=[str(model.version)], platform=PLATFORM, inputs=inputs, outputs=outputs
    )
    return json_response(body.model_dump())


async def infer(request: Request) -> Response:
    """``POST /v2/models/{name}[/versions/{v}]/infer``: price the rows of the input tensors."""
    model = _serving_model(request)
    body = await read_body(request, (JSON, BINARY_MEDIA_TYPE), required=False)
    head, binary = split_body(body, request.headers.get(HEADER_LENGTH))
    if len(body) <= INLINE_BODY_BYTES:
        req, wanted, columns = _decode(model, head, binary)
        if len(columns[FEATURES.names[0]]) == 1:  # one row: coalesced with the others of this loop turn
            row = SimpleNamespace(**{name: values[0] for name, values in columns.items()})
            try:  # the batcher also moves a slow model's calls off the loop
                cents = np.array([await batcher_of(request).price(model, row)])
            except UnpriceableRows as exc:
                raise BadRequest(str(exc)) from None
            rows, response = 1, _answer(model, req, wanted, cents)
        elif not model.speed.slow:
            try:
                rows, response = _price(model, req, wanted, columns)
            except ModelTooSlow:  # stopped on the loop (a slow model, or a busy machine): once more, in a thread
                rows, response = await off_loop(request, _price, model, req, wanted, columns)
        else:
            rows, response = await off_loop(request, _price, model, req, wanted, columns)
    else:
        rows, response = await off_loop(request, _infer, model, head, binary)
    request.state.rows = rows
    return response


def _decode(
    model: LoadedModel, head: bytes, binary: memoryview
) -> tuple[InferenceRequest, list[tuple[str, bool]], dict[str, Column]]:
    """The validated request, the outputs it wants and its feature columns (400 naming any problem)."""
    req = parse_inference_request(head)
    wanted = requested_outputs(req, model.outputs)
    return req, wanted, decode_inputs(req.inputs, binary, FEATURES)


def _infer(model: LoadedModel, head: bytes, binary: memoryview) -> tuple[int, Response]:
    return _price(model, *_decode(model, head, binary))


def _price(
    model: LoadedModel, req: InferenceRequest, wanted: list[tuple[str, bool]], columns: dict[str, Column]
) -> tuple[int, Response]:
    try:
        cents = model.price(columns)
    except UnpriceableRows as exc:
        raise BadRequest(str(exc)) from None
    return len(cents), _answer(model, req, wanted, cents)


def _answer(model: LoadedModel, req: InferenceRequest, wanted: list[tuple[str, bool]], cents: np.ndarray) -> Response:
    """The response: each wanted output's column of ``cents``, as JSON or binary data."""
    outputs, blobs = [], []
    for name, as_binary in wanted:
        values = cents[:, model.outputs.index(name)]
        output: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": [len(values), 1]}
        if as_binary:
            blob = values.astype("<f4").tobytes()
            output["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            output["data"] = values.tolist()
        outputs.append(output)
    header: dict[str, Any] = {"model_name": model.settings.name, "model_version": str(model.version)}
    if req.id is not None:
        header["id"] = req.id
    header["outputs"] = outputs
    return encode_response(header, blobs)


_NAME = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string", "examples": [MODEL_NAME]}}
_VERSION = {"name": "model_version", "in": "path", "required": True, "schema": {"type": "string", "examples": ["1"]}}
_BINARY = {
    "name": HEADER_LENGTH,
    "in": "header",
    "required": False,
    "description": "Binary tensor data extension: the length of the JSON object; binary tensors follow it.",
    "schema": {"type": "integer", "minimum": 1},
}
_NOT_READY = "No model is loaded"
_INFER_DESCRIPTION = (
    "Open Inference Protocol inference: `carat` FP32 and `cut`, `color`, `clarity` BYTES, each of shape [N] or "
    "[N, 1]; returns `price` FP32 [N, 1] in USD, rounded to cents, and, for a model with a price range, "
    "`price_low` and `price_high` (its 80% range; see the metadata's outputs). The request's `outputs` selects "
    "and orders them, each with its own `binary_data` parameter. With the binary tensor data extension the "
    "body is the JSON object, then the binary tensors (little-endian; BYTES elements length-prefixed), and "
    "`Inference-Header-Content-Length` gives the JSON's length; binary outputs come back the same way."
)
_INFER_RESPONSES: Responses = {
    200: ("The prices (JSON, or JSON then binary data with Inference-Header-Content-Length)", v.InferenceResponse),
    400: ("Malformed request, or an input breaks the feature schema", Error),
    404: ("Unknown model or version", Error),
    413: ("Body too large", Error),
    415: ("Unsupported Content-Type or Content-Encoding", Error),
    503: (_NOT_READY, Error),
}


def _model_operations(versioned: bool) -> list[Operation]:
    base = "/v2/models/{model_name}" + ("/versions/{model_version}" if versioned else "")
    params = [_NAME, _VERSION] if versioned else [_NAME]
    which = "that version of the model" if versioned else "the model"
    not_found = (f"Unknown model{' or version' if versioned else ''}", Error)
    metadata: Responses = {200: ("Metadata", v.ModelMetadata), 404: not_found, 503: (_NOT_READY, Error)}
    ready: Responses = {200: ("Ready", v.ModelReady), 404: not_found, 503: (_NOT_READY, v.ModelReady)}
    binary = {
        "application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}
    }
    return [
        Operation(base, "get", model_metadata, f"V2: metadata of {which}", "v2", metadata, parameters=params),
        Operation(base + "/ready", "get", model_ready, f"V2: is {which} ready", "v2", ready, parameters=params),
        Operation(
            base + "/infer",
            "post",
            infer,
            f"V2: price diamonds with {which}",
            "v2",
            {**_INFER_RESPONSES, 404: not_found},
            request=v.InferenceRequest,
            description=_INFER_DESCRIPTION,
            parameters=[*params, _BINARY],
            extra_request_content=binary,
        ),
    ]


V2_OPERATIONS: list[Operation] = [
    Operation(
        "/v2",
        "get",
        server_metadata,
        "V2: server metadata",
        "v2",
        {200: ("Name, version, extensions", v.ServerMetadata)},
    ),
    Operation("/v2/health/live", "get", server_live, "V2: liveness", "v2", {200: ("Alive", v.ServerLive)}),
    Operation(
        "/v2/health/ready",
        "get",
        server_ready,
        "V2: readiness: a model is loaded",
        "v2",
        {200: ("Ready", v.ServerReady), 503: (_NOT_READY, v.ServerReady)},
    ),
    *_model_operations(versioned=False),
    *_model_operations(versioned=True),
]
"""The V2 routes, declared once (see :mod:`inference.routes`)."""
