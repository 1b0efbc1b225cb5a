"""Validating the JSON API's bodies into pydantic models, with errors that name each field.

Bounded work per request: oversized value counts are refused before parsing, and large or invalid
batches are validated in slices so the event loop gets the interpreter back between them."""

from __future__ import annotations

import contextlib
from operator import itemgetter
from typing import Annotated, Any, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request
from typing_extensions import TypedDict

from inference.api.bodies import Diamond, DiamondBatch
from inference.errors import BadRequest, Location, field_path, invalid, problem_list, shown
from inference.rest.bodies import INLINE_BODY_BYTES, off_loop, read_body
from inference.rest.wire import strict_loads, structural_bytes
from inference.schema import FEATURES, MAX_BATCH, columns
from inference.serving import settings_of

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

ONE_PASS_BYTES = 128 * 1024
"""Batches up to this size get one fast pass that stops at the first invalid row (cheaper than slicing)."""
SLICE_ROWS = 256
"""Batch rows validated per call in the careful pass: well under a millisecond each, even when all are invalid."""
ROW_TOKENS = 2 * len(FEATURES.names) + 2
"""Upper bound of ``{[:,`` bytes one valid diamond adds to a body (no allowed value contains any)."""
_ROWS = TypeAdapter(list[Diamond])  # type: ignore[valid-type]


def validate(model: type[M], body: bytes, limit: int) -> M:
    """``body`` as ``model``: 400 for malformed JSON, 422 listing up to ``limit`` invalid fields."""
    if len(body) <= INLINE_BODY_BYTES:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            if errors[0]["type"] == "json_invalid":  # then it is the only error
                raise BadRequest(f"malformed JSON: {errors[0]['msg']}") from None
            hint = shape_hint(model, errors)
            if hint is not None:
                raise invalid([hint], 1) from None
            raise invalid(problem_list(errors[:limit]), exc.error_count()) from None
    _check_size(model, body)
    if model is DiamondBatch and len(body) <= ONE_PASS_BYTES:
        with contextlib.suppress(ValidationError):  # any problem: the careful pass names them all
            return cast(M, DiamondBatch.model_construct(diamonds=_ONE_PASS.validate_json(body).diamonds))
    return _validate_carefully(model, body, limit)


def _check_size(model: type[BaseModel], body: bytes) -> None:
    """422 for more JSON values than any valid ``model`` holds, by counting bytes before parsing (a
    megabyte of ``[]`` costs the parser far more than the count)."""
    rows_allowed = MAX_BATCH if model is DiamondBatch else 1
    if structural_bytes(body) > ROW_TOKENS * rows_allowed + 16:
        where = "diamonds" if model is DiamondBatch else "(body)"
        what = f"at most {MAX_BATCH} diamonds" if model is DiamondBatch else "one diamond"
        raise invalid([{"field": where, "problem": f"the body holds more JSON values than {what} can"}], 1)


class _FailFastBatch(DiamondBatch):
    """The batch, validated until its first invalid row."""

    diamonds: list[Diamond] = Field(min_length=1, max_length=MAX_BATCH, fail_fast=True)  # type: ignore[valid-type]


_ONE_PASS = TypeAdapter(_FailFastBatch)


def _row_dict() -> Any:
    """:class:`Diamond` as a TypedDict: same checks, plain dicts are cheaper to build than models."""
    fields = {name: Annotated[info.annotation, info] for name, info in Diamond.model_fields.items()}
    row = cast(Any, TypedDict("DiamondRow", fields))  # type: ignore[operator]
    row.__pydantic_config__ = ConfigDict(extra="forbid")
    return row


_Row = _row_dict()


class _ColumnsBatch(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    diamonds: Annotated[list[_Row], Field(min_length=1, max_length=MAX_BATCH, fail_fast=True)]  # type: ignore[valid-type]


_AS_ROWS = TypeAdapter(_ColumnsBatch)


def validate_columns(body: bytes, limit: int) -> dict[str, list[Any]]:
    """A batch as feature columns: small valid batches in one fast pass; anything else takes
    :func:`validate`'s careful path (no second fast pass after a failed one)."""
    if len(body) > ONE_PASS_BYTES:
        return columns(validate(DiamondBatch, body, limit).diamonds)
    if len(body) > INLINE_BODY_BYTES:
        _check_size(DiamondBatch, body)
    try:
        rows = _AS_ROWS.validate_json(body)["diamonds"]
    except ValidationError:
        if len(body) <= INLINE_BODY_BYTES:
            return columns(validate(DiamondBatch, body, limit).diamonds)
        return columns(_validate_carefully(DiamondBatch, body, limit).diamonds)
    return {name: list(map(itemgetter(name), rows)) for name in FEATURES.names}


def _validate_carefully(model: type[M], body: bytes, limit: int) -> M:
    """:func:`validate` for large bodies: parsed strictly, then validated in slices."""
    data = strict_loads(body, constants=True)
    problems: list[dict[str, str]] = []
    total = 0
    if isinstance(data, dict):  # unknown keys are listed here, so a huge object costs no more
        unknown = [k for k in data if k not in model.model_fields]
        total += len(unknown)
        problems += [{"field": field_path([k]), "problem": "unknown field"} for k in unknown[:limit]]
        data = {k: v for k, v in data.items() if k in model.model_fields}
        if model is DiamondBatch and isinstance(data.get("diamonds"), list):
            return _validate_rows(model, data["diamonds"], problems, total, limit)
    try:
        validated = model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        hint = shape_hint(model, errors)
        if hint is not None and not problems:
            raise invalid([hint], 1) from None
        total += exc.error_count()
        problems += problem_list(errors[: max(limit - len(problems), 0)])
    if total:
        raise invalid(problems[:limit], total)
    return validated


def _validate_rows(model: type[M], rows: list[Any], problems: list[dict[str, str]], total: int, limit: int) -> M:
    """A batch's rows, slice by slice; stops listing problems at ``limit`` but counts them all."""
    if not rows or len(rows) > MAX_BATCH:
        total += 1
        problems.append(_batch_size(len(rows)))
        raise invalid(problems[:limit], total)
    valid: list[Any] = []
    for start in range(0, len(rows), SLICE_ROWS):
        try:
            valid += _ROWS.validate_python(rows[start : start + SLICE_ROWS])
        except ValidationError as exc:
            total += exc.error_count()
            if len(problems) < limit:

                def locate(loc: Location, start: int = start) -> str:
                    return field_path(["diamonds", int(loc[0]) + start, *loc[1:]])

                problems += problem_list(exc.errors(include_url=False)[: limit - len(problems)], locate)
    if total:
        raise invalid(problems[:limit], total)
    return model.model_construct(diamonds=valid)


BATCH_ONLY = 'one diamond, not a batch: wrap it in {"diamonds": [...]}, or POST it to /diamond_price'
ARRAY_TO_BATCH = 'an array, not a batch: wrap it in {"diamonds": [...]}'
BATCH_TO_ONE = 'a batch, not one diamond: POST {"diamonds": [...]} to /diamond_prices'
ARRAY_TO_ONE = 'an array, not one diamond: send one object, or {"diamonds": [...]} to /diamond_prices'


def shape_hint(model: type[BaseModel], errors: list[ErrorDetails]) -> dict[str, str] | None:
    """One problem that says what to change for a body of the wrong shape, instead of one per field; None
    otherwise."""
    batch = model is DiamondBatch
    for err in errors:
        loc, kind, value = tuple(err["loc"]), err["type"], err.get("input")
        if loc == () and isinstance(value, list):
            return {"field": "(body)", "problem": ARRAY_TO_BATCH if batch else ARRAY_TO_ONE}
        if batch and loc == ("diamonds",):
            if kind == "missing" and isinstance(value, dict) and set(value) & set(FEATURES.names):
                return {"field": "(body)", "problem": BATCH_ONLY}
            if kind in ("too_short", "too_long") and isinstance(value, list):
                return _batch_size(len(value))
            if kind == "list_type":
                return {
                    "field": "diamonds",
                    "problem": f"must be an array of 1 to {MAX_BATCH} diamonds, got {shown(value)}",
                }
        if not batch and loc == ("diamonds",) and kind == "extra_forbidden":
            return {"field": "(body)", "problem": BATCH_TO_ONE}
    return None


def _batch_size(rows: int) -> dict[str, str]:
    return {"field": "diamonds", "problem": f"must hold 1 to {MAX_BATCH} diamonds, got {rows or 'none'}"}


async def parse_json(request: Request, model: type[M]) -> M:
    """The JSON body as ``model``, validated on the event loop when small, else off it."""
    body = await read_body(request)
    limit: int = settings_of(request).max_error_fields
    if len(body) <= INLINE_BODY_BYTES:
        return validate(model, body, limit)
    return await off_loop(request, validate, model, body, limit)
