"""Grace periods and inactivity, enforced by the periodic sweeps."""

from __future__ import annotations

import asyncio

import pytest

from chat_server import floor
from tests.conftest import MakeLive


async def test_a_chat_whose_counsellor_vanished_goes_back_to_the_front_of_the_queue(
    make_live: MakeLive,
) -> None:
    live = await make_live(staff_grace_s=1.0)
    first = await live.child()
    await first.send(type="start")
    await first.expect("state")
    counsellor = await live.counsellor()
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    await first.expect("state", status="active")
    second = await live.child()
    await second.send(type="start")
    assert (await second.expect("state"))["position"] == 1

    await first.quiet(0.1)  # forget the states that came before
    await counsellor.close()
    # The child is told, and is first in line again, ahead of the child who came later.
    assert (await first.expect("state", status="queued", timeout=6))["status"] == "queued"
    assert (await first.expect("state", status="queued", position=1, timeout=3))["position"] == 1
    assert (await second.expect("state", position=2, timeout=3))["position"] == 2

    colleague = await live.counsellor()
    await colleague.send(type="take")
    assigned = await colleague.expect("assigned")
    assert assigned["conversation_id"] == cid and assigned["priority"] >= 1


async def test_a_console_back_within_the_grace_period_keeps_its_chats(
    make_live: MakeLive,
) -> None:
    live = await make_live(staff_grace_s=3.0)
    child, counsellor, cid = await live.taken_chat()
    await child.send(type="send", client_id="a", body="a je aty?")
    await counsellor.expect("msg", seq=1)
    await counsellor.close()
    await child.send(type="send", client_id="b", body="alo?")
    await child.expect("ack", client_id="b")

    assert counsellor.cookie is not None
    again = await live.staff_client(counsellor.cookie)
    snapshot = await again.expect("snapshot")
    assert [c["conversation_id"] for c in snapshot["chats"]] == [cid]
    assert snapshot["chats"][0]["last_seq"] == 2
    await again.send(type="resume", conversation_id=cid, last_seq=1)
    assert (await again.expect("msg"))["seq"] == 2
    await asyncio.sleep(3.5)
    await again.quiet(0.2)
    assert not [f for f in again.seen if f["type"] == "released"]
    await child.quiet(0.2)
    assert child.of_type("state")[-1]["status"] == "active"


async def test_a_waiting_child_gone_past_the_grace_period_leaves_the_queue(
    make_live: MakeLive,
) -> None:
    live = await make_live(child_queue_grace_s=1.0)
    counsellor = await live.counsellor()
    child = await live.child()
    await child.send(type="start")
    await child.expect("state")
    assert len((await counsellor.expect("queue", timeout=2))["items"]) in (0, 1)
    await child.close()
    deadline = asyncio.get_running_loop().time() + 6
    while True:
        queue = await counsellor.expect("queue", timeout=6)
        if not queue["items"]:
            break
        assert asyncio.get_running_loop().time() < deadline, "still queued"
    await counsellor.send(type="take")
    assert (await counsellor.expect("error"))["code"] == "not_found"


async def test_a_chat_silent_past_the_inactivity_limit_is_closed(make_live: MakeLive) -> None:
    live = await make_live(inactivity_close_s=1.0)
    child, counsellor, cid = await live.taken_chat()
    assert (await child.expect("ended", timeout=6))["reason"] == "inactive"
    assert (await counsellor.expect("ended", conversation_id=cid))["reason"] == "inactive"


async def test_a_child_that_reconnects_sees_the_counsellor_online_again(
    make_live: MakeLive,
) -> None:
    live = await make_live()
    child = await live.child()
    token = child.token
    await child.send(type="start")
    counsellor = await live.counsellor()
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    await child.close()
    gone = await counsellor.expect("presence", conversation_id=cid, child="offline")
    assert gone["child"] == "offline"
    await live.child(token=token, last_seq=0)
    await counsellor.expect("presence", conversation_id=cid, child="online")


async def test_the_heartbeat_keeps_every_connected_child_in_the_queue(
    make_live: MakeLive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Liveness is refreshed a chunk per transaction: every chunk, not just the first."""
    monkeypatch.setattr(floor, "HEARTBEAT_CHUNK", 2)
    live = await make_live(child_queue_grace_s=1.0)
    children = [await live.child() for _ in range(5)]
    for child in children:
        await child.send(type="start")
        await child.expect("state", status="queued")
    await asyncio.sleep(2.5)  # past the grace period: only the heartbeat keeps them
    counsellor = await live.counsellor()
    queue = await counsellor.expect("queue")
    assert len(queue["items"]) == 5


async def test_an_offer_dies_with_a_lost_console_and_cannot_move_the_chat_from_its_next_taker(
    make_live: MakeLive,
) -> None:
    live = await make_live(staff_grace_s=1.0)
    besnik = await live.counsellor(name="Besnik")
    assert besnik.identity is not None and besnik.cookie is not None
    child, ana, cid = await live.taken_chat("Ana")
    await ana.send(type="transfer", conversation_id=cid, to_user_id=str(besnik.identity.id))
    await besnik.expect("transfer_offer", conversation_id=cid)
    await ana.expect("transfer_pending", conversation_id=cid)
    await child.expect("state", status="active")
    await child.quiet(0.1)
    await ana.close()
    await child.expect("state", status="queued", timeout=6)

    drita = await live.counsellor(name="Drita")
    await drita.send(type="take", conversation_id=cid)
    await drita.expect("assigned", conversation_id=cid)
    await child.expect("state", status="active", counsellor={"name": "Drita"})
    # Besnik's old offer cannot pull the chat away from Drita, nor come back to his console.
    await besnik.send(type="transfer_accept", conversation_id=cid)
    answer = await besnik.expect_any(("assigned", "error"))
    assert (answer["type"], answer.get("code"), answer.get("reason")) == (
        "error",
        "conflict",
        "withdrawn",
    )
    # He was told when the chat went back to the queue.
    withdrawn = await besnik.expect("transfer_withdrawn", conversation_id=cid)
    assert withdrawn["reason"] == "requeued"
    assert (await (await live.staff_client(besnik.cookie)).expect("snapshot"))["offers"] == []
    await drita.send(type="send", conversation_id=cid, client_id="d", body="Jam Drita.")
    assert (await drita.expect("ack", client_id="d"))["seq"] == 1
    assert all(f.get("counsellor") is None for f in await child.quiet(0.3))


async def test_a_note_handed_over_once_is_not_handed_over_again_after_a_lost_console(
    make_live: MakeLive,
) -> None:
    live = await make_live(staff_grace_s=1.0)
    child, ana, cid = await live.taken_chat("Ana")
    await ana.send(type="transfer", conversation_id=cid, note="Ka frikë nga babai.")
    await ana.expect("released", conversation_id=cid)
    besnik = await live.counsellor(name="Besnik")
    await besnik.send(type="take", conversation_id=cid)
    await besnik.expect("assigned", conversation_id=cid)
    assert (await besnik.expect("handover", conversation_id=cid))["note"] == "Ka frikë nga babai."
    await child.expect("state", status="active", counsellor={"name": "Besnik"})
    await child.quiet(0.1)
    await besnik.close()
    await child.expect("state", status="queued", timeout=6)

    drita = await live.counsellor(name="Drita")
    assert drita.cookie is not None
    await drita.send(type="take", conversation_id=cid)
    await drita.expect("assigned", conversation_id=cid)
    assert all(f["type"] != "handover" for f in await drita.quiet(0.3))
    again = await (await live.staff_client(drita.cookie)).expect("snapshot")
    assert again["chats"][0]["handover"] is None


async def test_a_chat_closed_for_inactivity_withdraws_the_offer_waiting_for_a_colleague(
    make_live: MakeLive,
) -> None:
    live = await make_live(inactivity_close_s=1.0)
    besnik = await live.counsellor(name="Besnik")
    assert besnik.identity is not None
    _child, ana, cid = await live.taken_chat("Ana")
    await ana.send(type="transfer", conversation_id=cid, to_user_id=str(besnik.identity.id))
    await besnik.expect("transfer_offer", conversation_id=cid)
    await ana.expect("ended", conversation_id=cid, reason="inactive", timeout=6)
    withdrawn = await besnik.expect("transfer_withdrawn", conversation_id=cid, timeout=2)
    assert withdrawn["reason"] == "ended"
    assert (await ana.expect("transfer_declined", conversation_id=cid))["reason"] == "ended"
