"""The pricing routes by exact path, ahead of Starlette's router: the request path that matters most
for speed skips the route regexes and the per-request exception-handling wrappers.

Everything else of the stack stays: the metrics and body-limit middleware run around this as
around any route, and an error is answered by the same handlers as anywhere else in the app."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from inference.rest.openapi import Operation


class HotRoutes:
    """Pure ASGI middleware: ``POST`` operations listed as hot are served here, by exact path."""

    def __init__(self, app: ASGIApp, operations: Iterable[Operation], handlers: Mapping[Any, Any]) -> None:
        self.app = app
        self.routes: dict[str, Route] = {op.path: op.route() for op in operations if op.method == "post"}
        self.handlers = dict(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # the metrics label, as Starlette's router sets it
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            response = await self._handler(exc)(request, exc)
            exc.__traceback__ = None
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Any:
        """The app's handler for ``exc``: the nearest class in its MRO (as Starlette looks them up)."""
        for cls in type(exc).__mro__:
            if cls in self.handlers:
                return self.handlers[cls]
        raise exc  # not reached: ``Exception`` has a handler


async def receive_body(request: Request) -> bytes:
    """The whole body, read straight from ``receive`` (Starlette's ``Request.body`` goes through an
    async generator per request); cached on the request as Starlette caches it."""
    cached: bytes | None = getattr(request, "_body", None)
    if cached is not None:
        return cached
    receive = request.receive
    message = await receive()
    chunks: list[bytes] = []
    while True:
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        message = await receive()
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    request._body = body
    return body
