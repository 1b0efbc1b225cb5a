"""Limits on request bodies: size, read deadline, memory held, and bomb-safe decompression.

Each bound keeps one client from holding memory or a connection for ever: bytes beyond a small
free share wait for a per-process budget unread, in the kernel's socket buffer, not here."""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference.errors import (
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    clip_text,
    error_body,
)
from inference.rest.wire import json_response

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


class Reservation:
    """What one request holds of the budget: it grows as the request's bytes arrive or inflate."""

    def __init__(self, budget: BodyBudget, deadline: float, timeout: float) -> None:
        self.budget = budget
        self.deadline = deadline
        self.timeout = timeout
        self.held = 0

    async def cover(self, total: int) -> None:
        """Hold enough for ``total`` bytes, waiting for room until the request's deadline at most (then 408)."""
        wanted = min(total - FREE_BODY_BYTES, self.budget.capacity) - self.held
        if wanted <= 0:
            return
        got = None
        remaining = self.deadline - time.monotonic()
        if remaining > 0:
            with anyio.move_on_after(remaining):
                got = await self.budget.acquire(wanted)
        if got is None:
            raise RequestTimeout(f"the request body did not arrive within {self.timeout:g} s")
        self.held += got

    def release(self) -> None:
        self.budget.release(self.held)
        self.held = 0


RESERVATION = "diamond.body_reservation"
"""The scope key of the request's :class:`Reservation` (``read_body`` grows it while inflating)."""


class _Deadline:
    """One timer per request that cancels it only while it waits in a receive: the bound of a cancel
    scope per receive, without creating one per receive."""

    __slots__ = ("_expired", "_task", "_timer", "at", "waiting")

    def __init__(self, at: float) -> None:
        self.at = at
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
    """Pure ASGI middleware enforcing the body limits (each one's reason: docs/security.md)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float, buffer_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.budget = BodyBudget(buffer_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        codings = b",".join(v for k, v in scope["headers"] if k == b"transfer-encoding").lower()
        if codings and codings.strip() != b"chunked":  # e.g. "gzip, chunked": never read as plain chunked
            await self._refuse_transfer_coding(codings, scope, receive, send)
            return
        declared = headers.get(b"content-length", b"")
        chunked = bool(codings)
        size = int(declared) if declared.isdigit() else None
        too_large = size is not None and size > self.max_bytes
        body_pending = chunked or bool(size)
        deadline = time.monotonic() + self.timeout
        reservation = Reservation(self.budget, deadline, self.timeout)
        scope[RESERVATION] = reservation
        timer = _Deadline(deadline)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received, body_pending
            if too_large:  # refused before a byte of it is read
                raise PayloadTooLarge(f"request body exceeds the limit of {self.max_bytes} bytes")
            if body_pending:  # a declared length at once, a chunked body by what has arrived
                await reservation.cover(size if size is not None else received)
            if not timer.enter():
                raise RequestTimeout(f"the request body did not arrive within {self.timeout:g} s")
            try:
                message = await receive()
            except asyncio.CancelledError:
                if timer.expired():
                    raise RequestTimeout(f"the request body did not arrive within {self.timeout:g} s") from None
                raise
            finally:
                timer.waiting = False
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(f"request body exceeds the limit of {self.max_bytes} bytes")
                body_pending = bool(message.get("more_body", False))
                if size is None:
                    await reservation.cover(received)
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and body_pending:
                # Answered before the body ended: close, or the rest of it would keep the connection.
                sent = list(message.get("headers", []))
                if not any(name.lower() == b"connection" for name, _ in sent):
                    message = {**message, "headers": [*sent, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited_receive, closing_send)
        finally:
            timer.close()
            reservation.release()

    async def _refuse_transfer_coding(self, codings: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        shown = clip_text(codings.decode("latin-1"), 40)
        body = error_body(f"Transfer-Encoding {shown!r} is not supported: send chunked alone, or a Content-Length")
        await json_response(body, status_code=501, headers={"Connection": "close"})(scope, receive, send)


INFLATE_STEP = 64 * 1024
"""Bytes inflated between two reservations (and two turns of the event loop)."""


async def decode_content(body: bytes, encoding: str | None, max_bytes: int, reservation: Reservation | None) -> bytes:
    """The body with its ``Content-Encoding`` undone, inflating at most ``max_bytes`` (a small bomb cannot
    grow past the body limit) and reserving the inflated bytes as they come; 415 for unknown codings."""
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(
            f"Content-Encoding {clip_text(coding, 40)!r} is not supported (use gzip, deflate or none)"
        )
    inflater = zlib.decompressobj(wbits=31 if coding == "gzip" else 15)
    parts: list[bytes] = []
    inflated = 0
    pending = body
    while True:
        try:
            part = inflater.decompress(pending, INFLATE_STEP)
        except zlib.error as exc:
            raise BadRequest(f"the body is not valid {coding} data: {exc}") from None
        pending = inflater.unconsumed_tail
        if not part:
            break
        inflated += len(part)
        if inflated > max_bytes:
            raise PayloadTooLarge(f"the inflated request body exceeds the limit of {max_bytes} bytes")
        if reservation is not None:
            await reservation.cover(len(body) + inflated)
        parts.append(part)
    if not inflater.eof or inflater.unused_data:
        raise BadRequest(f"the {coding} body is truncated or has trailing bytes")
    return b"".join(parts)
