"""Every API route, declared once: path, method, handler and documentation together.

Pages that are not API operations (docs, calculator, ``/metrics``) are mounted beside them."""

from __future__ import annotations

from pydantic import BaseModel

from inference.api import bodies as m
from inference.api import endpoints
from inference.pages import drift, reports
from inference.rest.openapi import Endpoint, Error, Operation, Responses
from inference.v2.endpoints import V2_OPERATIONS

_ERR = Error

_CLIENT_ERRORS: Responses = {
    400: ("Malformed JSON", _ERR),
    408: ("The body did not arrive within BODY_TIMEOUT seconds; the connection is closed", _ERR),
    413: ("Body too large", _ERR),
    415: ("Content-Type is not application/json, or Content-Encoding is not gzip, deflate or identity", _ERR),
    422: ("A field is invalid: `fields` lists each one", _ERR),
    503: ("No model is loaded", _ERR),
}


def _pricing(path: str, handler: Endpoint, summary: str, body: type[BaseModel], answer: type[BaseModel]) -> Operation:
    """A pricing route: a JSON body in, prices (in request order) out, or a client error."""
    responses: Responses = {200: (answer.__doc__ or "Prices", answer), **_CLIENT_ERRORS}
    return Operation(path, "post", handler, summary, "prices", responses, request=body)


JSON_API: list[Operation] = [
    Operation(
        "/",
        "get",
        endpoints.health,
        "Service status and the current model",
        "health",
        {200: ("Ready: a model is serving", m.Health), 503: ("No model is loaded; `reason` says why", m.Health)},
    ),
    Operation(
        "/health/live", "get", endpoints.live, "Liveness: the process answers", "health", {200: ("Alive", m.Liveness)}
    ),
    Operation(
        "/health/ready",
        "get",
        endpoints.ready,
        "Readiness: a model is loaded",
        "health",
        {200: ("Ready", m.Health), 503: ("Not ready", m.Health)},
    ),
    _pricing("/diamond_price", endpoints.diamond_price, "Price one diamond", m.Diamond, m.Price),
    _pricing(
        "/diamond_prices",
        endpoints.diamond_prices,
        "Price up to 10,000 diamonds in one model call",
        m.DiamondBatch,
        m.Prices,
    ),
    Operation(
        "/update_model",
        "post",
        endpoints.update_model,
        "Load the model modelsettings.json names now",
        "operations",
        {
            200: ("Swapped in, or already serving", m.UpdateResult),
            401: ("UPDATE_TOKEN is set and the bearer token is missing or wrong", _ERR),
            409: ("The named model cannot be loaded; the previous one keeps serving", _ERR),
        },
        description="Loads the new model fully, then swaps it in; requests already running finish on "
        "the model they started with. Needs `Authorization: Bearer <UPDATE_TOKEN>` when that is set.",
        security=True,
    ),
]


HOT: list[Operation] = [op for op in JSON_API if op.tag == "prices"]
"""Served by exact path ahead of the router (:class:`inference.rest.hot.HotRoutes`)."""

OPERATIONS: list[Operation] = [*JSON_API, *V2_OPERATIONS, reports.OPERATION, drift.OPERATION]
"""The JSON API, the Open Inference Protocol, the run reports and the input drift."""
