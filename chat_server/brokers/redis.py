"""The many-node broker: Redis pub/sub through redis-py's asyncio client.

Each node holds one subscriber connection for the channels its local clients follow,
and a small pool for publishing. Redis may restart or drop the node at any moment: the
listener reconnects with backoff and resubscribes every channel the node still wants.
Events published meanwhile are lost, which the delivery contract tolerates: writers
fill gaps from the database, and the heartbeat reveals a lost last message.

Logs name channel families ("conv", "user", "floor"), never ids or event bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat_server.brokers import Deliver, Event

log = logging.getLogger(__name__)

# Sent on the subscriber connection when it has been quiet; its echo proves it alive.
PING_PAYLOAD = "alo116"
# Delivered on the floor channel after a reconnect: queue views lost meanwhile are redone.
RECONNECTED: Event = {"type": "queue_changed", "reason": "broker_reconnected"}


class RedisBroker:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 1.0,
        ping_interval: float = 5.0,
        backoff: tuple[float, float] = (0.05, 5.0),
        name: str = "alo116",
    ) -> None:
        self._timeout = timeout
        self._ping_interval = ping_interval
        self._backoff = backoff
        # Publishing retries twice on a broken connection (a restarted Redis, a killed
        # client): a repeated event is harmless, receivers drop a seq they already sent.
        self._publisher: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            client_name=f"{name}-pub",
        )
        # The subscriber never retries by itself: the listener owns reconnecting, so
        # that every channel is resubscribed once, in one place.
        self._subscriber: Redis = Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            client_name=f"{name}-sub",
        )
        self._deliver: Deliver | None = None
        # Channels this node wants, kept across reconnects; the source of truth.
        self._channels: set[str] = set()
        # The live subscriber connection, or None while Redis is out of reach.
        self._pubsub: PubSub | None = None
        # SUBSCRIBE and UNSUBSCRIBE go out in the order they were asked for.
        self._commands = asyncio.Lock()
        # Subscriptions waiting for Redis to confirm them, so that `subscribe` returns
        # only once a publish from any node is sure to reach us.
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        # Failures by operation, read by the metrics endpoint.
        self.errors: dict[str, int] = {"publish": 0, "subscribe": 0, "subscriber_lost": 0}

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._listener = asyncio.create_task(self._listen(), name="redis-listener")
        try:
            await asyncio.wait_for(self._connected.wait(), timeout=self._timeout * 5)
        except TimeoutError:
            # Serve anyway: messages are stored and acknowledged, and live delivery starts
            # once the listener gets through (clients fill the gap from the database).
            log.warning("redis unreachable at start; retrying in the background")

    async def publish(self, channel: str, event: Event) -> None:
        if self._closed:
            return  # a late event while the node shuts down: nobody here is listening
        data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        try:
            await self._publisher.publish(channel, data)
        except Exception:
            self.errors["publish"] += 1
            raise

    async def subscribe(self, channel: str) -> None:
        async with self._commands:
            self._channels.add(channel)
            pubsub = self._pubsub
            if pubsub is None:
                return  # the listener subscribes it when Redis is back
            waiter = self._confirmations.get(channel)
            if waiter is None or waiter.done():
                waiter = asyncio.get_running_loop().create_future()
                self._confirmations[channel] = waiter
            try:
                await pubsub.subscribe(channel)
            except Exception as exc:
                self.errors["subscribe"] += 1
                self._confirmations.pop(channel, None)
                log.warning("subscribe to %s failed: %r", _family(channel), type(exc).__name__)
                return
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout=self._timeout)
        except TimeoutError:
            if self._confirmations.get(channel) is waiter:
                del self._confirmations[channel]
            log.warning("redis did not confirm a subscription to %s in time", _family(channel))

    async def unsubscribe(self, channel: str) -> None:
        async with self._commands:
            self._channels.discard(channel)
            pubsub = self._pubsub
            if pubsub is None:
                return
            try:
                await pubsub.unsubscribe(channel)
            except Exception as exc:
                # The connection is going; the listener resubscribes without this one.
                log.info("unsubscribe from %s failed: %r", _family(channel), type(exc).__name__)

    async def ping(self) -> None:
        if self._listener is not None and self._pubsub is None:
            raise RedisConnectionError("the subscriber connection to redis is down")
        await self._publisher.ping()

    async def close(self) -> None:
        self._closed = True
        self._deliver = None
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        for waiter in self._confirmations.values():
            waiter.cancel()
        self._confirmations.clear()
        self._channels.clear()
        await self._publisher.aclose()
        await self._subscriber.aclose()

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._channels)

    # --- the listener ---------------------------------------------------------------------

    async def _listen(self) -> None:
        """Forever: connect, subscribe everything wanted, read; on any failure, back off."""
        delay = self._backoff[0]
        reconnecting = False
        while True:
            pubsub = self._subscriber.pubsub()
            try:
                await pubsub.connect()  # type: ignore[no-untyped-call]
                async with self._commands:
                    # Published first, then subscribed: a `subscribe` racing with this
                    # either lands in the set read here or sends its own SUBSCRIBE.
                    self._pubsub = pubsub
                    if self._channels:
                        await pubsub.subscribe(*self._channels)
                self._connected.set()
                if reconnecting:
                    log.info("redis reconnected; resubscribed %d channels", len(self._channels))
                    self._hand_over("floor", RECONNECTED)
                delay = self._backoff[0]
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors["subscriber_lost"] += 1
                log.warning(
                    "redis subscriber connection lost (%s); reconnecting in %.2fs",
                    type(exc).__name__,
                    delay,
                )
            finally:
                self._pubsub = None
                self._connected.clear()
                with contextlib.suppress(Exception):
                    await asyncio.shield(pubsub.aclose())  # type: ignore[no-untyped-call]
            reconnecting = True
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self._backoff[1])

    async def _read(self, pubsub: PubSub) -> None:
        """Hand over every event until the connection fails or falls silent."""
        loop = asyncio.get_running_loop()
        heard = loop.time()
        while True:
            message = await pubsub.get_message(timeout=self._ping_interval)
            if message is not None:
                heard = loop.time()
                self._handle(message)
                continue
            if loop.time() - heard > 2.5 * self._ping_interval:
                raise RedisConnectionError("no answer to ping")
            async with self._commands:
                await pubsub.ping(PING_PAYLOAD)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "pong":
            return
        channel = _text(message["channel"])
        if kind == "subscribe":
            waiter = self._confirmations.pop(channel, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        if kind != "message" or channel not in self._channels:
            return  # confirmations of unsubscribes, and stragglers after one
        try:
            event = json.loads(message["data"])
        except ValueError:
            log.warning("dropped an undecodable event on %s", _family(channel))
            return
        self._hand_over(channel, event)

    def _hand_over(self, channel: str, event: Event) -> None:
        if self._deliver is None:
            return
        try:
            self._deliver(channel, event)
        except Exception:
            # One bad event must not end the listener for every client of this node.
            log.exception("delivering an event on %s failed", _family(channel))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _family(channel: str) -> str:
    return channel.split(":", 1)[0]
