"""Domain errors carry their HTTP status; one set of handlers turns every error into JSON."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger(__name__)

MAX_ERROR_BYTES = 8192
"""No error body is larger than this: messages and field paths are clipped, and the field list trimmed."""
MAX_MESSAGE_CHARS = 1000
SUMMARY_FIELDS = 10
"""Problems quoted in an error's message; ``fields`` lists up to MAX_ERROR_FIELDS of them."""
CLIENT_CLOSED = 499
"""Recorded (never sent) when the client went away before its request was answered, as nginx does."""


class ServiceError(Exception):
    """An error a client should see: its status (and headers) come from the class, as in
    ``class NotFound(ServiceError, status=404)``; the message names the problem; keyword
    arguments become fields of the JSON body."""

    status_code: ClassVar[int] = 400
    headers: ClassVar[dict[str, str] | None] = None

    def __init_subclass__(cls, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init_subclass__()
        cls.status_code, cls.headers = status, headers

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class BadRequest(ServiceError, status=400):
    """Malformed JSON, or a V2 request that breaks the protocol or the feature schema."""


class Unauthorized(ServiceError, status=401, headers={"WWW-Authenticate": "Bearer"}):
    """``UPDATE_TOKEN`` is set and the bearer token is missing or wrong."""


class NotFound(ServiceError, status=404):
    """Another model name or version on V2, or a version without a run report."""


class RequestTimeout(ServiceError, status=408, headers={"Connection": "close"}):
    """The request body did not arrive in time; the connection is closed after the answer."""


class PayloadTooLarge(ServiceError, status=413):
    """The body, or what it inflates to, is over ``MAX_BODY_BYTES``."""


class UnsupportedMediaType(ServiceError, status=415):
    """Another ``Content-Type`` or ``Content-Encoding`` than the route takes."""


class InvalidInput(ServiceError, status=422):
    """Well-formed JSON whose fields break the schema; ``fields`` lists the problems."""


class UnpriceableRows(InvalidInput):
    """The model returned NaN: the rows lie outside the feature schema it was trained for (V2
    answers it with 400, as every V2 client error)."""

    def __init__(self, rows: list[int]) -> None:
        super().__init__(f"the loaded model cannot price row(s) {rows}: outside its feature schema")
        self.rows = rows


class ModelUnavailable(ServiceError, status=503, headers={"Retry-After": "1", "Cache-Control": "no-store"}):
    """No model is loaded yet, or the served model's file cannot be read; the message says why."""


class NotInstalled(ServiceError, status=503, headers={"Cache-Control": "no-store"}):
    """A page's files (the docs bundles, onnxruntime-web) are not installed; the message says how."""


class ReloadFailed(ServiceError, status=409):
    """The settings file names a model that cannot be loaded; the previous one keeps serving."""


def clip_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (client-supplied text is quoted, never echoed whole)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/'\"]+/)+(?=[^\s/'\"]*)")


def hide_paths(text: str) -> str:
    """``text`` with each absolute file path cut to its last name (``/srv/x/model.onnx`` ->
    ``model.onnx``): error bodies reach unauthenticated callers, the server's layout is not theirs
    to read (the logs keep the full paths)."""
    return _ABSOLUTE_PATH.sub("", text)


Location = tuple[int | str, ...]


def field_path(loc: Sequence[int | str]) -> str:
    """A pydantic location as a dotted field path, each part clipped: ``diamonds.3.carat``."""
    return ".".join(clip_text(str(p), 40) for p in loc) or "(body)"


def problem_list(
    errors: Sequence[ErrorDetails], locate: Callable[[Location], str] = field_path
) -> list[dict[str, str]]:
    """The one formatter of validation errors, for both APIs: ``{"field", "problem"}`` per error.
    ``locate`` names the field from pydantic's location (V2 names the input tensor, a batch
    validated in slices shifts the row index)."""
    problems = []
    for err in errors:
        problem = {"missing": "field required", "extra_forbidden": "unknown field"}.get(err["type"], err["msg"])
        problems.append({"field": locate(tuple(err["loc"])), "problem": clip_text(problem, 160)})
    return problems


def invalid(
    problems: list[dict[str, str]], total: int, error: type[ServiceError] = InvalidInput, what: str = "request"
) -> ServiceError:
    """``error`` (422 by default; V2 answers 400) for ``total`` problems, listing the first ones in
    ``fields`` and quoting up to :data:`SUMMARY_FIELDS` in the message."""
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:SUMMARY_FIELDS])
    if total > SUMMARY_FIELDS:
        summary += f"; and {total - min(SUMMARY_FIELDS, len(problems))} more"
    extra = {"error_count": total} if total > len(problems) else {}
    return error(f"invalid {what}: {summary}", fields=problems, **extra)


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    """``{"error": message, **extra}``, at most :data:`MAX_ERROR_BYTES` once encoded: the message
    is clipped and, if still too large, the ``fields`` list is cut and says how many it dropped."""
    body: dict[str, Any] = {"error": clip_text(message, MAX_MESSAGE_CHARS), **extra}
    fields = body.get("fields")
    while isinstance(fields, list) and fields and len(json.dumps(body)) > MAX_ERROR_BYTES:
        fields = fields[: len(fields) // 2]
        body["fields"] = fields
        body["error"] = clip_text(message, MAX_MESSAGE_CHARS // 2) + " (field list shortened)"
    return body


_SURROGATE = re.compile("[\ud800-\udfff]")


class ErrorResponse(JSONResponse):
    """JSON whose client-supplied text may hold lone surrogates (``"\\ud800"`` is legal JSON but
    not encodable as UTF-8): each becomes U+FFFD instead of failing the answer with a 500."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


async def service_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return ErrorResponse(error_body(exc.message, **exc.extra), status_code=exc.status_code, headers=exc.headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = clip_text(request.url.path, 200)
    if exc.status_code == 404:
        message = f"no route {path}"
    elif exc.status_code == 405:
        message = f"method {clip_text(request.method, 20)} not allowed on {path}"
    else:
        message = str(exc.detail)
    return ErrorResponse(error_body(message), status_code=exc.status_code, headers=exc.headers)


async def client_disconnect_handler(request: Request, exc: Exception) -> Response:
    """The client closed the connection mid-request: nothing to answer, nothing went wrong here.
    The 499 only reaches the metrics (uvicorn drops a response to a closed connection)."""
    log.debug("client went away during %s %s", request.method, clip_text(request.url.path, 200))
    return Response(status_code=CLIENT_CLOSED)


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("internal error"), status_code=500)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ClientDisconnect: client_disconnect_handler,
    ServiceError: service_error_handler,
    HTTPException: http_error_handler,
    Exception: unhandled_error_handler,
}
