"""The pricing routes ahead of Starlette's router: the requests that matter most for speed skip the
other routes' regexes and the per-request exception-handling wrappers.

Everything else of the stack stays: the metrics and body-limit middleware run around this as
around any route, and an error is answered by the same handlers as anywhere else in the app."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from inference.rest.openapi import Operation


class HotRoutes:
    """Pure ASGI middleware: ``POST`` operations listed as hot are served here, by exact path, or by
    their pattern for a path with parameters (tried only under the longest literal prefix of them)."""

    def __init__(self, app: ASGIApp, operations: Iterable[Operation], handlers: Mapping[Any, Any]) -> None:
        self.app = app
        posts = [op for op in operations if op.method == "post"]
        self.routes: dict[str, Route] = {op.path: op.route() for op in posts if "{" not in op.path}
        self.patterns: list[Route] = [op.route() for op in posts if "{" in op.path]
        self.prefix = _common_prefix([op.path.split("{", 1)[0] for op in posts if "{" in op.path])
        self.handlers = dict(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            route = self.routes.get(path)
            if route is not None:
                scope["path_params"] = {}
            elif self.patterns and path.startswith(self.prefix):
                route = self._match(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # the metrics label, as Starlette's router sets it
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            response = await handler_for(self.handlers, exc)(request, exc)
            exc.__traceback__ = None
        await response(scope, receive, send)

    def _match(self, scope: Scope) -> Route | None:
        for route in self.patterns:
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope.update(child)
                return route
        return None


def handler_for(handlers: Mapping[Any, Any], exc: Exception) -> Any:
    """The app's handler for ``exc``: the nearest class in its MRO (as Starlette looks them up)."""
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    raise exc  # not reached: ``Exception`` has a handler


def _common_prefix(paths: list[str]) -> str:
    if not paths:
        return ""
    first, last = min(paths), max(paths)
    size = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), len(first))
    return first[:size]
