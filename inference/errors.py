"""Domain errors carry their HTTP status; :mod:`inference.rest.handlers` turns each into JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from pydantic_core import ErrorDetails

from inference.schema import FEATURES

MAX_ERROR_BYTES = 8192
"""No error body is larger than this: messages and field paths are clipped, and the field list trimmed."""
MAX_MESSAGE_CHARS = 1000
SUMMARY_FIELDS = 10
"""Problems quoted in an error's message; ``fields`` lists up to MAX_ERROR_FIELDS of them."""
CLIENT_CLOSED = 499
"""Recorded (never sent) when the client went away before its request was answered, as nginx does."""


class ServiceError(Exception):
    """An error a client should see: status (and headers) from the class, keyword arguments become
    fields of the JSON body."""

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
    """The model returned NaN: the rows lie outside the feature schema it was trained for."""

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
    """``text`` with absolute paths cut to their last name: error bodies reach unauthenticated callers
    (the logs keep the full paths)."""
    return _ABSOLUTE_PATH.sub("", text)


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
    """The one formatter of validation errors for both APIs; ``locate`` names the field (V2 names the
    tensor, a batch validated in slices shifts the row index)."""
    return [{"field": locate(tuple(err["loc"])), "problem": clip_text(describe(err), 200)} for err in errors]


def describe(err: ErrorDetails) -> str:
    """One problem in the house style: what the field must be, then what was received."""
    kind, loc = err["type"], err["loc"]
    if kind == "extra_forbidden":
        return "unknown field"
    expected = _expected(loc[-1] if loc else None, err)
    if kind == "missing":
        return f"missing; must be {expected}" if expected else "missing"
    value = err.get("input")
    wrong_kind = kind.endswith(("_type", "_parsing")) or (kind == "literal_error" and not isinstance(value, str))
    got = received(value) if wrong_kind else shown(value)
    return f"must be {expected}, got {got}" if expected else f"{_lower(err['msg'])}, got {got}"


def _expected(name: int | str | None, err: ErrorDetails) -> str:
    if isinstance(name, str) and name in FEATURES.numeric:
        low, high = FEATURES.numeric[name]
        return f"a number from {low} to {high}"
    if isinstance(name, str) and name in FEATURES.categorical:
        return f"one of {', '.join(FEATURES.categorical[name])}"
    ctx = err.get("ctx") or {}
    if err["type"] == "too_short":
        return f"at least {ctx.get('min_length')} item(s) long"
    if err["type"] == "too_long":
        return f"at most {ctx.get('max_length')} item(s) long"
    message = err["msg"]
    if err["type"] == "model_type":
        return "a JSON object"
    return _lower(message.removeprefix("Input should be ")) if message.startswith("Input should be ") else ""


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def shown(value: Any) -> str:
    """A client's value as a message shows it: invisible characters escaped, containers by size, clipped."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, dict):
        return f"an object with {len(value)} key(s)"
    if isinstance(value, list | tuple):
        return f"an array of {len(value)} item(s)"
    return quote(value)


def invalid(
    problems: list[dict[str, str]], total: int, error: type[ServiceError] = InvalidInput, what: str = "request"
) -> ServiceError:
    """``error`` for ``total`` problems, listing the first in ``fields``."""
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:SUMMARY_FIELDS])
    if total > SUMMARY_FIELDS:
        summary += f"; and {total - min(SUMMARY_FIELDS, len(problems))} more"
    extra = {"error_count": total} if total > len(problems) else {}
    return error(f"invalid {what}: {summary}", fields=problems, **extra)


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    """``{"error": message, **extra}`` within :data:`MAX_ERROR_BYTES`: message clipped, then ``fields`` cut."""
    body: dict[str, Any] = {"error": clip_text(message, MAX_MESSAGE_CHARS), **extra}
    fields = body.get("fields")
    while isinstance(fields, list) and fields and len(json.dumps(body)) > MAX_ERROR_BYTES:
        fields = fields[: len(fields) // 2]
        body["fields"] = fields
        body["error"] = clip_text(message, MAX_MESSAGE_CHARS // 2) + " (field list shortened)"
    return body


def received(value: Any) -> str:
    """:func:`shown`, and for a scalar its kind, for a value of the wrong kind: ``'0.7' (a string)``."""
    if isinstance(value, bool):
        return f"{shown(value)} (a boolean)"
    if isinstance(value, int | float | str):
        return f"{shown(value)} ({'a string' if isinstance(value, str) else 'a number'})"
    return shown(value)
