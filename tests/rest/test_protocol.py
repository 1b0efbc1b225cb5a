"""The answer's head leaves with its body in one write: uvicorn's own response cycle, a recording transport."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from inference.rest.protocol import one_write_answers


class Recording:
    """A transport that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        if data:  # asyncio's transports ignore empty writes
            self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _cycle(method: str = "GET", keep_alive: bool = True) -> tuple[RequestResponseCycle, Recording]:
    transport = Recording()
    log = logging.getLogger("test")
    cycle = RequestResponseCycle(
        scope={"type": "http", "method": method, "path": "/", "headers": []},  # type: ignore[typeddict-item]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=log,
        access_logger=log,
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )
    one_write_answers(cycle)
    return cycle, transport


def _start(length: int | None) -> dict[str, Any]:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return {"type": "http.response.start", "status": 200, "headers": headers}


def _body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


def test_head_and_body_leave_in_one_write() -> None:
    async def scenario() -> None:
        cycle, transport = _cycle()
        await cycle.send(_start(5))
        assert transport.writes == []  # held
        await cycle.send(_body(b"hello"))
        assert len(transport.writes) == 1
        assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and transport.writes[0].endswith(b"\r\n\r\nhello")
        assert cycle.response_complete and cycle.transport is transport

    asyncio.run(scenario())


def test_a_streamed_answer_sends_its_head_with_the_first_chunk_then_each_chunk() -> None:
    async def scenario() -> None:
        cycle, transport = _cycle()
        await cycle.send(_start(None))  # chunked
        await cycle.send(_body(b"ab", more=True))
        await cycle.send(_body(b"cd", more=True))
        await cycle.send(_body(b""))
        assert len(transport.writes) == 3
        assert transport.writes[0].endswith(b"\r\n\r\n2\r\nab\r\n")
        assert transport.writes[1:] == [b"2\r\ncd\r\n", b"0\r\n\r\n"]

    asyncio.run(scenario())


def test_an_empty_body_still_sends_the_head() -> None:
    async def scenario() -> None:
        cycle, transport = _cycle(method="HEAD", keep_alive=False)
        await cycle.send(_start(5))
        await cycle.send(_body(b""))
        assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 200 OK")
        assert transport.closed  # the connection's close still reaches the real transport

    asyncio.run(scenario())


def test_a_body_send_that_fails_still_sends_the_head() -> None:
    async def scenario() -> None:
        cycle, transport = _cycle()
        await cycle.send(_start(2))
        with pytest.raises(RuntimeError, match="longer than Content-Length"):
            await cycle.send(_body(b"too long"))
        assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 200 OK")
        assert cycle.transport is transport

    asyncio.run(scenario())
