"""uvicorn's sans-I/O WebSocket protocol, lighter per idle connection.

The same protocol as `ws="websockets-sansio"`, with what an idle socket holds cut down
(docs/performance.md): its inbox is a deque made only while messages wait, and one
waiter, instead of an `asyncio.Queue` (four deques of 760 bytes, empty); its write gate
is a flag instead of an `asyncio.Event` (one more deque); and it lets go of the
handshake's request and response once they are answered. Serve with
`uvicorn.run(..., ws="chat_server.ws_protocol:LeanWebSocketsSansIOProtocol")`.

It leans on the attributes of uvicorn's class (`queue`, `writable`, `request`,
`response`), so a uvicorn upgrade must run the socket tests with it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request


class _Inbox:
    """What `WebSocketsSansIOProtocol` needs of its queue: one reader, never full."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item


class _Gate:
    """What the protocol needs of its `writable` event: open, closed, wait until open."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        self._open = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._open = False

    async def wait(self) -> bool:
        while not self._open:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter
        return True


class LeanWebSocketsSansIOProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Gate()  # type: ignore[assignment]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # Only read while connecting; its headers are in the scope already.
        self.request = None  # type: ignore[assignment]

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if self.handshake_complete:
            # Only needed to answer the handshake.
            self.response = None  # type: ignore[assignment]
