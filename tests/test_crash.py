"""The server killed with SIGKILL mid-chat and restarted loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import httpx
from websockets.exceptions import ConnectionClosed

from chat_server import accounts
from db.engine import create_engine, session_factory
from tests import checker
from tests.checker import Connection, Party
from tests.clients import Client, connect_child, connect_staff
from tests.conftest import PASSWORD, server_process

BURST = 60


async def test_sigkill_mid_chat_loses_nothing_acknowledged(database_url: str) -> None:
    # A fast client: the burst must not be refused by the per-child rate limit.
    server = server_process(
        database_url, ALO116_CHILD_MESSAGE_BURST="1000", ALO116_CHILD_MESSAGES_PER_SECOND="1000"
    )
    await _create_counsellor(database_url, "ana", "Ana")
    await asyncio.to_thread(server.start)
    try:
        ws_url = server.url.replace("http://", "ws://")
        async with httpx.AsyncClient(base_url=server.url) as http:
            login = await http.post("/api/login", json={"username": "ana", "password": PASSWORD})
            cookie = login.cookies["alo116_session"]
        counsellor = await connect_staff(ws_url, cookie)
        await counsellor.expect("snapshot")
        child = await connect_child(ws_url)
        token = child.token
        await child.send(type="start")
        await child.expect("state")
        await counsellor.send(type="take")
        cid = (await counsellor.expect("assigned"))["conversation_id"]
        await counsellor.send(type="send", conversation_id=cid, client_id="k0", body="Jam këtu.")
        await counsellor.expect("ack", client_id="k0")

        # A burst of messages; the process dies while they are in flight.
        bodies = {f"c{n}": f"mesazhi {n}" for n in range(BURST)}

        async def burst() -> None:
            with contextlib.suppress(ConnectionClosed):
                for client_id, body in bodies.items():
                    await child.send(type="send", client_id=client_id, body=body)
                    await asyncio.sleep(0.005)

        sender = asyncio.create_task(burst())
        while len(child.of_type("ack")) < 10:
            with contextlib.suppress(TimeoutError):
                await child.recv(0.5)
        server.kill()
        await sender
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            while True:
                await child.recv(1)
        acked_before = len(child.of_type("ack"))
        assert 10 <= acked_before <= BURST  # at least ten were stored before the kill

        await asyncio.to_thread(server.start)
        back = await connect_child(ws_url, token=token, last_seq=0)
        # The page resends everything it holds without an ack, with the same client ids
        # (and the acknowledged ones too: each must be answered with its first seq).
        for client_id, body in bodies.items():
            await back.send(type="send", client_id=client_id, body=body)
        await _read_until(back, lambda: len(back.of_type("ack")) >= BURST)
        rows = await checker.stored(database_url, cid)
        assert len(rows) == BURST + 1
        await _read_until(back, lambda: any(f["seq"] == BURST + 1 for f in back.of_type("msg")))
        await back.quiet(0.5)  # a late repeat would arrive now

        # The page came back with last_seq 0, so it is a party of its own: the
        # connection before the kill only has to hold a prefix, as does the counsellor's.
        problems = checker.violations(
            {
                "child": checker.acknowledged([child, back], bodies),
                "counsellor": checker.acknowledged([counsellor], {"k0": "Jam këtu."}, cid),
            },
            [
                Party("child after the restart", [Connection.of(back)]),
                Party("child before the kill", [Connection.of(child)], complete=False),
                Party("counsellor", [Connection.of(counsellor, cid)], complete=False),
            ],
            rows=rows,
        )
        assert problems == [], checker.describe(problems)
    finally:
        server.stop()


async def _create_counsellor(database_url: str, username: str, name: str) -> None:
    """In this process: `alo116 create-user` would cost a second interpreter start."""
    engine = create_engine(database_url)
    try:
        await accounts.create_user(
            session_factory(engine),
            username=username,
            password=PASSWORD,
            role="counsellor",
            display_name=name,
        )
    finally:
        await engine.dispose()


async def _read_until(client: Client, done: Callable[[], bool], timeout: float = 10.0) -> None:
    """Read until `done()` holds; fail if it does not within `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await client.recv(timeout)
    except TimeoutError:
        raise AssertionError(f"still waiting after {timeout}s; got {client.seen[-3:]}") from None
