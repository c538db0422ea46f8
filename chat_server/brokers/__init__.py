"""Fan-out between nodes: a tiny channel-layer interface with interchangeable backends.

A broker only carries events; it may drop them. Receivers notice a gap in `seq` and read
the database, so a lost event costs latency, never data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

Event = dict[str, Any]
Deliver = Callable[[str, Event], None]


class Broker(Protocol):
    async def start(self, deliver: Deliver) -> None:
        """Begin delivering events of subscribed channels to `deliver` (channel, event)."""

    async def publish(self, channel: str, event: Event) -> None: ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    async def ping(self) -> None:
        """Raise if the broker cannot be reached."""

    async def close(self) -> None: ...
