"""Open-loop load of real WebSocket clients speaking protocol v1; prints JSON.

N children join the queue, M counsellors log in through /api/login and take them; then
messages are sent at a fixed rate, alternating between children and counsellors, each at
a time fixed in advance. Latency runs from that scheduled time (not from when the client
got round to sending) to the moment the other party reads the message, so a server or
client that falls behind shows up in the numbers instead of slowing the load down.

    python -m bench.load --url http://127.0.0.1:8000 --children 200 --counsellors 100 \
        --user-prefix bench --password '...' --rate 1000 --duration 15

The accounts must exist (`bench.run` creates them; or `alo116 create-user`). The same
run works against `bench.floor`, a relay with no database, so results become ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

COOKIE = "alo116_session"
SETUP_TIMEOUT = 60.0


@dataclass
class Stats:
    """What every client saw, in one place (one event loop, no locks needed)."""

    scheduled: dict[str, float] = field(default_factory=dict)  # key -> scheduled time
    delivered: dict[str, float] = field(default_factory=dict)  # key -> latency (s)
    acked: dict[str, float] = field(default_factory=dict)  # key -> ack latency (s)
    duplicates: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    closed: int = 0
    frames_in: int = 0

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class Peer:
    """One connection: a writer queue so the scheduler never waits on a socket."""

    def __init__(self, ws: ClientConnection, role: str, stats: Stats) -> None:
        self.ws = ws
        self.role = role  # "child" or "counsellor": the `from` of what it sends
        self.stats = stats
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.conversations: list[str] = []
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.live = False  # once true, frames are measured instead of queued for setup
        self._tasks = [
            asyncio.create_task(self._read()),
            asyncio.create_task(self._write()),
        ]

    async def _write(self) -> None:
        try:
            while True:
                await self.ws.send(await self.outbox.get())
        except websockets.ConnectionClosed:
            pass

    async def _read(self) -> None:
        stats = self.stats
        try:
            async for raw in self.ws:
                now = time.perf_counter()
                stats.frames_in += 1
                frame = json.loads(raw)
                kind = frame["type"]
                if not self.live:
                    await self.inbox.put(frame)
                elif kind == "msg":
                    if frame.get("from") == self.role:
                        continue  # our own message echoed to us
                    key = frame["body"]
                    at = stats.scheduled.get(key)
                    if at is None:
                        continue
                    if key in stats.delivered:
                        stats.duplicates += 1
                    else:
                        stats.delivered[key] = now - at
                elif kind == "ack":
                    key = frame["client_id"]
                    at = stats.scheduled.get(key)
                    if at is not None:
                        stats.acked.setdefault(key, now - at)
                elif kind == "error":
                    stats.error(frame.get("code", "?"))
        except websockets.ConnectionClosed:
            pass
        finally:
            if self.live:
                stats.closed += 1

    async def expect(self, kind: str) -> dict[str, Any]:
        async with asyncio.timeout(SETUP_TIMEOUT):
            while True:
                frame = await self.inbox.get()
                if frame["type"] == kind:
                    return frame
                if frame["type"] == "error" and kind != "error":
                    raise RuntimeError(f"setup refused while waiting for {kind}: {frame}")

    @property
    def sending(self) -> bool:
        """Frames are queued and the socket can still take them."""
        return not self.outbox.empty() and not self._tasks[1].done()

    def send(self, **frame: Any) -> None:
        self.outbox.put_nowait(json.dumps(frame, separators=(",", ":")))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.ws.close()


@dataclass
class World:
    children: list[Peer]
    counsellors: list[Peer]
    stats: Stats


async def connect(url: str, stats: Stats, role: str, cookie: str | None = None) -> Peer:
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else None
    ws = await websockets.connect(
        url,
        compression=None,
        additional_headers=headers,
        max_queue=None,
        open_timeout=SETUP_TIMEOUT,
        ping_interval=None,
    )
    return Peer(ws, role, stats)


async def setup(
    base_url: str,
    *,
    children: int,
    counsellors: int,
    user_prefix: str,
    password: str,
    first_user: int = 0,
) -> World:
    """Children queue up; counsellors log in, go available and take them all."""
    ws_url = base_url.replace("http://", "ws://")
    stats = Stats()
    kids: list[Peer] = []
    for _ in range(children):
        kid = await connect(f"{ws_url}/ws/child", stats, "child")
        kid.send(type="hello", v=1, lang="sq")
        await kid.expect("welcome")
        kid.send(type="start")
        await kid.expect("state")
        kids.append(kid)
    async with httpx.AsyncClient(base_url=base_url, timeout=SETUP_TIMEOUT) as http:
        cookies = await asyncio.gather(
            *(
                _login(http, f"{user_prefix}{n}", password)
                for n in range(first_user, first_user + counsellors)
            )
        )
    staff: list[Peer] = []
    per_counsellor = math.ceil(children / counsellors)
    taken = 0
    for cookie in cookies:
        peer = await connect(f"{ws_url}/ws/staff", stats, "counsellor", cookie)
        await peer.expect("snapshot")
        peer.send(type="status", value="available")
        for _ in range(min(per_counsellor, children - taken)):
            peer.send(type="take")
            assigned = await peer.expect("assigned")
            peer.conversations.append(assigned["conversation_id"])
            taken += 1
        staff.append(peer)
    for peer in (*kids, *staff):
        peer.live = True
    return World(kids, staff, stats)


async def _login(http: httpx.AsyncClient, username: str, password: str) -> str:
    answer = await http.post("/api/login", json={"username": username, "password": password})
    if answer.status_code != 200:
        raise RuntimeError(f"login of {username!r} failed: {answer.status_code} {answer.text}")
    return answer.cookies[COOKIE]


async def drive(world: World, *, rate: float, duration: float, drain: float) -> dict[str, Any]:
    """Send rate*duration messages on a fixed schedule, then wait `drain` for stragglers."""
    stats = world.stats
    stats.scheduled.clear()
    stats.delivered.clear()
    stats.acked.clear()
    stats.duplicates = 0
    stats.errors.clear()
    senders: list[tuple[Peer, str | None]] = [(k, None) for k in world.children]
    senders += [(c, cid) for c in world.counsellors for cid in c.conversations]
    children, staff = senders[: len(world.children)], senders[len(world.children) :]
    rng = random.Random(116111)
    total = int(rate * duration)
    prefix = f"{rate:g}-"
    # perf_counter, not loop.time(): uvloop's clock has millisecond steps.
    start = time.perf_counter() + 0.1
    late = 0.0
    for i in range(total):
        at = start + i / rate
        wait = at - time.perf_counter()
        if wait > 0.0005:
            await asyncio.sleep(wait)
        else:
            late = max(late, -wait)
        peer, cid = rng.choice(children if i % 2 == 0 else staff)
        key = f"{prefix}{i}"
        stats.scheduled[key] = at
        if cid is None:
            peer.send(type="send", client_id=key, body=key)
        else:
            peer.send(type="send", conversation_id=cid, client_id=key, body=key)
    sent_in = time.perf_counter() - start
    deadline = time.perf_counter() + drain
    while time.perf_counter() < deadline and len(stats.delivered) < total:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return {
        "rate": rate,
        "duration_s": duration,
        "messages": total,
        "sent_in_s": round(sent_in, 3),
        "generator_max_lag_ms": round(late * 1000, 2),
        "delivered": len(stats.delivered),
        "undelivered": total - len(stats.delivered),  # after the drain: late or lost
        "duplicates": stats.duplicates,
        "errors": dict(stats.errors),
        "closed_connections": stats.closed,
        "delivery_ms": percentiles(list(stats.delivered.values())),
        "ack_ms": percentiles(list(stats.acked.values())),
    }


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)}


async def close(world: World) -> None:
    """End every chat, then hang up: a later world must not be handed these chats back
    (the sweep would requeue them, first in line, once the counsellors' grace is over)."""
    for peer in world.counsellors:
        for cid in peer.conversations:
            peer.send(type="end", conversation_id=cid)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            while any(p.sending for p in world.counsellors):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    await asyncio.sleep(1)  # let the server commit the last ends
    await asyncio.gather(
        *(p.close() for p in (*world.children, *world.counsellors)), return_exceptions=True
    )


def raise_open_files(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.load", description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--children", type=int, default=200)
    parser.add_argument("--counsellors", type=int, default=100)
    parser.add_argument("--user-prefix", default="bench")
    parser.add_argument("--password", required=True)
    parser.add_argument("--rate", type=float, action="append", required=True)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--drain", type=float, default=5)
    args = parser.parse_args(argv)
    raise_open_files(args.children + args.counsellors + 256)

    async def run() -> list[dict[str, Any]]:
        world = await setup(
            args.url,
            children=args.children,
            counsellors=args.counsellors,
            user_prefix=args.user_prefix,
            password=args.password,
        )
        try:
            return [
                await drive(world, rate=r, duration=args.duration, drain=args.drain)
                for r in args.rate
            ]
        finally:
            await close(world)

    started = time.process_time()
    results = _run(run())
    print(json.dumps({"results": results, "generator_cpu_s": time.process_time() - started}))
    return 0


def _run(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


if __name__ == "__main__":
    sys.exit(main())
