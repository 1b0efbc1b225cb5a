"""Turning a request body into a validated pydantic model, with errors that name each field."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from inference.errors import BadRequest, InvalidInput, UnsupportedMediaType

M = TypeVar("M", bound=BaseModel)


def require_json(request: Request) -> None:
    content_type = request.headers.get("content-type")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        got = f"got {content_type!r}" if content_type else "none was sent"
        raise UnsupportedMediaType(f"Content-Type must be application/json ({got})")


def field_problems(exc: ValidationError) -> list[dict[str, str]]:
    problems = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(body)"
        problem = err["msg"]
        if err["type"] == "missing":
            problem = "field required"
        elif err["type"] == "extra_forbidden":
            problem = "unknown field"
        problems.append({"field": where, "problem": problem})
    return problems


async def parse_json(request: Request, model: type[M]) -> M:
    """The body as ``model``: 415 for a non-JSON content type, 400 for malformed JSON,
    422 listing every invalid field (413 comes from the body-size limit)."""
    require_json(request)
    body = await request.body()
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        malformed = [e for e in exc.errors(include_url=False) if e["type"] == "json_invalid"]
        if malformed:
            raise BadRequest(f"malformed JSON: {malformed[0]['msg']}") from None
        problems = field_problems(exc)
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:10])
        if len(problems) > 10:
            summary += f"; and {len(problems) - 10} more"
        raise InvalidInput(f"invalid request: {summary}", fields=problems) from None
