"""Domain errors carry their HTTP status; :mod:`inference.rest.handlers` turns each into JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from pydantic_core import ErrorDetails

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


def quote(value: Any, limit: int = 40) -> str:
    """``repr(value)``, clipped: how a message shows a value the client sent."""
    return clip_text(repr(value), limit)


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
