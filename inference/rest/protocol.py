"""uvicorn's httptools protocol with bounded request heads, trailers, pipelines and unsent answers.

uvicorn bounds none of these: one connection could grow the process or hold a slot for ever.
Each bound's reason and answer: docs/security.md."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from inference.config import Settings

BODY_COMPLETE = "diamond.body_complete"
"""Scope key set once the request's whole body has been read: a ``receive`` then never waits."""


@functools.cache
def connection_limits() -> Settings:
    """The connection settings, read once per process from the environment."""
    return Settings.from_env()


class _StopParsing(Exception):
    """Raised from a parser callback: httptools then stops parsing what it was given."""


class BoundedFlow(FlowControl):
    """uvicorn's flow control, except that reading stays paused while the pipeline is full and unsent
    bytes that make no progress for ``timeout`` seconds abort the connection."""

    def __init__(self, transport: asyncio.Transport, protocol: BoundedHttpToolsProtocol, timeout: float) -> None:
        super().__init__(transport)
        self.protocol = protocol
        self.timeout = timeout
        self.watchdog: asyncio.TimerHandle | None = None
        self.unsent = 0

    def resume_reading(self) -> None:
        if not self.protocol.pipeline_full:
            super().resume_reading()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.watch()

    def watch(self) -> None:
        """Check the unsent bytes every ``timeout`` seconds while there are any."""
        if self.watchdog is None and self._transport.get_write_buffer_size():
            self.unsent = self._transport.get_write_buffer_size()
            self.watchdog = asyncio.get_running_loop().call_later(self.timeout, self._check)

    def _check(self) -> None:
        self.watchdog = None
        unsent = self._transport.get_write_buffer_size()
        if unsent and unsent >= self.unsent:  # nothing left since the last look: the client is not reading
            self._transport.abort()
            return
        self.watch()

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None


class _HeldHead:
    """A cycle's transport while its answer starts: the head is held and leaves with the first body
    bytes, in one write (one send on the socket, one segment to the client) instead of two."""

    __slots__ = ("head", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.head = b""

    def write(self, data: bytes) -> None:
        if not self.head:  # the head, written first
            self.head = bytes(data)
            return
        head, self.head = self.head, b""
        self.transport.write(head + data)

    def flush(self) -> None:
        if self.head:
            head, self.head = self.head, b""
            self.transport.write(head)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def one_write_answers(cycle: RequestResponseCycle) -> None:
    """Make ``cycle`` write its response head together with the first body message."""
    send = cycle.send
    transport = cycle.transport

    async def coalescing_send(message: Any) -> None:
        if message["type"] == "http.response.start" and not cycle.response_started:
            cycle.transport = _HeldHead(transport)  # type: ignore[assignment]
            try:
                await send(message)
            except BaseException:
                cycle.transport = transport
                raise
            return
        held: Any = cycle.transport
        try:
            await send(message)
        finally:
            if isinstance(held, _HeldHead):
                cycle.transport = transport
                if not cycle.disconnected:
                    held.flush()  # a body send that wrote nothing (or failed) still answers with the head

    cycle.send = coalescing_send  # type: ignore[method-assign]


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that refuses over-long or too-slow request heads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = connection_limits()
        self.max_head_bytes, self.head_timeout = limits.max_header_bytes, limits.header_timeout
        self.max_pipelined, self.write_timeout = limits.max_pipelined, limits.write_timeout
        self.pipeline_full = False
        self.trailer_bytes = 0
        self.head_bytes = 0
        self.in_head = True
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = BoundedFlow(transport, self, self.write_timeout)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if isinstance(self.flow, BoundedFlow):
            self.flow.stop()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            self.head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: the chunk that ends the head may carry body bytes too.
        if self.in_head and self.head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._refuse(431, "Request Header Fields Too Large", f"request head over {self.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete and len(self.pipeline) >= self.max_pipelined:
            # The queue is full: parse no further, read no more, close once the queued are answered.
            self.pipeline_full = True
            self.flow.pause_reading()
            self.pipeline[0][0].keep_alive = False
            raise _StopParsing
        super().on_message_begin()
        self.in_head = True
        self.head_bytes = 0
        self.trailer_bytes = 0
        if self.head_timer is None:
            self._arm()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.in_head:
            super().on_header(name, value)
            return
        # A trailer field of a chunked body: counted, never kept.
        self.trailer_bytes += len(name) + len(value) + 4
        if self.trailer_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._refuse(431, "Request Header Fields Too Large", f"trailers over {self.max_head_bytes} bytes")
            raise _StopParsing

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._disarm()
        codings = b",".join(v for k, v in self.headers if k == b"transfer-encoding").strip().lower()
        if codings and codings != b"chunked":
            shown = codings[:40].decode("latin-1")
            self._refuse(501, "Not Implemented", f"Transfer-Encoding {shown!r} is not supported: send chunked alone")
            raise _StopParsing
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not before:
            one_write_answers(self.cycle)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self.cycle is not None and not self.cycle.more_body:
            self.cycle.scope[BODY_COMPLETE] = True  # type: ignore[literal-required]

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.head_bytes = 0  # the next head is timed from its first byte (idle time is keep-alive's)
        if isinstance(self.flow, BoundedFlow):
            self.flow.watch()  # an answer the client has not read yet: it must leave within WRITE_TIMEOUT

    def send_400_response(self, msg: str) -> None:
        if self.pipeline_full or self.transport.is_closing():  # we stopped the parser on purpose
            return
        super().send_400_response(msg)

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
        if self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete:
            self.transport.abort()  # an answer is under way: a second one would garble it
            return
        body = json.dumps({"error": message}).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self.transport.close()
        self._disarm()
