"""Faults a deployment meets, each ending with the delivery checker (tests/checker.py):
PostgreSQL stopped and restarted under a running server process, a phone too slow to
read its messages, and publishes lost between two nodes while children move between them.
The checker's own tests, proving it can fail, are in tests/test_checker.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from chat_server import accounts
from db.engine import create_engine, session_factory
from db.migrate import upgrade
from tests import checker, conftest
from tests.checker import Acked, Connection, Party, stored
from tests.clients import Client, connect_child, connect_staff
from tests.conftest import (
    IN_CI,
    PASSWORD,
    LiveServer,
    MakeLive,
    free_port,
    server_process,
    start_server,
    stop_server,
)
from tests.test_multinode import FAST as MULTINODE_FAST
from tests.test_multinode import drop_publishes

FAST_ENV = {
    "ALO116_CHILD_MESSAGES_PER_SECOND": "1000",
    "ALO116_CHILD_MESSAGE_BURST": "1000",
    "ALO116_STAFF_MESSAGES_PER_SECOND": "1000",
    "ALO116_STAFF_MESSAGE_BURST": "1000",
}
BACK_WITHIN = 10.0  # a send retried with backoff must succeed this soon after PostgreSQL is back


# --- PostgreSQL restarted mid-chat ------------------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own, to stop and start at will: the shared one
    on 5432 serves other test runs. Run as the `postgres` user, since initdb refuses root."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
            message = f"PostgreSQL binaries or runuser missing (looked in {PG_BIN})"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        self.dir = Path(tempfile.mkdtemp(prefix="alo116-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self._as_postgres(
            PG_BIN / "initdb",
            *("-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"),
        )

    def start(self) -> None:
        self._pg_ctl("start", *self._options())

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-m", mode)

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast", *self._options())

    def _options(self) -> tuple[object, ...]:
        # Its own socket directory and port; no fsync: the data is thrown away.
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        return ("-o", options, "-l", self.dir / "postgres.log")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def _pg_ctl(self, *args: object) -> None:
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-w", "-t", "30", *args)

    @staticmethod
    def _as_postgres(*command: object) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *map(str, command)],
            check=True,
            capture_output=True,
            timeout=60,
        )


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


async def _create_database(cluster: PrivatePostgres, name: str) -> str:
    admin = await asyncpg.connect(
        host="127.0.0.1", port=cluster.port, user="postgres", database="postgres"
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = cluster.url(name)
    await asyncio.to_thread(upgrade, url)
    return url


async def _create_counsellor(url: str, username: str) -> None:
    """In this process: `alo116 create-user` would cost a second interpreter start."""
    engine = create_engine(url)
    try:
        await accounts.create_user(
            session_factory(engine), username=username, password=PASSWORD, role="counsellor"
        )
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_postgresql_restart_mid_chat_refuses_sends_as_unavailable_and_loses_nothing(
    private_postgres: PrivatePostgres,
) -> None:
    url = await _create_database(private_postgres, "alo116")
    await _create_counsellor(url, "ana")
    server = server_process(url, **FAST_ENV)
    await asyncio.to_thread(server.start)
    try:
        ws_url = server.url.replace("http://", "ws://")
        counsellor = await _console(server.url, "ana")
        child = await connect_child(ws_url)
        await child.send(type="start")
        await child.expect("state", status="queued")
        await counsellor.send(type="take")
        cid = (await counsellor.expect("assigned"))["conversation_id"]
        await child.expect("state", status="active")
        kid, adult = _Side(child, None), _Side(counsellor, cid)
        for n in range(3):
            await kid.say(f"c{n}", f"Përshëndetje {n}")
            await adult.say(f"k{n}", f"Jam këtu {n}")

        await asyncio.to_thread(private_postgres.stop, "fast")
        # The database is gone: each send is refused as `unavailable`, on a socket that
        # stays open, and nothing is stored (the ack never comes).
        refused = [await kid.refused("c-down", "Je aty?"), await adult.refused("k-down", "Po")]
        for error in refused:
            assert error["code"] == "unavailable", error
        assert refused[1]["conversation_id"] == cid
        for side in (kid, adult):
            await side.client.send(type="ping")
            await side.client.expect("pong")

        await asyncio.to_thread(private_postgres.start)
        # Back: the same client_ids, retried with backoff, are stored, without restarting
        # the server. More than one try means the first send after the outage failed.
        tries = [await kid.retry("c-down", "Je aty?"), await adult.retry("k-down", "Po")]
        for n in range(3, 6):
            await kid.say(f"c{n}", f"Përshëndetje {n}")
            await adult.say(f"k{n}", f"Jam këtu {n}")
        # A quick restart nobody wrote through: every pooled connection is now dead.
        await asyncio.to_thread(private_postgres.restart)
        tries += [await kid.retry("c-after", "Faleminderit"), await adult.retry("k-after", "S'ka")]
        print(f"sends needed after each outage (child, counsellor, child, counsellor): {tries}")

        rows = await stored(url, cid)
        assert len(rows) == 16
        for side in (kid, adult):
            await _read_up_to(side.client, 16, cid if side is adult else None)
        problems = checker.violations(
            {"child": kid.acked(), "counsellor": adult.acked()},
            [
                Party("child", [Connection.of(child)]),
                Party("counsellor", [Connection.of(counsellor, cid)]),
            ],
            rows=rows,
        )
        assert problems == [], checker.describe(problems)
        assert {(r.sender, r.client_id) for r in rows} == {
            *(("child", c) for c in kid.bodies),
            *(("counsellor", k) for k in adult.bodies),
        }
    finally:
        await asyncio.to_thread(server.stop)


class _Side:
    """One party sending with client_ids, remembering what it sent.

    A side may have several connections: a child that reconnected, or a counsellor with
    several consoles open. It sends on the latest unless told `via` which.
    """

    def __init__(self, client: Client, conversation_id: str | None) -> None:
        self.clients = [client]
        self.conversation_id = conversation_id  # None for the child
        self.bodies: dict[str, str] = {}

    @property
    def client(self) -> Client:
        return self.clients[-1]

    async def send(self, client_id: str, body: str, via: Client | None = None) -> None:
        self.bodies[client_id] = body
        frame: dict[str, Any] = {"type": "send", "client_id": client_id, "body": body}
        if self.conversation_id is not None:
            frame["conversation_id"] = self.conversation_id
        # UTF-8 on the wire: escaped emoji would take three times the frame limit.
        await (via or self.client).send_raw(json.dumps(frame, ensure_ascii=False))

    async def answer(
        self, client_id: str, via: Client | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """The `ack` or `error` for this client_id. Frames read past stay in `seen`
        (the checker reads them there) but are not kept for `expect`."""
        client = via or self.client
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no ack or error for {client_id} within {timeout}s")
            frame = await client.recv(left)
            if frame["type"] in ("ack", "error") and frame.get("client_id") == client_id:
                return frame

    async def send_for_answer(
        self, client_id: str, body: str, via: Client | None = None
    ) -> dict[str, Any]:
        await self.send(client_id, body, via)
        return await self.answer(client_id, via)

    async def say(self, client_id: str, body: str, via: Client | None = None) -> int:
        frame = await self.send_for_answer(client_id, body, via)
        assert frame["type"] == "ack", frame
        seq: int = frame["seq"]
        return seq

    async def refused(self, client_id: str, body: str) -> dict[str, Any]:
        await self.send(client_id, body)
        try:
            frame = await self.answer(client_id)
        except ConnectionClosed as closed:
            raise AssertionError(f"the socket closed instead of refusing: {closed!r}") from None
        assert frame["type"] == "error", f"stored while the database was down: {frame}"
        return frame

    async def retry(self, client_id: str, body: str) -> int:
        """Resend until acknowledged, backing off; how many sends it took."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BACK_WITHIN
        pause, tries = 0.05, 0
        while True:
            tries += 1
            await self.send(client_id, body)
            frame = await self.answer(client_id)
            if frame["type"] == "ack":
                return tries
            assert frame["code"] == "unavailable", frame
            if loop.time() > deadline:
                raise AssertionError(f"{client_id} still {frame} {BACK_WITHIN}s after the restart")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    def acked(self) -> dict[str, Acked]:
        return checker.acknowledged(self.clients, self.bodies, self.conversation_id)


async def _console(url: str, username: str) -> Client:
    async with httpx.AsyncClient(base_url=url) as http:
        login = await http.post("/api/login", json={"username": username, "password": PASSWORD})
        assert login.status_code == 200, login.text
    console = await connect_staff(url.replace("http://", "ws://"), login.cookies["alo116_session"])
    await console.expect("snapshot")
    await console.send(type="status", value="available")
    await console.expect("me", status="available")
    return console


async def _read_up_to(
    client: Client, last: int, conversation_id: str | None, timeout: float = 10.0
) -> None:
    """Read until this connection holds a `msg` with seq `last` (or the bound passes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def held() -> int:
        return max((f["seq"] for f in Connection.of(client, conversation_id).frames), default=0)

    while held() < last and loop.time() < deadline:
        with contextlib.suppress(TimeoutError):
            await client.recv(min(0.5, max(0.01, deadline - loop.time())))


# --- a phone too slow to read ------------------------------------------------------------------

QUEUE = 32  # frames a connection may have waiting before it is closed as too slow
# The kernel buffers ~3 MB between the server and a phone that has stopped reading, and
# one console may send 60 frames at once, then 20 a second: taking turns, several
# consoles of the same counsellor fill the buffers in a second or two, not half a minute.
CONSOLES = 8
PER_CONSOLE = 40
MOST = 2000  # bound on the messages it may take
OVERFLOW = "outbound queue full, closing child connection"


async def _slow_child(ws_url: str) -> Client:
    """A child whose phone reads a few KiB at a time, and only when the test says so:
    a tiny receive buffer, and a client library that stops reading after two frames."""
    host, port = ws_url.removeprefix("ws://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    connection = await websockets.connect(
        f"{ws_url}/ws/child", sock=sock, compression=None, max_queue=2
    )
    return Client(connection)


@dataclass
class _SlowChat:
    """A chat whose child stopped reading until its queue overflowed."""

    child: Client
    kid: _Side
    adult: _Side  # the counsellor, with CONSOLES consoles
    conversation_id: str


async def _small_queues(make_live: MakeLive) -> LiveServer:
    """A server whose connections may hold QUEUE frames, and a counsellor who may write
    as fast as the test likes."""
    return await make_live(
        outbound_queue_size=QUEUE,
        staff_messages_per_second=10_000.0,
        staff_message_burst=10_000,
    )


async def _overflow_a_slow_child(live: LiveServer, caplog: pytest.LogCaptureFixture) -> _SlowChat:
    caplog.set_level(logging.WARNING, logger="chat_server.connection")
    counsellor = await live.counsellor()
    child = await _slow_child(live.ws_url)
    live.clients.append(child)
    await child.send(type="hello", v=1)
    child.token = (await child.expect("welcome"))["token"]
    await child.send(type="start")
    await child.expect("state", status="queued")
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    await child.expect("state", status="active")
    kid, adult = _Side(child, None), _Side(counsellor, cid)
    assert counsellor.cookie is not None
    for _ in range(CONSOLES - 1):
        console = await live.staff_client(counsellor.cookie)
        await console.expect("snapshot")
        # As the console does for every chat in its snapshot (docs/protocol.md); the pong
        # comes after the (empty) replay, so the flood below never meets it.
        await console.send(type="resume", conversation_id=cid, last_seq=0)
        await console.send(type="ping")
        await console.expect("pong")
        adult.clients.append(console)
    await kid.say("c0", "A më dëgjon?")

    # The child stops reading; the counsellor writes long messages (2000 characters, 8 KB
    # of UTF-8 each) until the child's queue overflows, one at a time, moving to the next
    # console before this one's frame allowance runs out (or, if it does, when refused).
    consoles = itertools.cycle(adult.clients)
    via = next(consoles)
    for n in range(MOST):
        if _overflowed(caplog):
            break
        if n % PER_CONSOLE == 0:
            via = next(consoles)
            # The consoles keep reading, as a console does: only the phone is slow.
            for console in adult.clients:
                await _read_what_arrived(console)
        client_id, body = f"k{n}", f"{n:05d} " + "😀" * 1994
        while (frame := await adult.send_for_answer(client_id, body, via))["type"] != "ack":
            assert frame["code"] == "rate_limited", frame
            via = next(consoles)
    assert _overflowed(caplog), f"{MOST} messages of 8 KB did not fill the child's buffers"
    return _SlowChat(child, kid, adult, cid)


async def test_a_child_too_slow_to_read_is_closed_and_resumes_missing_nothing(
    make_live: MakeLive, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    live = await _small_queues(make_live)
    chat = await _overflow_a_slow_child(live, caplog)
    child, kid, adult, cid = chat.child, chat.kid, chat.adult, chat.conversation_id
    for n in range(MOST, MOST + 3):  # and a few more, after the close
        await adult.say(f"k{n}", f"after the close {n}")
    last = 1 + len(adult.bodies)

    # The phone reads again: what reached its buffers, then the close, 1013.
    with contextlib.suppress(ConnectionClosed):
        while True:
            await child.recv()
    assert child.connection.close_code == 1013, child.connection.close_reason
    assert child.connection.close_reason == "too slow; reconnect and resume"
    first = Connection.of(child)
    held = max((f["seq"] for f in first.frames), default=0)
    assert held < last, "the close lost nothing only because it came after everything"

    again = await live.child(token=child.token, last_seq=held)
    kid.clients.append(again)
    await _read_up_to(again, last, None)
    await kid.say("c1", "Tani po")

    # The counsellor was never held up: every console is open, had no refusal, and got
    # every message once, in order.
    for n, console in enumerate(adult.clients, start=1):
        await _read_up_to(console, last + 1, cid)
        errors = [f for f in console.of_type("error") if f["code"] != "rate_limited"]
        assert not errors, f"console {n}: {errors[:3]}"
        await console.send(type="ping")
        await console.expect("pong")
    rows = await stored(database_url, cid)
    assert len(rows) == last + 1
    problems = checker.violations(
        {"child": kid.acked(), "counsellor": adult.acked()},
        [
            Party("child", [first, Connection.of(again, resumed_from=held)]),
            *(
                Party(f"counsellor's console {n}", [Connection.of(console, cid)])
                for n, console in enumerate(adult.clients, start=1)
            ),
        ],
        rows=rows,
    )
    assert problems == [], checker.describe(problems)
    print(f"overflow after {len(adult.bodies) - 3} messages of 8 KB; the phone had seq {held}")


RELEASED_WITHIN = 5.0  # a socket the server gave up on is let go this soon


# About sockets, not storage: once is enough.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_child_that_never_reads_again_is_let_go_after_the_overflow(
    make_live: MakeLive, caplog: pytest.LogCaptureFixture
) -> None:
    chat = await _overflow_a_slow_child(await _small_queues(make_live), caplog)
    started = time.monotonic()
    try:
        # The phone is frozen, its TCP stack alive (a tab in the background): the server
        # has closed this connection (1013), so its consoles hear that the child is gone.
        await chat.adult.clients[0].expect(
            "presence",
            timeout=RELEASED_WITHIN,
            conversation_id=chat.conversation_id,
            child="offline",
        )
    except TimeoutError:
        raise AssertionError(
            f"the child still counts as online {time.monotonic() - started:.1f}s "
            "after its queue overflowed"
        ) from None
    finally:
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            while True:  # read, so that the socket can close and the server stop
                await chat.child.recv(2)


async def _read_what_arrived(client: Client) -> None:
    with contextlib.suppress(TimeoutError):
        while True:
            await client.recv(0.005)


def _overflowed(caplog: pytest.LogCaptureFixture) -> bool:
    return any(OVERFLOW in record.getMessage() for record in caplog.records)


# --- publishes lost between nodes while children move between them ----------------------------


@pytest.mark.postgres
async def test_lost_publishes_cost_nothing_to_children_moving_node_or_to_a_monitor(
    pg_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tests/test_multinode.py loses 30% of publishes under three steady chats; here each
    child also drops its socket and resumes on the other node mid-chat, and a supervisor
    monitors every chat, so the checker sees resumes and a third party under loss."""
    droppers = drop_publishes(monkeypatch, 0.3)
    settings = conftest.test_settings(pg_url, redis_url=redis_url, **MULTINODE_FAST)
    a = await start_server(settings)
    b = await start_server(settings)
    try:
        _staff, cookie = await a.staff("supervisor")
        supervisor = await a.staff_client(cookie)
        await supervisor.expect("snapshot")
        # One counsellor with a console per chat: every console follows all three.
        counsellor = await b.counsellor(max_chats=3)
        assert counsellor.cookie is not None
        consoles = [counsellor, *[await b.staff_client(counsellor.cookie) for _ in range(2)]]
        for console in consoles[1:]:
            await console.expect("snapshot")
        chats: list[tuple[_Side, _Side]] = []
        for console in consoles:
            child = await a.child()
            await child.send(type="start")
            await child.expect("state", status="queued")
            await counsellor.send(type="take")
            cid = (await counsellor.expect("assigned"))["conversation_id"]
            await child.expect("state", status="active")
            await supervisor.send(type="monitor", conversation_id=cid, on=True)
            await supervisor.expect("monitoring", conversation_id=cid)
            chats.append((_Side(child, None), _Side(console, cid)))
        for broker in droppers:
            broker.share = broker.target

        async def child_talks(kid: _Side) -> int:
            for n in range(10):
                await kid.say(f"a{n}", f"fëmija a {n}")
            await kid.client.close()
            held = _in_order(Connection.of(kid.client))
            kid.clients.append(await b.child(token=kid.client.token, last_seq=held))
            for n in range(10):
                await kid.say(f"b{n}", f"fëmija b {n}")
            return held

        async def counsellor_talks(adult: _Side) -> None:
            for n in range(20):
                await adult.say(f"k{n}", f"këshilltarja {n}")

        resumed, _ = await asyncio.gather(
            asyncio.gather(*(child_talks(kid) for kid, _ in chats)),
            asyncio.gather(*(counsellor_talks(adult) for _, adult in chats)),
        )
        assert sum(d.dropped for d in droppers) > 10, "the test lost nothing: it proves nothing"

        for (kid, adult), held in zip(chats, resumed, strict=True):
            cid = adult.conversation_id
            assert cid is not None
            rows = await stored(pg_url, cid)
            last = len(rows)
            await _read_up_to(kid.client, last, None)
            for console in (*consoles, supervisor):
                await _read_up_to(console, last, cid)
            problems = checker.violations(
                {"child": kid.acked(), "counsellor": adult.acked()},
                [
                    Party(
                        "child",
                        [
                            Connection.of(kid.clients[0]),
                            Connection.of(kid.client, resumed_from=held),
                        ],
                    ),
                    *(
                        Party(f"console {n}", [Connection.of(console, cid)])
                        for n, console in enumerate(consoles, start=1)
                    ),
                    Party("supervisor", [Connection.of(supervisor, cid)]),
                ],
                rows=rows,
            )
            assert problems == [], checker.describe(problems)
            assert last == 40
    finally:
        await stop_server(b)
        await stop_server(a)


def _in_order(connection: Connection) -> int:
    """The highest seq up to which the connection holds everything: what a page resumes from."""
    return checker.in_order((f["seq"] for f in connection.frames), connection.resumed_from)
