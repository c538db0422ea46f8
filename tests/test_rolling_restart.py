"""A rolling restart under load: two nodes behind no balancer, each restarted in turn
with SIGTERM while children and counsellors on both keep writing.

What a deployment relies on: a node told to stop closes every socket with 1012, stores
what it was handed before it exits (within its bound, exit status 0), and its clients
reconnect to the other node, resume by seq and resend what had no ack. The checker of
tests/test_multinode.py then holds for every conversation: every acknowledged message
reached every party exactly once, in seq order, and nothing was stored twice. And the
stopping node does not report its children gone: their chats wait for them elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from db.engine import create_engine
from db.models import Conversation
from tests.clients import Client, connect_child
from tests.conftest import LiveServer, ServerProcess, server_process
from tests.test_multinode import (
    FAST_ENV,
    Party,
    chat_between,
    check_delivery,
    counsellor_on,
    login,
    nodes,  # noqa: F401 - a fixture
    processes,  # noqa: F401 - a fixture
)

pytestmark = pytest.mark.postgres

SHUTDOWN_BOUND_S = 12.0  # uvicorn's graceful timeout (10 s) and a little


@dataclass
class Speaker:
    """One party writing steadily; when its node goes away it moves to the other one."""

    party: Party
    urls: Callable[[], list[str]]
    cookie: str | None = None
    sent: list[str] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)

    @property
    def is_child(self) -> bool:
        return self.party.name.startswith("child")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            client = self.party.connections[-1]
            reader = asyncio.create_task(_read_until_closed(client))
            try:
                while not stop.is_set() and not reader.done():
                    await self._send(client, f"{self.party.name}-{len(self.sent)}")
                    await asyncio.sleep(0.07)  # under the 20 frames/s per socket
            except ConnectionClosed:
                pass
            if stop.is_set():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                return
            with contextlib.suppress(ConnectionClosed):
                await reader
            self.closes.append(client.connection.close_code)
            await self._reconnect()

    async def _send(self, client: Client, client_id: str, *, again: bool = False) -> None:
        frame: dict[str, Any] = {
            "type": "send",
            "client_id": client_id,
            "body": f"body {client_id}",
        }
        if not self.is_child:
            frame["conversation_id"] = self.party.conversation_id
        if not again:
            self.sent.append(client_id)
        await client.send(**frame)

    async def _reconnect(self) -> None:
        """Another node, resumed from the last seq held in order; unacked resent."""
        deadline = time.monotonic() + 20
        while True:
            for url in self.urls():
                try:
                    client = await self._connect(url)
                except (OSError, ConnectionClosed, AssertionError, TimeoutError):
                    continue
                self.party.connections.append(client)
                acked = self.party.acks()
                for client_id in self.sent:
                    if client_id not in acked:
                        await self._send(client, client_id, again=True)
                return
            assert time.monotonic() < deadline, f"{self.party.name} found no node for 20 s"
            await asyncio.sleep(0.2)

    async def _connect(self, url: str) -> Client:
        ws = url.replace("http://", "ws://")
        if self.is_child:
            token = self.party.connections[0].token
            return await connect_child(ws, token=token, last_seq=self.party.in_order())
        assert self.cookie is not None
        client = await counsellor_on(url, self.cookie)
        await client.send(
            type="resume",
            conversation_id=self.party.conversation_id,
            last_seq=self.party.in_order(),
        )
        return client

    async def settle(self) -> None:
        """Resend until every message has its ack (the run is over: nothing new)."""
        client = self.party.connections[-1]
        deadline = time.monotonic() + 15
        while set(self.sent) - set(self.party.acks()):
            assert time.monotonic() < deadline, (
                f"{self.party.name}: {len(set(self.sent) - set(self.party.acks()))} never acked"
            )
            for client_id in self.sent:
                if client_id not in self.party.acks():
                    await self._send(client, client_id, again=True)
            with contextlib.suppress(TimeoutError):
                while True:
                    await client.recv(0.5)


async def _read_until_closed(client: Client) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await client.recv(timeout=3600)


def terminate(process: ServerProcess) -> float:
    """SIGTERM; how long the node took to go. It must have gone through the app's shutdown
    (uvicorn then re-raises the signal, so the status is -SIGTERM, which systemd counts as a
    clean stop)."""
    assert process.process is not None
    began = time.monotonic()
    process.process.send_signal(signal.SIGTERM)
    status = process.process.wait(timeout=SHUTDOWN_BOUND_S + 10)
    took = time.monotonic() - began
    process.process = None
    assert status in (0, -signal.SIGTERM), f"the node exited with {status}"
    assert "Application shutdown complete" in process.log.read_text(), "no orderly shutdown"
    return took


async def test_a_rolling_restart_under_load_loses_nothing(
    pg_url: str,
    redis_url: str,
    processes: list[ServerProcess],  # noqa: F811 - the fixture imported above
) -> None:
    env = FAST_ENV | {"ALO116_REDIS_URL": redis_url, "ALO116_LOG_LEVEL": "info"}
    a, b = server_process(pg_url, **env), server_process(pg_url, **env)
    processes.extend([a, b])
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
    a.create_user("ana", "counsellor", "Ana")
    a.create_user("besnik", "counsellor", "Besnik")
    up = {a.url: True, b.url: True}

    def live_urls() -> list[str]:
        return [url for url, running in up.items() if running]

    # A child on each node, each with a counsellor on the other node.
    cookies = {name: await login(a.url, name) for name in ("ana", "besnik")}
    speakers: list[Speaker] = []
    for child_node, counsellor_node, name in ((a, b, "ana"), (b, a, "besnik")):
        child = await connect_child(child_node.url.replace("http://", "ws://"))
        adult = await counsellor_on(counsellor_node.url, cookies[name])
        kid, them = await chat_between(child, adult)
        kid.name, them.name = f"child-{name}", f"counsellor-{name}"
        speakers += [Speaker(kid, live_urls), Speaker(them, live_urls, cookie=cookies[name])]

    stop = asyncio.Event()
    talking = [asyncio.create_task(s.run(stop)) for s in speakers]
    await asyncio.sleep(1.0)
    for node in (a, b):
        up[node.url] = False
        took = await asyncio.to_thread(terminate, node)
        assert took < SHUTDOWN_BOUND_S, f"the node took {took:.1f} s to stop"
        node.log.write_bytes(b"")  # the next start's shutdown is checked afresh

        await asyncio.sleep(1.0)  # its clients write on through the other node
        await asyncio.to_thread(node.start)
        up[node.url] = True
        await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*talking)

    for speaker in speakers:
        await speaker.settle()
        # Every speaker lived through at least one restart of its node, told by 1012.
        assert 1012 in speaker.closes, f"{speaker.party.name} saw closes {speaker.closes}"
    try:
        for child_speaker, staff_speaker in (speakers[0:2], speakers[2:4]):
            last = await check_delivery(
                pg_url, child=child_speaker.party, staff=[staff_speaker.party]
            )
            assert last == len(child_speaker.sent) + len(staff_speaker.sent)
            assert last > 100, "the chats were busy through the restarts"
    finally:
        for speaker in speakers:
            for client in speaker.party.connections:
                await client.close()


async def stored_conversation(database_url: str, conversation_id: str) -> Conversation:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                Conversation.__table__.select().where(  # type: ignore[attr-defined]
                    Conversation.id == uuid.UUID(conversation_id)
                )
            )
            return Conversation(**result.one()._mapping)
    finally:
        await engine.dispose()


async def test_a_child_whose_node_stops_is_still_held_and_resumes_on_another(
    pg_url: str,
    redis_url: str,
    nodes: Callable[..., Any],  # noqa: F811
    processes: list[ServerProcess],  # noqa: F811
) -> None:
    """A node told to stop has not seen its children leave (they are on their way to
    another node), so it must not say they went: no `offline` to the counsellor, no
    leaving time stored that could land after the other node's `online`."""
    env = FAST_ENV | {"ALO116_REDIS_URL": redis_url, "ALO116_LOG_LEVEL": "info"}
    stopping = server_process(pg_url, **env)
    processes.append(stopping)
    await asyncio.to_thread(stopping.start)
    other: LiveServer = await nodes(pg_url, redis_url)
    counsellor = await other.counsellor(name="Besnik")
    child = await connect_child(stopping.url.replace("http://", "ws://"))
    kid, adult = await chat_between(child, counsellor)
    await child.send(type="send", client_id="c1", body="A je aty?")
    await child.expect("ack", client_id="c1")
    await counsellor.expect("msg", seq=1)

    await asyncio.to_thread(terminate, stopping)
    with contextlib.suppress(ConnectionClosed):
        while True:
            await child.recv()
    assert child.connection.close_code == 1012

    held = await stored_conversation(pg_url, kid.conversation_id)
    assert counsellor.identity is not None
    assert (held.status, held.assigned_user_id, held.child_left_at) == (
        "active",
        counsellor.identity.id,
        None,
    )
    await counsellor.quiet(0.5)  # what the stopping node published has crossed Redis
    assert [f["child"] for f in adult.frames("presence")] == []

    back = await connect_child(other.ws_url, token=child.token, last_seq=1)
    other.clients.append(back)
    welcome = back.of_type("welcome")[0]
    assert (welcome["token"], welcome["status"], welcome["last_seq"]) == (child.token, "active", 1)
    assert (await back.expect("state", status="active"))["counsellor"] == {"name": "Besnik"}
    assert [f["child"] for f in adult.frames("presence")] == []
    await counsellor.send(
        type="send", conversation_id=kid.conversation_id, client_id="k1", body="Po, jam këtu."
    )
    assert (await back.expect("msg", seq=2))["body"] == "Po, jam këtu."
