"""Taking chats: one winner per child, nobody over capacity, queue order honoured."""

from __future__ import annotations

import asyncio

from tests.conftest import LiveServer


async def test_two_counsellors_taking_the_same_child_at_once_one_wins(live: LiveServer) -> None:
    child = await live.child()
    await child.send(type="start")
    queued = await child.expect("state", status="queued")
    assert queued["position"] == 1
    first = await live.counsellor()
    second = await live.counsellor()
    cid = (await first.expect("queue"))["items"][0]["conversation_id"]
    await asyncio.gather(
        first.send(type="take", conversation_id=cid),
        second.send(type="take", conversation_id=cid),
    )
    outcomes = [await c.expect_any(("assigned", "error")) for c in (first, second)]
    for client in (first, second):  # and nothing more
        assert not [f for f in await client.quiet(0.3) if f["type"] in ("assigned", "error")]
    kinds = sorted(f["type"] for f in outcomes)
    assert kinds == ["assigned", "error"]
    refusal = next(f for f in outcomes if f["type"] == "error")
    assert refusal["code"] == "conflict"
    assert refusal["in_reply_to"] == "take"


async def test_racing_take_next_gives_each_waiting_child_to_exactly_one_counsellor(
    live: LiveServer,
) -> None:
    children = [await live.child() for _ in range(3)]
    for child in children:
        await child.send(type="start")
        await child.expect("state", status="queued")
    counsellors = [await live.counsellor() for _ in range(4)]
    await asyncio.gather(*(c.send(type="take") for c in counsellors))
    taken: list[str] = []
    errors = []
    for counsellor in counsellors:  # each take gets exactly one answer
        frame = await counsellor.expect_any(("assigned", "error"))
        if frame["type"] == "assigned":
            taken.append(frame["conversation_id"])
        else:
            errors.append(frame)
        assert not [f for f in await counsellor.quiet(0.2) if f["type"] in ("assigned", "error")]
    assert len(taken) == 3 and len(set(taken)) == 3
    assert [e["code"] for e in errors] == ["not_found"]


async def test_a_counsellor_is_never_given_more_chats_than_their_capacity(
    live: LiveServer,
) -> None:
    for _ in range(3):
        child = await live.child()
        await child.send(type="start")
        await child.expect("state")
    counsellor = await live.counsellor(max_chats=2)
    # A second console of the same counsellor takes at the same instant.
    assert counsellor.cookie is not None
    other_tab = await live.staff_client(counsellor.cookie)
    await other_tab.expect("snapshot")
    await asyncio.gather(
        counsellor.send(type="take"), other_tab.send(type="take"), counsellor.send(type="take")
    )
    frames = await counsellor.quiet(0.8) + await other_tab.quiet(0.1)
    errors = [f for f in frames if f["type"] == "error"]
    assert [(e["code"], e["reason"]) for e in errors] == [("conflict", "at_capacity")]
    mine = {f["conversation_id"] for f in frames if f["type"] == "assigned"}
    assert len(mine) == 2
    assert [f for f in frames if f["type"] == "me"][-1]["load"] == 2


async def test_the_queue_serves_a_child_in_danger_first_then_the_longest_waiting(
    live: LiveServer,
) -> None:
    early = await live.child()
    await early.send(type="start")
    await early.expect("state")
    later = await live.child()
    await later.send(type="start")
    assert (await later.expect("state"))["position"] == 2
    danger = await live.child()
    await danger.send(type="start", pre_chat={"in_danger": True})
    assert (await danger.expect("state"))["position"] == 1
    assert (await early.expect("state", position=2))["status"] == "queued"

    counsellor = await live.counsellor(max_chats=3)
    order = []
    for _ in range(3):
        await counsellor.send(type="take")
        order.append((await counsellor.expect("assigned"))["priority"])
    assert order == [2, 0, 0]
    assert (await danger.expect("state", status="active"))["counsellor"]
    assert (await early.expect("state", status="active"))["counsellor"]


async def test_a_waiting_child_sees_an_estimate_only_when_someone_is_on_duty(
    live: LiveServer,
) -> None:
    child = await live.child()
    await child.send(type="start")
    first = await child.expect("state")
    assert first["counsellors_online"] == 0 and "estimated_wait_s" not in first
    await live.counsellor()
    update = await child.expect("state", counsellors_online=1)
    assert update["estimated_wait_s"] >= 30


async def test_a_counsellor_cannot_write_in_or_end_someone_elses_chat(live: LiveServer) -> None:
    child = await live.child()
    await child.send(type="start")
    owner = await live.counsellor()
    intruder = await live.counsellor()
    await owner.send(type="take")
    cid = (await owner.expect("assigned"))["conversation_id"]
    await intruder.send(type="send", conversation_id=cid, client_id="x", body="hello")
    refusal = await intruder.expect("error")
    assert (refusal["code"], refusal["client_id"]) == ("forbidden", "x")
    await intruder.send(type="end", conversation_id=cid)
    assert (await intruder.expect("error"))["code"] == "forbidden"
    await intruder.send(type="resume", conversation_id=cid, last_seq=0)
    assert (await intruder.expect("error"))["code"] == "forbidden"
    await intruder.send(type="typing", conversation_id=cid, on=True)
    assert (await intruder.expect("error"))["code"] == "forbidden"
    leaked = [f for f in await child.quiet(0.3) if f["type"] in ("msg", "ended", "typing")]
    assert leaked == []


async def test_a_closed_chat_refuses_new_messages_with_closed(live: LiveServer) -> None:
    child = await live.child()
    await child.send(type="start")
    counsellor = await live.counsellor()
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    await child.send(type="end")
    await child.expect("ended", reason="child_ended")
    await counsellor.expect("ended", conversation_id=cid)
    await counsellor.send(type="send", conversation_id=cid, client_id="late", body="still there?")
    assert (await counsellor.expect("error"))["code"] == "closed"
    await child.send(type="send", client_id="late", body="wait")
    assert (await child.expect("error"))["code"] == "closed"
    # The load is freed at once (the `me` saying so may come after the errors above).
    async with asyncio.timeout(5):
        while counsellor.of_type("me")[-1]["load"] != 0:
            await counsellor.recv()
