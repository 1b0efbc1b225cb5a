"""Limits on request bodies: size, read deadline, memory held, and bomb-safe decompression.

:class:`BodyLimits` wraps every HTTP request:

- a declared ``Content-Length`` over ``MAX_BODY_BYTES`` is refused (413) before a byte is read,
  and a streamed body as soon as it passes the limit;
- the whole body must arrive within ``BODY_TIMEOUT`` seconds of the request's start, or the
  answer is 408 and the connection is closed (a stalled upload cannot hold memory for ever);
- large bodies (over :data:`FREE_BODY_BYTES`) first reserve their size from a per-process
  budget, ``BODY_BUFFER_BYTES``; while it is spent they wait without reading, so the bytes stay
  in the kernel's socket buffer, not in this process. Small bodies never wait;
- an answer sent before its request body was fully read closes the connection, so a client
  cannot keep it open by never finishing the body.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType, clip_text

FREE_BODY_BYTES = 64 * 1024
"""Bodies declared at most this large are read without reserving from the budget."""


class BodyBudget:
    """Bytes that large request bodies being read may hold at once, in one process."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0
        self._freed: asyncio.Event | None = None

    async def acquire(self, size: int) -> int:
        """Wait until ``size`` bytes (at most the capacity) fit; returns what was reserved."""
        size = min(size, self.capacity)
        while self.held + size > self.capacity:
            if self._freed is None:
                self._freed = asyncio.Event()
            await self._freed.wait()
        self.held += size
        return size

    def release(self, size: int) -> None:
        if not size:
            return
        self.held -= size
        if self._freed is not None:
            self._freed.set()
            self._freed = None


class _Deadline:
    """A request body's deadline: one timer per request, armed when the body is first awaited, that
    cancels the request's task only while it waits inside ``limited_receive`` (between
    :meth:`enter` and ``waiting = False``): the same bound as a cancel scope around each receive,
    without creating one per receive."""

    __slots__ = ("_expired", "_task", "_timer", "at", "waiting")

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.waiting = False
        self._expired = False
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def enter(self) -> bool:
        """False once the deadline has passed; else the caller may wait until it does."""
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            return False
        if self._timer is None:
            self._task = asyncio.current_task()
            self._timer = asyncio.get_running_loop().call_later(remaining, self._expire)
        self.waiting = True
        return True

    def _expire(self) -> None:
        if self.waiting and self._task is not None:
            self._expired = True
            self._task.cancel()

    def expired(self) -> bool:
        """Whether a cancellation just caught came from this deadline (then it is consumed)."""
        if not self._expired or self._task is None:
            return False
        self._expired = False
        self._task.uncancel()
        return True

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class BodyLimits:
    """Pure ASGI middleware enforcing the limits in the module docstring."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float, buffer_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.budget = BodyBudget(buffer_bytes)

    def _late(self) -> RequestTimeout:
        return RequestTimeout(f"the request body did not arrive within {self.timeout:g} s")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        size = int(declared) if declared.isdigit() else None
        too_large = size is not None and size > self.max_bytes
        body_pending = chunked or bool(size)
        deadline = _Deadline(self.timeout)
        received = 0
        reserved = 0

        async def limited_receive() -> Message:
            nonlocal received, reserved, body_pending
            if too_large:  # refused before a byte of it is read
                raise PayloadTooLarge(f"request body exceeds the limit of {self.max_bytes} bytes")
            if not deadline.enter():
                raise self._late()
            try:
                if body_pending and not reserved:
                    wanted = self.max_bytes if size is None else size
                    if wanted > FREE_BODY_BYTES:
                        reserved = await self.budget.acquire(wanted)
                message = await receive()
            except asyncio.CancelledError:
                if deadline.expired():
                    raise self._late() from None
                raise
            finally:
                deadline.waiting = False
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(f"request body exceeds the limit of {self.max_bytes} bytes")
                body_pending = bool(message.get("more_body", False))
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and body_pending:
                # Answered before the body ended: close, or the rest of it would keep the connection.
                sent = list(message.get("headers", []))
                if not any(name.lower() == b"connection" for name, _ in sent):
                    message = {**message, "headers": [*sent, (b"connection", b"close")]}
            await send(message)

        if not declared and b"transfer-encoding" not in headers:  # no body at all (a GET): nothing to bound
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, limited_receive, closing_send)
        finally:
            deadline.close()
            self.budget.release(reserved)


def decode_content(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """The body with its ``Content-Encoding`` undone: gzip and deflate are inflated up to
    ``max_bytes`` (413 beyond: a small bomb cannot grow past the body limit); identity passes;
    anything else is a 415."""
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(
            f"Content-Encoding {clip_text(coding, 40)!r} is not supported (use gzip, deflate or none)"
        )
    inflater = zlib.decompressobj(wbits=31 if coding == "gzip" else 15)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadRequest(f"the body is not valid {coding} data: {exc}") from None
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the inflated request body exceeds the limit of {max_bytes} bytes")
    if not inflater.eof or inflater.unused_data:
        raise BadRequest(f"the {coding} body is truncated or has trailing bytes")
    return data
