"""One connection's outbound queue and writer, and the lean WebSocket protocol under it.

The writer only exists while frames wait (an idle socket holds no task and no queue);
these tests pin down what that must not change: order, the `first` frame, the bound.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from chat_server.brokers import Event
from chat_server.connection import CLOSE_OVERFLOW, Connection
from chat_server.ws_protocol import LeanWebSocketsSansIOProtocol
from tests.conftest import serve_uvicorn


@dataclass
class Wire:
    """The client's side of the socket: what was sent, and how it was closed."""

    sent: list[Event] = field(default_factory=list)
    closed: tuple[int, str] | None = None
    # While clear, sending waits: a phone that does not read.
    reading: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.reading.set()

    async def send_text(self, text: str) -> None:
        await self.reading.wait()
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def types(self) -> list[str]:
        return [frame["type"] for frame in self.sent]


async def _nothing_after(_conversation: uuid.UUID, _seq: int) -> Sequence[Event]:
    return []


def _connection(wire: Wire, *, queue_size: int = 16) -> Connection:
    return Connection(
        kind="staff",
        send_text=wire.send_text,
        close=wire.close,
        fetch_after=_nothing_after,
        queue_size=queue_size,
    )


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_frames_reach_the_client_in_the_order_pushed() -> None:
    wire = Wire()
    connection = _connection(wire)
    connection.start()
    for n in range(5):
        connection.push({"type": "pong", "n": n})
    await _settle()
    assert [frame["n"] for frame in wire.sent] == [0, 1, 2, 3, 4]


async def test_nothing_is_sent_before_start_and_first_goes_out_before_what_waited() -> None:
    wire = Wire()
    connection = _connection(wire)
    connection.push({"type": "pong"})
    await _settle()
    assert wire.sent == []
    connection.start(first={"type": "snapshot"})
    await _settle()
    assert wire.types() == ["snapshot", "pong"]


async def test_an_idle_connection_keeps_no_writer_and_a_new_frame_starts_one() -> None:
    wire = Wire()
    connection = _connection(wire)
    connection.start()
    connection.push({"type": "pong", "n": 1})
    await _settle()
    assert connection._writer is None
    assert connection._pending is None
    connection.push({"type": "pong", "n": 2})
    await _settle()
    assert [frame["n"] for frame in wire.sent] == [1, 2]


async def test_frames_pushed_while_the_writer_sends_follow_in_order() -> None:
    wire = Wire()
    connection = _connection(wire)
    connection.start()
    wire.reading.clear()
    connection.push({"type": "pong", "n": 1})
    await _settle()
    connection.push({"type": "pong", "n": 2})
    wire.reading.set()
    await asyncio.sleep(0.02)
    connection.push({"type": "pong", "n": 3})
    await _settle()
    assert [frame["n"] for frame in wire.sent] == [1, 2, 3]


async def test_a_client_too_slow_for_its_queue_is_closed_with_1013() -> None:
    wire = Wire()
    connection = _connection(wire, queue_size=3)
    connection.start()
    wire.reading.clear()
    for n in range(5):
        connection.push({"type": "pong", "n": n})
    await _settle()
    assert wire.closed == (CLOSE_OVERFLOW, "too slow; reconnect and resume")
    wire.reading.set()
    connection.push({"type": "pong", "n": 99})
    await _settle()
    assert all(frame["n"] != 99 for frame in wire.sent)


async def test_stop_flushes_what_is_queued_then_refuses_more() -> None:
    wire = Wire()
    connection = _connection(wire)
    connection.start()
    for n in range(3):
        connection.push({"type": "pong", "n": n})
    await connection.stop()
    connection.push({"type": "pong", "n": 3})
    await _settle()
    assert [frame["n"] for frame in wire.sent] == [0, 1, 2]


# --- the lean protocol on a real server -------------------------------------------------


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(text.upper())
    except WebSocketDisconnect:
        pass


@pytest.fixture
async def lean_url() -> AsyncIterator[str]:
    config = uvicorn.Config(
        Starlette(routes=[WebSocketRoute("/echo", _echo)]),
        host="127.0.0.1",
        port=0,
        ws=LeanWebSocketsSansIOProtocol,
        ws_per_message_deflate=False,
        lifespan="off",
        log_level="warning",
    )
    server, task, port = await serve_uvicorn(config)
    try:
        yield f"ws://127.0.0.1:{port}/echo"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


async def test_the_lean_protocol_carries_messages_both_ways_in_order(lean_url: str) -> None:
    async with websockets.connect(lean_url, compression=None) as ws:
        for word in ("një", "dy", "tre"):
            await ws.send(word)
        assert [await ws.recv() for _ in range(3)] == ["NJË", "DY", "TRE"]


async def test_the_lean_protocol_carries_a_burst_larger_than_the_socket_buffers(
    lean_url: str,
) -> None:
    """Enough to make the server pause writing and resume it."""
    body = "x" * 60_000
    async with websockets.connect(lean_url, compression=None, max_size=None) as ws:
        await asyncio.gather(*(ws.send(body) for _ in range(100)))
        for _ in range(100):
            assert await ws.recv() == body.upper()
