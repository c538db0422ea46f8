"""This node's connections and the channels they follow, joined to the broker.

Channels:
    conv:<id>   everything that happens in one conversation
    user:<id>   events for every open console of one staff member
    floor       "something about the queue or staffing changed"
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable

from chat_server.brokers import Broker, Event
from chat_server.connection import Connection

log = logging.getLogger(__name__)

FLOOR = "floor"


def conv_channel(conversation_id: uuid.UUID) -> str:
    return f"conv:{conversation_id}"


def user_channel(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


class Hub:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._members: defaultdict[str, set[Connection]] = defaultdict(set)
        self._joined: defaultdict[Connection, set[str]] = defaultdict(set)
        # Channel events the node reacts to itself (e.g. recomputing the queue view).
        self._listeners: dict[str, Callable[[Event], None]] = {}
        self._interceptors: list[Callable[[Connection, str, Event], None]] = []

    async def start(self) -> None:
        """Connect to the broker; channels with a listener are followed for good."""
        await self.broker.start(self._deliver)
        for channel in {FLOOR, *self._listeners}:
            await self.broker.subscribe(channel)

    async def publish(self, channel: str, event: Event) -> None:
        try:
            await self.broker.publish(channel, event)
        except Exception:
            # The database already holds the change; clients catch up by seq or resync.
            log.warning("publish to %s failed", channel.split(":")[0], exc_info=True)

    def listen(self, channel: str, handler: Callable[[Event], None]) -> None:
        """Call `handler` for every event on `channel` (register before `start`)."""
        self._listeners[channel] = handler

    def intercept(self, hook: Callable[[Connection, str, Event], None]) -> None:
        """Run `hook` for each event before it reaches a connection (e.g. to join a chat)."""
        self._interceptors.append(hook)

    async def join(self, connection: Connection, channel: str) -> None:
        if not self._members[channel]:
            await self.broker.subscribe(channel)
        self._members[channel].add(connection)
        self._joined[connection].add(channel)

    async def leave(self, connection: Connection, channel: str) -> None:
        members = self._members.get(channel)
        if members is None:
            return
        members.discard(connection)
        joined = self._joined.get(connection)
        if joined is not None:
            joined.discard(channel)
            if not joined:
                del self._joined[connection]
        if not members:
            del self._members[channel]
            if channel != FLOOR and channel not in self._listeners:
                await self.broker.unsubscribe(channel)

    async def leave_all(self, connection: Connection) -> None:
        for channel in list(self._joined.pop(connection, ())):
            await self.leave(connection, channel)

    def members(self, channel: str) -> set[Connection]:
        return self._members.get(channel, set())

    def connections(self, kind: str) -> list[Connection]:
        return [c for c in self._joined if c.kind == kind]

    def local_conversations(self) -> set[uuid.UUID]:
        return {uuid.UUID(ch[5:]) for ch in self._members if ch.startswith("conv:")}

    def local_children(self) -> set[uuid.UUID]:
        """Conversations whose child is connected to this node."""
        return {
            uuid.UUID(ch[5:])
            for ch, members in self._members.items()
            if ch.startswith("conv:") and any(c.kind == "child" for c in members)
        }

    def local_staff(self) -> set[uuid.UUID]:
        return {c.user_id for c in self._joined if c.kind == "staff" and c.user_id is not None}

    def _deliver(self, channel: str, event: Event) -> None:
        listener = self._listeners.get(channel)
        if listener is not None:
            listener(event)
        for connection in list(self._members.get(channel, ())):
            for hook in self._interceptors:
                hook(connection, channel, event)
            connection.push(event)


class Coalesced:
    """A trigger that runs `work` at once, or once more later if it is running or ended
    less than `interval` seconds ago: the first change after a quiet spell is handled at
    once, a burst costs one run per interval (however slow the runs), and the last run
    always sees the latest state."""

    def __init__(self, work: Callable[[], Awaitable[None]], *, interval: float = 0.0) -> None:
        self._work = work
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        # Triggered while a run was pending or under way: run once more.
        self._again = False
        # When the last run ended (loop time): the next waits `interval` from there.
        self._ended = -math.inf

    def __call__(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def cancel(self) -> None:
        """Drop a pending run (at shutdown)."""
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self._ended + self._interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._again = False
            try:
                await self._work()
            except Exception:
                log.warning("coalesced work failed", exc_info=True)
            self._ended = loop.time()
            if not self._again:
                return


def coalesce(work: Callable[[], Awaitable[None]], *, interval: float = 0.0) -> Coalesced:
    """See `Coalesced`; with no interval, a burst costs at most two runs."""
    return Coalesced(work, interval=interval)
