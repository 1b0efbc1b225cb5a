"""``/openapi.json`` (OpenAPI 3.1), generated from the pydantic models that validate requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from inference.api_models import Error

REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Operation:
    """One documented route: its request model and its responses by status code."""

    path: str
    method: str
    summary: str
    tag: str
    responses: dict[int, tuple[str, type[BaseModel] | None]]
    request: type[BaseModel] | None = None
    description: str = ""
    parameters: list[dict[str, Any]] = field(default_factory=list)
    security: bool = False
    extra_request_content: dict[str, Any] = field(default_factory=dict)
    response_content: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Status -> media type -> schema, for responses that are not JSON (e.g. an HTML page)."""


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
