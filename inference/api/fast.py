"""``POST /diamond_price`` without the general request machinery, when nothing about the request is
unusual: the body has fully arrived, is small, plain JSON, valid, and a model prices it.

Anything else, and any error, goes on to the full stack, which answers it as it answers every request
(the body it was given is replayed): the bounds and the error answers stay the full stack's. What is
skipped for the usual request is only the work no such request needs: the body deadline and budget
(the body is already here), the router and the request and response objects."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference.api.bodies import Diamond
from inference.api.endpoints import price_answer
from inference.api.validate import validate
from inference.rest.bodies import INLINE_BODY_BYTES
from inference.rest.hot import handler_for
from inference.rest.metrics import Metrics
from inference.rest.protocol import BODY_COMPLETE
from inference.rest.wire import dump

PATH = "/diamond_price"
_UNUSUAL = frozenset((b"content-encoding", b"transfer-encoding", b"expect"))
_JSON = (b"application/json", b"application/json; charset=utf-8")


class FastPrice:
    """Pure ASGI middleware, outermost: the usual single-diamond request, priced and answered here."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, handlers: Mapping[Any, Any], max_body_bytes: int, max_error_fields: int
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.handlers = handlers
        self.max_bytes = min(INLINE_BODY_BYTES, max_body_bytes)
        self.max_error_fields = max_error_fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or BODY_COMPLETE not in scope:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        length: bytes | None = None
        media: bytes | None = None
        for name, value in scope["headers"]:  # the first of each, as the full stack reads them
            if name == b"content-length":
                length = value if length is None else length
            elif name == b"content-type":
                media = value.lower() if media is None else media
            elif name in _UNUSUAL:
                await self.app(scope, receive, send)
                return
        if media not in _JSON or length is None or not length.isdigit() or int(length) > self.max_bytes:
            await self.app(scope, receive, send)
            return
        message = await receive()  # never waits: the whole body has been read
        if message["type"] != "http.request" or message.get("more_body", False):
            await self.app(scope, _replay(message, receive), send)
            return
        state = scope["app"].state
        model = state.holder.current
        try:
            if model is None or model.speed.slow:
                raise LookupError("for the full stack")
            diamond = validate(Diamond, message.get("body", b""), self.max_error_fields)
        except Exception:  # the full stack answers it: the 4xx naming the field, the 503, the thread
            await self.app(scope, _replay(message, receive), send)
            return
        try:
            values = await state.batcher.price(model, diamond)  # its errors are final (already retried)
        except Exception as exc:
            response = await handler_for(self.handlers, exc)(Request(scope, receive, send), exc)
            exc.__traceback__ = None
            await response(scope, receive, send)
            self.metrics.observe_request(PATH, "POST", response.status_code, time.perf_counter() - started)
            return
        body = dump(price_answer(model, values))
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.metrics.observe_request(PATH, "POST", 200, time.perf_counter() - started)
        self.metrics.rows.inc(1)


def _replay(first: Message, receive: Receive) -> Receive:
    """``receive`` with ``first``, already taken from it, given back first."""
    pending = [first]

    async def replaying() -> Message:
        return pending.pop() if pending else await receive()

    return replaying
