"""Every error becomes a small JSON body with its status: one set of handlers for the whole app."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from inference.errors import CLIENT_CLOSED, ServiceError, clip_text, error_body
from inference.rest.wire import json_response

log = logging.getLogger(__name__)


async def service_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return json_response(error_body(exc.message, **exc.extra), status_code=exc.status_code, headers=exc.headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = clip_text(request.url.path, 200)
    if exc.status_code == 404:
        message = f"no route {path}"
    elif exc.status_code == 405:
        message = f"method {clip_text(request.method, 20)} not allowed on {path}"
    else:
        message = str(exc.detail)
    return json_response(error_body(message), status_code=exc.status_code, headers=exc.headers)


async def client_disconnect_handler(request: Request, exc: Exception) -> Response:
    """The client closed the connection mid-request: nothing to answer, nothing went wrong here.
    The 499 only reaches the metrics (uvicorn drops a response to a closed connection)."""
    log.debug("client went away during %s %s", request.method, clip_text(request.url.path, 200))
    return Response(status_code=CLIENT_CLOSED)


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response(error_body("internal error"), status_code=500)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ClientDisconnect: client_disconnect_handler,
    ServiceError: service_error_handler,
    HTTPException: http_error_handler,
    Exception: unhandled_error_handler,
}
