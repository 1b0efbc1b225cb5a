"""uvicorn's httptools protocol with bounded request heads.

uvicorn keeps every header line it has parsed until the head ends, and waits for the head
without a deadline: one connection sending ``X: a`` lines for ever grows the process without
bound, and connections that never finish their head fill ``LIMIT_CONCURRENCY``. Here a request
head (request line and headers) must stay within ``MAX_HEADER_BYTES`` and arrive within
``HEADER_TIMEOUT`` seconds of its first byte (or of the connection, for the first request);
otherwise the answer is 431 or 408 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from inference.config import Settings


@functools.cache
def head_limits() -> tuple[int, float]:
    """(MAX_HEADER_BYTES, HEADER_TIMEOUT), read once per process from the environment."""
    settings = Settings.from_env()
    return settings.max_header_bytes, settings.header_timeout


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that refuses over-long or too-slow request heads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes, self.head_timeout = head_limits()
        self.head_bytes = 0
        self.in_head = True
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            self.head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: the chunk that ends the head may carry body bytes too.
        if self.in_head and self.head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._refuse(431, "Request Header Fields Too Large", f"request head over {self.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_bytes = 0
        if self.head_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.head_bytes = 0  # the next head is timed from its first byte (idle time is keep-alive's)

    def _arm(self) -> None:
        self._disarm()
        self.head_timer = self.loop.call_later(self.head_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _timed_out(self) -> None:
        self.head_timer = None
        idle = self.cycle is None or self.cycle.response_complete
        if self.in_head and idle and not self.transport.is_closing():
            self._refuse(408, "Request Timeout", f"request head not received within {self.head_timeout:g} s")

    def _refuse(self, status: int, reason: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self.transport.close()
        self._disarm()
