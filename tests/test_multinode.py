"""Several nodes on one PostgreSQL and one Redis: chats across nodes, and the faults a
deployment meets (a node killed, Redis dropped or restarted, publishes lost).

Each fault test ends with the delivery checker (tests/checker.py), against what the
database stored: for every conversation, every party received every stored message exactly
once, in seq order, and every acknowledged message is stored at the seq its ack named.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed

from chat_server import accounts, runtime
from chat_server.brokers import Broker, Deliver, Event
from chat_server.settings import Settings
from tests import checker, conftest
from tests.clients import Client, connect_child, connect_staff
from tests.conftest import (
    PASSWORD,
    LiveServer,
    ServerProcess,
    server_process,
    start_server,
    stop_server,
)
from tests.test_brokers import RedisServer

pytestmark = pytest.mark.postgres

FAST = {
    "child_messages_per_second": 1000.0,
    "child_message_burst": 1000,
    "staff_messages_per_second": 1000.0,
    "staff_message_burst": 1000,
}
# Every node of a deployment shares the secret: children's tokens are hashed with it.
FAST_ENV = {f"ALO116_{k.upper()}": str(v) for k, v in FAST.items()} | {
    "ALO116_SWEEP_INTERVAL_S": "0.2",
    "ALO116_HEARTBEAT_INTERVAL_S": "0.5",
    "ALO116_SECRET_KEY": conftest.test_settings("sqlite://").secret_key,
}
SETTLE = 8.0  # bound on how long a lost event may take to be filled in


@pytest.fixture
def throwaway_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def nodes() -> AsyncIterator[Callable[..., Any]]:
    """In-process nodes sharing this test's loop; all stopped at the end."""
    started: list[LiveServer] = []

    async def start(database_url: str, redis: str, **overrides: Any) -> LiveServer:
        settings = conftest.test_settings(database_url, redis_url=redis, **(FAST | overrides))
        node = await start_server(settings)
        started.append(node)
        return node

    yield start
    for node in reversed(started):
        await stop_server(node)


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    running: list[ServerProcess] = []
    yield running
    for process in running:
        process.stop()


# --- the delivery checker ------------------------------------------------------------------


@dataclass
class Party:
    """One side of a conversation, across all the connections it has had."""

    name: str
    conversation_id: str
    connections: list[Client] = field(default_factory=list)

    def frames(self, kind: str) -> list[dict[str, Any]]:
        return [
            f
            for c in self.connections
            for f in c.seen
            if f["type"] == kind
            and f.get("conversation_id", self.conversation_id) == self.conversation_id
        ]

    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames("msg")]

    def in_order(self) -> int:
        """The highest seq up to which nothing is missing: what a page resumes from."""
        return checker.in_order(self.seqs())

    def acks(self) -> dict[str, int]:
        return {f["client_id"]: f["seq"] for f in self.frames("ack")}

    def checked(self, *, complete: bool = True) -> checker.Party:
        """As tests/checker.py reads it. These pages resume each new connection from
        what they held in order (`in_order`) when they opened it, and a closed socket
        receives nothing more, so that is worked out again here."""
        connections: list[checker.Connection] = []
        held: set[int] = set()
        for client in self.connections:
            connection = checker.Connection.of(
                client, self.conversation_id, resumed_from=checker.in_order(held)
            )
            connections.append(connection)
            held |= {f["seq"] for f in connection.frames}
        return checker.Party(self.name, connections, complete)


async def catch_up(party: Party, last: int, timeout: float = SETTLE) -> None:
    """Read the party's live connection until it holds `last`, or the bound passes."""
    client = party.connections[-1]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while max(party.seqs(), default=0) < last and loop.time() < deadline:
        with contextlib.suppress(TimeoutError):
            await client.recv(min(0.5, max(0.01, deadline - loop.time())))


async def check_delivery(
    database_url: str,
    *,
    child: Party,
    staff: list[Party],
    left: list[Party] = (),  # type: ignore[assignment]
) -> int:
    """The delivery contract (tests/checker.py) against what the database stored: the
    parties still there hold every message, those that left a prefix. The last seq."""
    rows = await checker.stored(database_url, child.conversation_id)
    for party in (child, *staff):
        await catch_up(party, len(rows))
    cid = child.conversation_id
    acked = {
        "child": checker.acknowledged(child.connections, None, cid),
        "counsellor": checker.acknowledged(
            [c for p in (*staff, *left) for c in p.connections], None, cid
        ),
    }
    parties = [
        *(p.checked() for p in (child, *staff)),
        *(p.checked(complete=False) for p in left),
    ]
    problems = checker.violations(acked, parties, rows=rows)
    assert problems == [], checker.describe(problems)
    return len(rows)


# --- helpers ---------------------------------------------------------------------------------


async def login(url: str, username: str) -> str:
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/api/login", json={"username": username, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return answer.cookies[accounts.SESSION_COOKIE]


async def counsellor_on(node_url: str, cookie: str) -> Client:
    client = await connect_staff(node_url.replace("http://", "ws://"), cookie)
    await client.expect("snapshot")
    await client.send(type="status", value="available")
    await client.expect("me", status="available")
    return client


async def chat_between(child: Client, counsellor: Client) -> tuple[Party, Party]:
    await child.send(type="start")
    await child.expect("state", status="queued")
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    await child.expect("state", status="active")
    return Party("child", cid, [child]), Party("counsellor", cid, [counsellor])


async def say(party: Party, n: int, *, tag: str, pause: float = 0.002) -> None:
    """Send n messages without waiting for acks; a closed socket ends the run quietly."""
    client = party.connections[-1]
    with contextlib.suppress(ConnectionClosed):
        for k in range(n):
            client_id = f"{tag}{k}"
            body = f"{party.name} {tag} {k}"
            if party.name == "child":
                await client.send(type="send", client_id=client_id, body=body)
            else:
                await client.send(
                    type="send",
                    conversation_id=party.conversation_id,
                    client_id=client_id,
                    body=body,
                )
            await asyncio.sleep(pause)


async def acks_for(party: Party, count: int, timeout: float = 5.0) -> None:
    client = party.connections[-1]
    try:
        async with asyncio.timeout(timeout):
            while len(party.acks()) < count:
                await client.recv()
    except TimeoutError:
        errors = party.frames("error")
        raise AssertionError(
            f"{party.name}: {len(party.acks())} of {count} acks; errors: {errors[-3:]}"
        ) from None


# --- chats across nodes ------------------------------------------------------------------------


async def test_a_child_on_one_node_chats_with_a_counsellor_on_another(
    pg_url: str, redis_url: str, nodes: Callable[..., Any]
) -> None:
    a: LiveServer = await nodes(pg_url, redis_url)
    b: LiveServer = await nodes(pg_url, redis_url)
    child = await a.child(lang="en")
    await child.send(type="start", pre_chat={"topic": "school"})
    await child.expect("state", status="queued")

    on_a = await a.counsellor(name="Ana")
    on_b = await b.counsellor(name="Besnik")
    # The queue is the same from both nodes.
    seen_a = (await on_a.expect("queue", timeout=3))["items"]
    seen_b = (await on_b.expect("queue", timeout=3))["items"]
    assert [i["conversation_id"] for i in seen_a] == [i["conversation_id"] for i in seen_b]
    assert len(seen_a) == 1

    await on_b.send(type="take")
    cid = (await on_b.expect("assigned"))["conversation_id"]
    assert (await child.expect("state", status="active"))["counsellor"] == {"name": "Besnik"}
    assert (await on_a.expect("queue", items=[]))["items"] == []  # gone from A's view too

    await child.send(type="send", client_id="c1", body="Përshëndetje")
    assert (await child.expect("ack", client_id="c1"))["seq"] == 1
    assert (await on_b.expect("msg", seq=1))["body"] == "Përshëndetje"
    await on_b.send(type="send", conversation_id=cid, client_id="k1", body="Si je?")
    assert (await child.expect("msg", seq=2))["body"] == "Si je?"
    await child.send(type="typing", on=True)
    assert (await on_b.expect("typing", conversation_id=cid))["on"] is True
    await a.record(on_b, cid)  # through node A's API: the record is the database's
    await on_b.send(type="end", conversation_id=cid)
    assert (await child.expect("ended"))["reason"] == "counsellor_ended"

    assert [f["seq"] for f in child.of_type("msg")] == [1, 2]
    assert [f["seq"] for f in on_b.of_type("msg")] == [1, 2]
    assert not on_a.of_type("msg")


# --- a node killed -------------------------------------------------------------------------------


async def test_a_child_whose_node_is_killed_resumes_on_another_losing_nothing(
    pg_url: str, redis_url: str, nodes: Callable[..., Any], processes: list[ServerProcess]
) -> None:
    doomed = server_process(pg_url, ALO116_REDIS_URL=redis_url, **FAST_ENV)
    processes.append(doomed)
    await asyncio.to_thread(doomed.start)
    survivor: LiveServer = await nodes(pg_url, redis_url)

    counsellor = await survivor.counsellor()
    child = await connect_child(doomed.url.replace("http://", "ws://"))
    token = child.token
    kid, adult = await chat_between(child, counsellor)

    # Both talk at once; the child's node dies while its messages are in flight.
    talk = asyncio.gather(say(kid, 60, tag="a", pause=0.005), say(adult, 30, tag="k"))
    with contextlib.suppress(ConnectionClosed):
        await acks_for(kid, 10)
    doomed.kill()
    await talk
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        while True:
            await child.recv(0.5)
    acked = kid.acks()
    assert 10 <= len(acked) < 60, "the node died mid-burst"

    # The page reconnects to the other node, resumes, and resends what has no ack yet.
    back = await connect_child(survivor.ws_url, token=token, last_seq=kid.in_order())
    kid.connections.append(back)
    survivor.clients.append(back)
    with contextlib.suppress(ConnectionClosed):
        for k in range(60):
            if f"a{k}" not in acked:
                await back.send(type="send", client_id=f"a{k}", body=f"child a {k}")
    await acks_for(kid, 60)
    await say(adult, 5, tag="after")
    await acks_for(adult, 35)

    last = await check_delivery(pg_url, child=kid, staff=[adult])
    assert last == 60 + 35


async def test_a_counsellor_on_a_killed_node_gives_the_chat_back_to_the_queue(
    pg_url: str, redis_url: str, nodes: Callable[..., Any], processes: list[ServerProcess]
) -> None:
    grace = 1.0

    home: LiveServer = await nodes(pg_url, redis_url, staff_grace_s=grace)
    doomed = server_process(
        pg_url, ALO116_REDIS_URL=redis_url, ALO116_STAFF_GRACE_S=str(grace), **FAST_ENV
    )
    processes.append(doomed)
    await asyncio.to_thread(doomed.start)
    staff, _cookie = await home.staff("counsellor", name="Ana")
    lost = await counsellor_on(doomed.url, await login(doomed.url, staff.username))
    child = await home.child()
    kid, first = await chat_between(child, lost)
    await say(kid, 5, tag="a")
    await say(first, 5, tag="k")
    await acks_for(kid, 5)
    await acks_for(first, 5)
    await catch_up(first, 10)

    doomed.kill()
    # Held for the grace period, then back at the front of the queue.
    await child.expect("state", status="queued", timeout=grace + 5)
    await say(kid, 3, tag="waiting")  # the child may still write while waiting
    await acks_for(kid, 8)

    second = await home.counsellor(name="Besnik")
    await second.send(type="take")
    assert (await second.expect("assigned"))["conversation_id"] == kid.conversation_id
    assert (await child.expect("state", status="active"))["counsellor"] == {"name": "Besnik"}
    again = Party("second counsellor", kid.conversation_id, [second])
    await say(again, 2, tag="r")
    await acks_for(again, 2)

    last = await check_delivery(pg_url, child=kid, staff=[again], left=[first])
    assert last == 5 + 5 + 3 + 2


# --- Redis dropped and restarted ---------------------------------------------------------------


async def test_chats_survive_redis_dropping_its_clients_and_restarting(
    pg_url: str, throwaway_redis: RedisServer, nodes: Callable[..., Any]
) -> None:
    a: LiveServer = await nodes(pg_url, throwaway_redis.url)
    b: LiveServer = await nodes(pg_url, throwaway_redis.url)
    kid, adult = await chat_between(await a.child(), await b.counsellor())
    await say(kid, 3, tag="a")
    await say(adult, 3, tag="k")
    await acks_for(kid, 3)

    admin = Redis.from_url(throwaway_redis.url)
    try:
        # Every subscriber connection dropped at once (a failover, a network blip).
        await admin.client_kill_filter(_type="pubsub")
        await say(kid, 3, tag="b")
        await say(adult, 3, tag="l")
        await acks_for(kid, 6)
        await acks_for(adult, 6)
    finally:
        await admin.aclose()

    # Redis itself dies: messages are still stored and acknowledged; delivery waits.
    throwaway_redis.kill()
    await say(kid, 3, tag="c")
    await say(adult, 3, tag="m")
    await acks_for(kid, 9)
    await acks_for(adult, 9)
    throwaway_redis.start()
    await _subscribers(throwaway_redis.url, "floor", 2)
    await say(kid, 2, tag="d")
    await acks_for(kid, 11)

    last = await check_delivery(pg_url, child=kid, staff=[adult])
    assert last == 11 + 9


async def _subscribers(url: str, channel: str, count: int, timeout: float = 10.0) -> None:
    """Wait until `count` nodes have resubscribed `channel` (Redis cannot signal it)."""
    client = Redis.from_url(url)
    try:
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(OSError, ConnectionError):
                    [(_name, n)] = await client.pubsub_numsub(channel)
                    if n >= count:
                        return
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


# --- publishes lost ----------------------------------------------------------------------------


class DroppingBroker:
    """A broker that loses a share of what it is asked to publish, as pub/sub may."""

    def __init__(self, inner: Broker, share: float, rng: random.Random) -> None:
        self.inner = inner
        self.share = 0.0  # nothing is lost until the chats are set up
        self.target = share
        self.rng = rng
        self.dropped = 0

    async def start(self, deliver: Deliver) -> None:
        await self.inner.start(deliver)

    async def publish(self, channel: str, event: Event) -> None:
        if self.rng.random() < self.share:
            self.dropped += 1
            return
        await self.inner.publish(channel, event)

    async def subscribe(self, channel: str) -> None:
        await self.inner.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self.inner.unsubscribe(channel)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


def drop_publishes(monkeypatch: pytest.MonkeyPatch, share: float) -> list[DroppingBroker]:
    """Every node started from now on will lose `share` of what it publishes (the same
    losses each run) once its broker's `share` is set to its `target`; the brokers."""
    rng = random.Random(116111)
    droppers: list[DroppingBroker] = []
    real = runtime.make_broker

    def dropping(settings: Settings) -> Broker:
        broker = DroppingBroker(real(settings), share, rng)
        droppers.append(broker)
        return broker

    monkeypatch.setattr(runtime, "make_broker", dropping)
    return droppers


async def test_lost_publishes_cost_latency_never_messages(
    pg_url: str, redis_url: str, nodes: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    droppers = drop_publishes(monkeypatch, 0.3)
    a: LiveServer = await nodes(pg_url, redis_url)
    b: LiveServer = await nodes(pg_url, redis_url)
    chats = [await chat_between(await a.child(), await b.counsellor(max_chats=1)) for _ in range(3)]
    for broker in droppers:
        broker.share = broker.target

    await asyncio.gather(
        *(say(kid, 20, tag="a") for kid, _ in chats),
        *(say(adult, 20, tag="k") for _, adult in chats),
    )
    for kid, adult in chats:
        await acks_for(kid, 20)
        await acks_for(adult, 20)
    assert sum(b.dropped for b in droppers) > 10, "the test lost nothing: it proves nothing"
    for kid, adult in chats:
        assert await check_delivery(pg_url, child=kid, staff=[adult]) == 40


# --- nginx in front ----------------------------------------------------------------------------

NGINX_CONF = """
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream alo116 {{
        server 127.0.0.1:{a} max_fails=1 fail_timeout=5s;
        server 127.0.0.1:{b} max_fails=1 fail_timeout=5s;
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /metrics {{ return 404; }}
        location /ws/ {{
            proxy_pass http://alo116;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_read_timeout 1h;
            proxy_buffering off;
        }}
        location / {{
            proxy_pass http://alo116;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"""


@pytest.fixture
def nginx_binary() -> str:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        message = "nginx is not installed (apt-get install nginx)"
        if conftest.IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return binary


async def test_a_chat_runs_through_nginx_in_front_of_two_nodes(
    pg_url: str,
    redis_url: str,
    nodes: Callable[..., Any],
    nginx_binary: str,
    tmp_path: Path,
) -> None:
    a: LiveServer = await nodes(pg_url, redis_url)
    b: LiveServer = await nodes(pg_url, redis_url)
    port = conftest.free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            dir=tmp_path, port=port, a=a.url.rsplit(":", 1)[1], b=b.url.rsplit(":", 1)[1]
        )
    )
    proxy = await asyncio.create_subprocess_exec(
        *(nginx_binary, "-c", str(conf), "-p", str(tmp_path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    front = f"http://127.0.0.1:{port}"
    ws_front = front.replace("http://", "ws://")
    try:
        async with httpx.AsyncClient(base_url=front) as http, asyncio.timeout(10):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            assert (await http.get("/metrics")).status_code == 404

        staff, _cookie = await a.staff("counsellor", name="Ana")
        counsellor = await counsellor_on(front, await login(front, staff.username))
        child = await connect_child(ws_front)
        kid, adult = await chat_between(child, counsellor)
        await say(kid, 3, tag="a")
        await say(adult, 3, tag="k")
        await acks_for(kid, 3)
        await acks_for(adult, 3)

        # The child's next connection lands wherever nginx sends it, and resumes.
        await child.close()
        back = await connect_child(ws_front, token=child.token, last_seq=kid.in_order())
        kid.connections.append(back)
        await say(kid, 2, tag="b")
        await acks_for(kid, 5)
        assert await check_delivery(pg_url, child=kid, staff=[adult]) == 8
        await back.close()
        await counsellor.close()
    finally:
        proxy.terminate()
        await asyncio.wait_for(proxy.wait(), timeout=10)
