"""A request-body size limit, enforced before and while the body is read."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference.errors import ServiceError


class PayloadTooLarge(ServiceError):
    status_code = 413


class BodySizeLimit:
    """Pure ASGI middleware: a declared Content-Length over the limit is refused outright;
    a streamed body is counted and refused as soon as it passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body exceeds the limit of {self.max_bytes} bytes"
        declared = next((value for key, value in scope["headers"] if key == b"content-length"), b"")
        too_large = declared.isdigit() and int(declared) > self.max_bytes
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if too_large:  # refused before a byte of it is read
                raise PayloadTooLarge(message)
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(message)
            return msg

        await self.app(scope, limited_receive, send)
