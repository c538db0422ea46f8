"""A protocol client for tests: real WebSocket connections speaking JSON frames."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from chat_server.accounts import SESSION_COOKIE, StaffIdentity

TIMEOUT = 10.0


class Client:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.seen: list[dict[str, Any]] = []  # every frame received, in order
        self._unread: list[dict[str, Any]] = []
        self.identity: StaffIdentity | None = None
        self.cookie: str | None = None
        self.token: str | None = None

    async def send(self, **frame: Any) -> None:
        await self.connection.send(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        await self.connection.send(data)

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        if self._unread:
            return self._unread.pop(0)
        raw = await asyncio.wait_for(self.connection.recv(), timeout)
        frame: dict[str, Any] = json.loads(raw)
        self.seen.append(frame)
        return frame

    async def expect(self, kind: str, /, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        """The next frame of this type with these field values; others stay unread."""
        skipped: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AssertionError(
                        f"no {kind} {fields or ''} within {timeout}s; got {skipped + self._unread}"
                    )
                frame = await self.recv(remaining)
                if frame["type"] == kind and all(frame.get(k) == v for k, v in fields.items()):
                    return frame
                skipped.append(frame)
        finally:
            self._unread[:0] = skipped

    async def expect_any(
        self, kinds: tuple[str, ...], /, timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        """The next frame of any of these types; others stay unread."""
        skipped: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AssertionError(f"none of {kinds} within {timeout}s; got {skipped}")
                frame = await self.recv(remaining)
                if frame["type"] in kinds:
                    return frame
                skipped.append(frame)
        finally:
            self._unread[:0] = skipped

    async def quiet(self, seconds: float = 0.3, most: float = 5.0) -> list[dict[str, Any]]:
        """Everything until `seconds` pass without a frame (at most `most` seconds)."""
        frames = list(self._unread)
        self._unread.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + most
        try:
            while loop.time() < deadline:
                frames.append(await self.recv(min(seconds, max(0.01, deadline - loop.time()))))
        except TimeoutError:
            pass
        return frames

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.seen if f["type"] == kind]

    async def close(self) -> None:
        await self.connection.close()


async def connect_child(ws_url: str, **hello: Any) -> Client:
    connection = await websockets.connect(f"{ws_url}/ws/child", compression=None)
    client = Client(connection)
    await client.send(type="hello", v=1, **hello)
    welcome = await client.expect("welcome")
    client.token = welcome["token"]
    return client


async def connect_staff(ws_url: str, cookie: str) -> Client:
    connection = await websockets.connect(
        f"{ws_url}/ws/staff",
        compression=None,
        max_queue=None,
        additional_headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
    )
    return Client(connection)
