"""The one-node broker: events go straight to this process's hub."""

from __future__ import annotations

import asyncio

from chat_server.brokers import Deliver, Event


class MemoryBroker:
    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        self._channels: set[str] = set()

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def publish(self, channel: str, event: Event) -> None:
        if self._deliver is not None and channel in self._channels:
            # Deliver on the next loop turn, as a network broker would: publishers never
            # run subscriber code inside their own transaction or handler.
            asyncio.get_running_loop().call_soon(self._deliver, channel, event)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._deliver = None
        self._channels.clear()
