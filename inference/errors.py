"""Domain errors carry their HTTP status; one set of handlers turns every error into JSON."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error a client should see: ``status_code`` and a message naming the problem."""

    status_code = 400

    def __init__(self, message: str, *, status_code: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra


class BadRequest(ServiceError):
    status_code = 400


class Unauthorized(ServiceError):
    status_code = 401


class UnsupportedMediaType(ServiceError):
    status_code = 415


class InvalidInput(ServiceError):
    """Well-formed JSON whose fields break the schema; ``fields`` lists every problem."""

    status_code = 422


class ModelUnavailable(ServiceError):
    status_code = 503


class ReloadFailed(ServiceError):
    """The settings file names a model that cannot be loaded; the previous one keeps serving."""

    status_code = 409


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, **extra}


async def service_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return JSONResponse(error_body(exc.message, **exc.extra), status_code=exc.status_code, headers=headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return JSONResponse(error_body(message), status_code=exc.status_code, headers=exc.headers)


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("internal error"), status_code=500)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ServiceError: service_error_handler,
    HTTPException: http_error_handler,
    Exception: unhandled_error_handler,
}
