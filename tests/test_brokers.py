"""Both brokers pass the same behaviour tests; Redis also survives losing its server.

Redis comes from ALO116_TEST_REDIS_URL or 127.0.0.1:6379. Without it a laptop run skips
the Redis cases loudly; with CI=true they fail instead. Restart tests never touch that
shared server: they start a throwaway `redis-server` of their own on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from chat_server.brokers import Broker, Event
from chat_server.brokers.memory import MemoryBroker
from chat_server.brokers.redis import RedisBroker
from tests.conftest import IN_CI, REDIS_URL, free_port, require_redis

WAIT = 3.0


class RedisServer:
    """A throwaway redis-server on loopback that a test may kill and restart at will."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            message = "redis-server is not installed"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()


class Inbox:
    """What one node's hub would receive, with a way to wait for it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Event]] = []
        self._changed = asyncio.Event()

    def __call__(self, channel: str, event: Event) -> None:
        self.events.append((channel, event))
        self._changed.set()

    def on(self, channel: str) -> list[Event]:
        return [e for c, e in self.events if c == channel]

    async def wait_for(self, check: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self._changed.clear()
                await self._changed.wait()


def make_broker(kind: str, url: str = REDIS_URL, **options: Any) -> Broker:
    if kind == "memory":
        return MemoryBroker()
    return RedisBroker(url, **options)


@pytest.fixture(params=["memory", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        require_redis()
    kind: str = request.param
    return kind


@pytest.fixture
async def node(kind: str) -> AsyncIterator[tuple[Broker, Inbox]]:
    broker, inbox = make_broker(kind), Inbox()
    await broker.start(inbox)
    try:
        yield broker, inbox
    finally:
        await broker.close()


def channel(family: str = "conv") -> str:
    return f"{family}:{uuid.uuid4()}"


# --- the same behaviour from both brokers ------------------------------------------------


async def test_events_reach_subscribed_channels_only(node: tuple[Broker, Inbox]) -> None:
    broker, inbox = node
    mine, other = channel(), channel()
    await broker.subscribe(mine)
    await broker.publish(other, {"type": "msg", "seq": 1})
    await broker.publish(mine, {"type": "msg", "seq": 1, "body": "Përshëndetje"})
    await inbox.wait_for(lambda: bool(inbox.on(mine)))
    await asyncio.sleep(0.05)
    assert inbox.events == [(mine, {"type": "msg", "seq": 1, "body": "Përshëndetje"})]


async def test_events_of_one_channel_arrive_in_publish_order(node: tuple[Broker, Inbox]) -> None:
    broker, inbox = node
    ch = channel()
    await broker.subscribe(ch)
    for seq in range(1, 201):
        await broker.publish(ch, {"type": "msg", "seq": seq})
    await inbox.wait_for(lambda: len(inbox.on(ch)) == 200)
    assert [e["seq"] for e in inbox.on(ch)] == list(range(1, 201))


async def test_an_unsubscribed_channel_gets_nothing_more(node: tuple[Broker, Inbox]) -> None:
    broker, inbox = node
    ch, marker = channel(), channel()
    await broker.subscribe(ch)
    await broker.subscribe(marker)
    await broker.publish(ch, {"type": "msg", "seq": 1})
    await inbox.wait_for(lambda: bool(inbox.on(ch)))
    await broker.unsubscribe(ch)
    await broker.publish(ch, {"type": "msg", "seq": 2})
    await broker.publish(marker, {"type": "done"})
    await inbox.wait_for(lambda: bool(inbox.on(marker)))
    assert [e["seq"] for e in inbox.on(ch)] == [1]


async def test_resubscribing_a_channel_delivers_again(node: tuple[Broker, Inbox]) -> None:
    broker, inbox = node
    ch = channel()
    await broker.subscribe(ch)
    await broker.unsubscribe(ch)
    await broker.subscribe(ch)
    await broker.publish(ch, {"type": "msg", "seq": 7})
    await inbox.wait_for(lambda: bool(inbox.on(ch)))
    assert inbox.on(ch) == [{"type": "msg", "seq": 7}]


async def test_ping_answers_when_reachable(node: tuple[Broker, Inbox]) -> None:
    broker, _inbox = node
    await broker.ping()


async def test_a_receiver_that_fails_does_not_stop_delivery(kind: str) -> None:
    inbox = Inbox()
    failed = False

    def deliver(ch: str, event: Event) -> None:
        nonlocal failed
        if event["seq"] == 1 and not failed:
            failed = True
            raise RuntimeError("a bug in one handler")
        inbox(ch, event)

    broker = make_broker(kind)
    await broker.start(deliver)
    try:
        ch = channel()
        await broker.subscribe(ch)
        if kind == "memory":
            # The in-process broker runs receivers in the loop: their errors go to the
            # loop's handler, not to the publisher, and the next event still arrives.
            asyncio.get_running_loop().set_exception_handler(lambda _loop, _ctx: None)
        await broker.publish(ch, {"type": "msg", "seq": 1})
        await broker.publish(ch, {"type": "msg", "seq": 2})
        await inbox.wait_for(lambda: bool(inbox.on(ch)))
        assert [e["seq"] for e in inbox.on(ch)] == [2]
    finally:
        await broker.close()


async def test_a_closed_broker_delivers_nothing(kind: str) -> None:
    inbox = Inbox()
    broker = make_broker(kind)
    await broker.start(inbox)
    ch = channel()
    await broker.subscribe(ch)
    await broker.close()
    await broker.publish(ch, {"type": "msg", "seq": 1})  # late publishes during shutdown
    await asyncio.sleep(0.1)
    assert inbox.events == []


# --- Redis across nodes and failures -------------------------------------------------------


@pytest.fixture
def shared_redis() -> str:
    require_redis()
    return REDIS_URL


async def test_an_event_published_on_one_node_reaches_every_subscribed_node(
    shared_redis: str,
) -> None:
    a, b, c = (RedisBroker(shared_redis) for _ in range(3))
    inboxes = [Inbox(), Inbox(), Inbox()]
    for broker, inbox in zip((a, b, c), inboxes, strict=True):
        await broker.start(inbox)
    try:
        ch = channel()
        await b.subscribe(ch)
        await c.subscribe(ch)
        await a.publish(ch, {"type": "msg", "seq": 1})
        await inboxes[1].wait_for(lambda: bool(inboxes[1].on(ch)))
        await inboxes[2].wait_for(lambda: bool(inboxes[2].on(ch)))
        await asyncio.sleep(0.05)
        assert inboxes[0].events == []  # A follows nobody there
    finally:
        for broker in (a, b, c):
            await broker.close()


async def test_a_killed_subscriber_connection_is_resubscribed(shared_redis: str) -> None:
    name = f"alo116-test-{uuid.uuid4().hex[:8]}"
    broker, inbox = RedisBroker(shared_redis, name=name), Inbox()
    await broker.start(inbox)
    admin = Redis.from_url(shared_redis)
    try:
        ch = channel()
        await broker.subscribe(ch)
        await broker.subscribe("floor")
        # Only this broker's own subscriber: other nodes on the shared server are untouched.
        for client in await admin.client_list(_type="pubsub"):
            if client["name"] == f"{name}-sub":
                await admin.client_kill_filter(_id=client["id"])
        await inbox.wait_for(lambda: bool(inbox.on("floor")))  # told to redo the queue view
        assert inbox.on("floor")[0]["reason"] == "broker_reconnected"
        await broker.publish(ch, {"type": "msg", "seq": 2})
        await inbox.wait_for(lambda: bool(inbox.on(ch)))
        assert inbox.on(ch) == [{"type": "msg", "seq": 2}]
    finally:
        await admin.aclose()
        await broker.close()


async def test_redis_restarting_costs_events_meanwhile_never_the_node(
    redis_server: RedisServer,
) -> None:
    broker = RedisBroker(redis_server.url, backoff=(0.02, 0.2), ping_interval=0.5)
    inbox = Inbox()
    await broker.start(inbox)
    try:
        before, during = channel(), channel()
        await broker.subscribe(before)
        await broker.publish(before, {"type": "msg", "seq": 1})
        await inbox.wait_for(lambda: bool(inbox.on(before)))

        redis_server.kill()
        with pytest.raises(RedisError):  # the hub logs this; the database has the change
            await broker.publish(before, {"type": "msg", "seq": 2})
        with pytest.raises(RedisError):
            await broker.ping()
        await broker.subscribe(during)  # remembered, sent when Redis is back
        await broker.unsubscribe("floor")

        redis_server.start()
        await _until(lambda: _answers(broker))
        await broker.publish(before, {"type": "msg", "seq": 3})
        await broker.publish(during, {"type": "msg", "seq": 1})
        await inbox.wait_for(lambda: bool(inbox.on(during)) and len(inbox.on(before)) == 2)
        assert [e["seq"] for e in inbox.on(before)] == [1, 3]
        assert broker.channels == {before, during}
    finally:
        await broker.close()


async def test_a_node_starts_while_redis_is_down_and_connects_later(
    redis_server: RedisServer,
) -> None:
    redis_server.kill()
    broker = RedisBroker(redis_server.url, timeout=0.2, backoff=(0.02, 0.2))
    inbox = Inbox()
    started = time.monotonic()
    await broker.start(inbox)
    try:
        assert time.monotonic() - started < 3, "start must not hang on a missing Redis"
        ch = channel()
        await broker.subscribe(ch)
        redis_server.start()
        await _until(lambda: _is_subscribed(redis_server.url, ch))
        await broker.publish(ch, {"type": "msg", "seq": 1})
        await inbox.wait_for(lambda: bool(inbox.on(ch)))
    finally:
        await broker.close()


async def _is_subscribed(url: str, ch: str) -> bool:
    client = Redis.from_url(url, decode_responses=True)
    try:
        with contextlib.suppress(RedisError):
            return ch in await client.pubsub_channels()
        return False
    finally:
        await client.aclose()


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Poll an outside system (here: Redis) that cannot signal us."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def _answers(broker: Broker) -> bool:
    try:
        await broker.ping()
    except RedisError:
        return False
    return True
