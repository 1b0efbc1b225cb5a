"""Routes declared once: an :class:`Operation` is a route with its documentation, and ``/openapi.json``
is generated from the same list, so a route cannot be served undocumented or documented unserved."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

REF = "#/components/schemas/{model}"


Endpoint = Callable[[Request], Awaitable[Response]]
Responses = dict[int, tuple[str, type[BaseModel] | None]]
"""Status code -> (description, JSON body model or None)."""


@dataclass(frozen=True)
class Operation:
    """One route: where, which handler, and what it takes and answers by status code."""

    path: str
    method: str
    endpoint: Endpoint
    summary: str
    tag: str
    responses: Responses
    request: type[BaseModel] | None = None
    description: str = ""
    parameters: list[dict[str, Any]] = field(default_factory=list)
    security: bool = False
    extra_request_content: dict[str, Any] = field(default_factory=dict)
    response_content: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Status -> media type -> schema, for responses that are not JSON (e.g. an HTML page)."""

    def route(self) -> Route:
        """The Starlette route serving this operation (``GET`` also answers ``HEAD``)."""
        return Route(self.path, self.endpoint, methods=[self.method.upper()])


def version_parameter(description: str) -> dict[str, Any]:
    """The ``{version}`` path parameter of the per-version pages."""
    return {
        "name": "version",
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "integer", "minimum": 1},
    }


def build_openapi(operations: list[Operation], *, title: str, version: str, description: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {Error}
    for op in operations:
        if op.request is not None:
            models.add(op.request)
        models.update(m for _, m in op.responses.values() if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, defs = models_json_schema([(m, "validation") for m in ordered], ref_template=REF)
    schemas = dict(defs.get("$defs", {}))

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": _operation_id(op),
            "responses": {},
        }
        if op.description:
            entry["description"] = op.description
        if op.parameters:
            entry["parameters"] = op.parameters
        if op.security:
            entry["security"] = [{"bearerAuth": []}]
        if op.request is not None:
            content = {"application/json": {"schema": ref(op.request)}, **op.extra_request_content}
            entry["requestBody"] = {"required": True, "content": content}
        for status, (text, model) in sorted(op.responses.items()):
            response: dict[str, Any] = {"description": text}
            if model is not None:
                response["content"] = {"application/json": {"schema": ref(model)}}
            if status in op.response_content:
                response["content"] = {**response.get("content", {}), **op.response_content[status]}
            entry["responses"][str(status)] = response
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation_id(op: Operation) -> str:
    slug = op.path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
    return f"{op.method}_{slug or 'root'}"


class FieldProblem(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. diamonds.3.cut")
    problem: str


class Error(BaseModel):
    error: str
    fields: list[FieldProblem] | None = Field(
        default=None, description="The first MAX_ERROR_FIELDS invalid fields (422 only)."
    )
    error_count: int | None = Field(default=None, description="How many problems in all, when `fields` lists fewer.")
