"""Reading request bodies for both APIs: the media type checked, the content encoding undone, and
large bodies' work kept off the event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect, Request

from inference.errors import UnsupportedMediaType, clip_text
from inference.rest.limits import RESERVATION, decode_content
from inference.rest.wire import JSON
from inference.serving import settings_of

T = TypeVar("T")

INLINE_BODY_BYTES = 4096
"""Bodies up to this size are validated (and priced) on the event loop: tens of microseconds."""


def check_media_type(request: Request, accepted: tuple[str, ...] = (JSON,), *, required: bool = True) -> None:
    """415 unless ``Content-Type`` is one of ``accepted`` (``+json`` types count as JSON); a missing
    header passes when not ``required`` (V2 clients may send none)."""
    content_type = request.headers.get("content-type")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if not media_type and not required:
        return
    if media_type in accepted or (JSON in accepted and media_type.endswith("+json")):
        return
    got = f"got {clip_text(content_type, 60)!r}" if content_type else "none was sent"
    raise UnsupportedMediaType(f"Content-Type must be {' or '.join(accepted)} ({got})")


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


async def read_body(request: Request, accepted: tuple[str, ...] = (JSON,), *, required: bool = True) -> bytes:
    """The body, media type checked (415) and content encoding undone (413 past ``MAX_BODY_BYTES``)."""
    check_media_type(request, accepted, required=required)
    max_bytes: int = settings_of(request).max_body_bytes
    reservation = request.scope.get(RESERVATION)
    return await decode_content(
        await receive_body(request), request.headers.get("content-encoding"), max_bytes, reservation
    )


async def off_loop(request: Request, func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a worker thread, one such call at a time per process: a large body's
    validation and pricing compete with the event loop through one thread only."""
    state = request.app.state
    limiter: anyio.CapacityLimiter | None = getattr(state, "large_body_limiter", None)
    if limiter is None:
        limiter = state.large_body_limiter = anyio.CapacityLimiter(1)
    return await anyio.to_thread.run_sync(func, *args, limiter=limiter)
