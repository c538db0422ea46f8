"""The server killed with SIGKILL mid-chat and restarted loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from websockets.exceptions import ConnectionClosed

from tests.clients import Client, connect_child, connect_staff
from tests.conftest import PASSWORD, server_process

BURST = 60


async def test_sigkill_mid_chat_loses_nothing_acknowledged(database_url: str) -> None:
    # A fast client: the burst must not be refused by the per-child rate limit.
    server = server_process(
        database_url, ALO116_CHILD_MESSAGE_BURST="1000", ALO116_CHILD_MESSAGES_PER_SECOND="1000"
    )
    server.create_user("ana", "counsellor", "Ana")
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
        acked = {"k0": (await counsellor.expect("ack", client_id="k0"))["seq"]}

        # A burst of messages; the process dies while they are in flight.
        async def burst() -> None:
            with contextlib.suppress(ConnectionClosed):
                for n in range(BURST):
                    await child.send(type="send", client_id=f"c{n}", body=f"mesazhi {n}")
                    await asyncio.sleep(0.005)

        sender = asyncio.create_task(burst())
        while sum(1 for f in child.seen if f["type"] == "ack") < 10:
            with contextlib.suppress(TimeoutError):
                await child.recv(0.5)
        server.kill()
        await sender
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            while True:
                await child.recv(1)
        acked |= {f["client_id"]: f["seq"] for f in child.seen if f["type"] == "ack"}
        assert 10 <= len(acked) - 1 < BURST + 1  # some, not all, were acknowledged

        await asyncio.to_thread(server.start)
        back = await connect_child(ws_url, token=token, last_seq=0)
        # The page resends everything it holds without an ack, with the same client ids.
        for n in range(BURST):
            await back.send(type="send", client_id=f"c{n}", body=f"mesazhi {n}")
        frames = await _drain(back, until=lambda fs: sum(f["type"] == "ack" for f in fs) >= BURST)
        msgs = [f for f in frames if f["type"] == "msg"]
        seqs = [m["seq"] for m in msgs]
        assert seqs == sorted(set(seqs)) == list(range(1, BURST + 2)), "gap-free, once each"
        by_client = {m["client_id"]: m["seq"] for m in msgs if "client_id" in m}
        for client_id, seq in acked.items():
            if client_id.startswith("c"):
                assert by_client[client_id] == seq, f"{client_id} moved or vanished"
        acks = {f["client_id"]: f["seq"] for f in frames if f["type"] == "ack"}
        assert all(acks[c] == s for c, s in acked.items() if c.startswith("c"))
        assert len(msgs) == BURST + 1
    finally:
        server.stop()


async def _drain(client: Client, until: object) -> list[dict[str, object]]:
    frames: list[dict[str, object]] = []
    with contextlib.suppress(TimeoutError):
        while True:
            frames.append(await client.recv(2))
            if until(frames):  # type: ignore[operator]
                # Let the echoes of the last sends arrive too.
                with contextlib.suppress(TimeoutError):
                    while True:
                        frames.append(await client.recv(0.5))
    return frames
