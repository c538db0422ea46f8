"""The queue under a crowd: positions recomputed at most once per interval, yet correct,
the first change after a quiet spell sent at once, and only changes sent at all."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from chat_server.hub import coalesce
from tests import conftest
from tests.clients import Client
from tests.conftest import (
    LiveServer,
    MakeLive,
    start_server,
    stop_server,
)

CROWD = 30


def latest_state(child: Client) -> dict[str, Any]:
    return child.of_type("state")[-1]


def positions(children: list[Client]) -> list[int]:
    return [latest_state(c).get("position", 0) for c in children]


async def settle(children: list[Client], done: Callable[[], bool], timeout: float = 20.0) -> None:
    """Read what the children are sent until `done()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        if loop.time() > deadline:
            raise AssertionError(f"never settled; positions {positions(children)}")
        await asyncio.gather(*(c.quiet(0.05, most=0.5) for c in children))


async def join(children: list[Client]) -> None:
    await asyncio.gather(*(c.send(type="start") for c in children))
    for child in children:
        await child.expect("state", status="queued")


def assert_no_repeats(child: Client) -> None:
    states = child.of_type("state")
    for before, after in itertools.pairwise(states):
        assert before != after, f"the same state twice in a row: {after}"


# --- the trigger ----------------------------------------------------------------------------


async def test_a_trigger_after_a_quiet_spell_runs_at_once_and_a_burst_waits_for_the_interval() -> (
    None
):
    runs: list[float] = []

    async def work() -> None:
        runs.append(asyncio.get_running_loop().time())

    refresh = coalesce(work, interval=60)
    refresh()
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(runs) == 1
    for _ in range(10):
        refresh()
    await asyncio.sleep(0.1)
    assert len(runs) == 1  # the burst is held for the interval, as one run
    refresh.cancel()


async def test_a_burst_costs_one_more_run_which_sees_the_last_change() -> None:
    seen: list[int] = []
    changes = 0

    async def work() -> None:
        seen.append(changes)

    refresh = coalesce(work, interval=0.05)
    for _ in range(20):
        changes += 1
        refresh()
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.2)
    assert seen[0] == 1 and seen[-1] == 20
    assert len(seen) < 20
    refresh.cancel()


# --- children in the queue ----------------------------------------------------------------------


async def test_a_crowd_joining_at_once_each_ends_up_with_its_own_place(
    make_live: MakeLive,
) -> None:
    live = await make_live(new_chats_per_address=1000)
    children = [await live.child() for _ in range(CROWD)]
    await join(children)
    await settle(children, lambda: sorted(positions(children)) == list(range(1, CROWD + 1)))
    for child in children:
        assert_no_repeats(child)


async def test_after_takes_every_waiting_child_moves_up_by_as_many(make_live: MakeLive) -> None:
    live = await make_live(new_chats_per_address=1000)
    children = [await live.child() for _ in range(CROWD)]
    await join(children)
    await settle(children, lambda: sorted(positions(children)) == list(range(1, CROWD + 1)))
    before = dict(zip(children, positions(children), strict=True))

    taken = 8
    counsellors = [await live.counsellor(max_chats=2) for _ in range(taken // 2)]
    await asyncio.gather(*(c.send(type="take") for c in counsellors for _ in range(2)))
    for counsellor in counsellors:
        for _ in range(2):
            await counsellor.expect("assigned")

    first = [c for c in children if before[c] <= taken]
    rest = [c for c in children if before[c] > taken]
    await settle(
        children,
        lambda: (
            all(latest_state(c)["status"] == "active" for c in first)
            and all(latest_state(c).get("position") == before[c] - taken for c in rest)
        ),
    )
    for child in rest:
        assert_no_repeats(child)
        assert latest_state(child)["counsellors_online"] == len(counsellors)


async def test_a_child_is_not_sent_its_place_again_when_someone_joins_behind(
    live: LiveServer,
) -> None:
    counsellor = await live.counsellor()
    first = await live.child()
    await first.send(type="start")
    mine = await first.expect("state", status="queued", position=1)

    second = await live.child()
    await second.send(type="start")
    # The newcomer is told its own place from its own join.
    assert (await second.expect("state", status="queued"))["position"] == 2
    # The queue was recomputed after the newcomer came...
    while len((await counsellor.expect("queue"))["items"]) < 2:
        pass
    # ...and the first child, whose place did not change, was sent nothing.
    assert not [f for f in await first.quiet(0.5) if f["type"] == "state"]
    assert first.of_type("state") == [mine]
    assert_no_repeats(second)


async def test_the_first_change_after_a_quiet_spell_goes_out_at_once(
    make_live: MakeLive,
) -> None:
    # An interval far longer than any expectation below: anything seen came at once.
    live = await make_live(queue_refresh_interval_s=600)
    counsellor = await live.counsellor(available=False)
    first = await live.child()
    await first.send(type="start")
    await first.expect("state", status="queued", position=1)
    assert len((await counsellor.expect("queue"))["items"]) == 1

    second = await live.child()
    await second.send(type="start")
    # A newcomer inside the interval still gets its place at once, from its own join...
    assert (await second.expect("state", status="queued"))["position"] == 2
    # ...while the recomputation for everyone else waits for the interval.
    assert not [f for f in await counsellor.quiet(0.5) if f["type"] == "queue"]


async def test_a_requeued_child_is_told_its_place_again(
    make_live: MakeLive,
) -> None:
    live = await make_live(staff_grace_s=1.0)
    child = await live.child()
    await child.send(type="start")
    await child.expect("state", status="queued", position=1)
    counsellor = await live.counsellor()
    await counsellor.send(type="take")
    await counsellor.expect("assigned")
    await child.expect("state", status="active")
    await counsellor.close()
    # Back at the front of the queue: the place it held before is sent anew.
    await child.expect("state", status="queued", position=1, timeout=8)


# --- several nodes -----------------------------------------------------------------------------


@pytest.mark.postgres
async def test_children_on_two_nodes_each_hold_their_place_as_the_queue_moves(
    pg_url: str, redis_url: str
) -> None:
    settings = conftest.test_settings(pg_url, redis_url=redis_url, new_chats_per_address=1000)
    a, b = await start_server(settings), await start_server(settings)
    try:
        children = [await (a if n % 2 else b).child() for n in range(10)]
        await join(children)
        await settle(children, lambda: sorted(positions(children)) == list(range(1, 11)))
        before = dict(zip(children, positions(children), strict=True))

        counsellor = await a.counsellor(max_chats=3)
        for _ in range(3):
            await counsellor.send(type="take")
            await counsellor.expect("assigned")
        rest = [c for c in children if before[c] > 3]
        await settle(
            children, lambda: all(latest_state(c).get("position") == before[c] - 3 for c in rest)
        )
        for child in rest:
            assert_no_repeats(child)
    finally:
        await stop_server(b)
        await stop_server(a)
