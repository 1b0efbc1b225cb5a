"""Turning a request body into a validated pydantic model, with errors that name each field.

Error bodies stay small however bad the input: a 422 lists the first ``MAX_ERROR_FIELDS``
problems and counts the rest. Small bodies are validated on the event loop (microseconds);
larger ones in a worker thread, one at a time, in slices short enough that the event loop
gets the interpreter back between them, so a flood of invalid 1 MiB batches cannot stall
``/health/live``. Before any of that, a body holding more JSON values than any valid
request could is refused by counting its structural bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request

from inference.api_models import MAX_BATCH, Diamond, DiamondBatch
from inference.errors import BadRequest, InvalidInput, UnsupportedMediaType, clip_text
from inference.limits import decode_content
from inference.schema import FEATURES
from inference.v2_binary import strict_json

M = TypeVar("M", bound=BaseModel)

INLINE_BODY_BYTES = 4096
"""Bodies up to this size are validated on the event loop; larger ones in a thread."""
SLICE_ROWS = 256
"""Batch rows validated per call in the thread: well under a millisecond each, even when all are invalid."""
ROW_TOKENS = 2 * len(FEATURES.names) + 2
"""Upper bound of ``{``, ``[``, ``:`` and ``,`` bytes one valid diamond adds to a body (no allowed
value contains any of them)."""
_ROWS = TypeAdapter(list[Diamond])  # type: ignore[valid-type]


def require_json(request: Request) -> None:
    content_type = request.headers.get("content-type")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        got = f"got {clip_text(content_type, 60)!r}" if content_type else "none was sent"
        raise UnsupportedMediaType(f"Content-Type must be application/json ({got})")


def _field(loc: Sequence[int | str]) -> str:
    return ".".join(clip_text(str(p), 40) for p in loc) or "(body)"


def field_problems(exc: ValidationError, limit: int) -> list[dict[str, str]]:
    """The first ``limit`` problems of ``exc``, each with its dotted field path (clipped)."""
    return problem_list(exc.errors(include_url=False)[:limit])


def problem_list(errors: Sequence[ErrorDetails], row_offset: int | None = None) -> list[dict[str, str]]:
    """``{"field", "problem"}`` per error; with ``row_offset`` the errors are of a slice of rows."""
    problems = []
    for err in errors:
        problem = err["msg"]
        if err["type"] == "missing":
            problem = "field required"
        elif err["type"] == "extra_forbidden":
            problem = "unknown field"
        loc: list[int | str] = list(err["loc"])
        if row_offset is not None and loc and isinstance(loc[0], int):
            loc = ["diamonds", loc[0] + row_offset, *loc[1:]]
        problems.append({"field": _field(loc), "problem": clip_text(problem, 160)})
    return problems


def invalid(problems: list[dict[str, str]], total: int) -> InvalidInput:
    """A 422 listing ``problems`` (the first ones) out of ``total``."""
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:10])
    if total > 10:
        summary += f"; and {total - min(10, len(problems))} more"
    extra = {"error_count": total} if total > len(problems) else {}
    return InvalidInput(f"invalid request: {summary}", fields=problems, **extra)


async def parse_json(request: Request, model: type[M]) -> M:
    """The body as ``model``: 415 for a non-JSON content type or an unknown content encoding,
    400 for malformed JSON, 422 naming the invalid fields (413 and 408 come from the body limits)."""
    require_json(request)
    settings = request.app.state.settings
    body = decode_content(await request.body(), request.headers.get("content-encoding"), settings.max_body_bytes)
    limit: int = settings.max_error_fields
    if len(body) <= INLINE_BODY_BYTES:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            malformed = [e for e in exc.errors(include_url=False) if e["type"] == "json_invalid"]
            if malformed:
                raise BadRequest(f"malformed JSON: {malformed[0]['msg']}") from None
            raise invalid(field_problems(exc, limit), exc.error_count()) from None
    return await anyio.to_thread.run_sync(validate_large, model, body, limit, limiter=validation_limiter(request))


def validation_limiter(request: Request) -> anyio.CapacityLimiter:
    """One large body validated at a time per process: the event loop competes with one thread."""
    state = request.app.state
    limiter: anyio.CapacityLimiter | None = getattr(state, "validation_limiter", None)
    if limiter is None:
        limiter = state.validation_limiter = anyio.CapacityLimiter(1)
    return limiter


def validate_large(model: type[M], body: bytes, limit: int) -> M:
    """:func:`parse_json`'s validation for large bodies (run in a thread)."""
    rows_allowed = MAX_BATCH if model is DiamondBatch else 1
    tokens = body.count(b"{") + body.count(b"[") + body.count(b":") + body.count(b",")
    if tokens > ROW_TOKENS * rows_allowed + 16:
        where = "diamonds" if model is DiamondBatch else "(body)"
        what = f"at most {MAX_BATCH} diamonds" if model is DiamondBatch else "one diamond"
        raise invalid([{"field": where, "problem": f"the body holds more JSON values than {what} can"}], 1)
    data = strict_json(body)
    problems: list[dict[str, str]] = []
    total = 0
    if isinstance(data, dict):  # unknown keys are listed here, so a huge object costs no more
        unknown = [k for k in data if k not in model.model_fields]
        total += len(unknown)
        problems += [{"field": _field([k]), "problem": "unknown field"} for k in unknown[:limit]]
        data = {k: v for k, v in data.items() if k in model.model_fields}
        if model is DiamondBatch and isinstance(data.get("diamonds"), list):
            return _validate_rows(model, data["diamonds"], problems, total, limit)
    try:
        validated = model.model_validate(data)
    except ValidationError as exc:
        total += exc.error_count()
        problems += field_problems(exc, limit - len(problems))
    if total:
        raise invalid(problems[:limit], total)
    return validated


def _validate_rows(model: type[M], rows: list[Any], problems: list[dict[str, str]], total: int, limit: int) -> M:
    """A batch's rows, slice by slice; stops listing problems at ``limit`` but counts them all."""
    if not rows or len(rows) > MAX_BATCH:
        total += 1
        problems.append({"field": "diamonds", "problem": f"must hold 1 to {MAX_BATCH} diamonds, got {len(rows)}"})
        raise invalid(problems[:limit], total)
    valid: list[Any] = []
    for start in range(0, len(rows), SLICE_ROWS):
        try:
            valid += _ROWS.validate_python(rows[start : start + SLICE_ROWS])
        except ValidationError as exc:
            total += exc.error_count()
            if len(problems) < limit:
                problems += problem_list(exc.errors(include_url=False)[: limit - len(problems)], start)
    if total:
        raise invalid(problems[:limit], total)
    return model.model_construct(diamonds=valid)
