"""The counsellor's tools over the staff socket: risk, risk words, transfer, closing."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import update
from sqlmodel import col

from db.engine import create_engine, session_factory
from db.models import Conversation, utcnow
from tests.clients import Client
from tests.conftest import LiveServer, MakeLive


async def _chat(
    live: LiveServer, *, name: str | None = None, max_chats: int = 3
) -> tuple[Client, Client, str]:
    child = await live.child()
    await child.send(type="start")
    await child.expect("state")
    staff = await live.counsellor(name=name, max_chats=max_chats)
    await staff.send(type="take")
    cid: str = (await staff.expect("assigned"))["conversation_id"]
    await child.expect("state", status="active")
    await child.quiet(0.05)  # forget the waiting states that came before
    return child, staff, cid


async def test_a_childs_risk_words_are_flagged_to_the_counsellor_only(live: LiveServer) -> None:
    child, staff, _cid = await _chat(live)
    await child.send(type="send", client_id="r", body="Nuk dua më. Dua të vdes.")
    seen = await staff.expect("msg", seq=1)
    assert seen["risk"] == {"level": "imminent", "terms": ["dua te vdes"]}
    echo = await child.expect("msg", seq=1)
    assert "risk" not in echo
    await child.send(type="send", client_id="ok", body="Sot ishte një ditë e mirë në shkollë.")
    assert "risk" not in await staff.expect("msg", seq=2)
    # The replay after a reload flags it the same way.
    await staff.send(type="resume", conversation_id=_cid, last_seq=0)
    assert (await staff.expect("msg", seq=1))["risk"]["level"] == "imminent"


async def test_flagging_high_risk_puts_a_requeued_chat_ahead_of_everyone(live: LiveServer) -> None:
    child, staff, cid = await _chat(live)
    waiting = await live.child()
    await waiting.send(type="start", pre_chat={"in_danger": True})
    await staff.send(type="risk", conversation_id=cid, level="imminent")
    flagged = await staff.expect("risk", conversation_id=cid)
    assert (flagged["level"], flagged["priority"]) == ("imminent", 3)
    await staff.send(type="transfer", conversation_id=cid, note="Needs a senior colleague")
    released = await staff.expect("released", conversation_id=cid)
    assert released["reason"] == "transferred"
    assert (await child.expect("state", status="queued"))["reason"] == "transferred"
    queue = await staff.expect("queue")
    while len(queue["items"]) < 2:
        queue = await staff.expect("queue")
    assert next((i["conversation_id"], i["risk_level"]) for i in queue["items"]) == (
        cid,
        "imminent",
    )
    await staff.send(type="risk", conversation_id=cid, level="severe")
    assert (await staff.expect("error"))["code"] == "bad_request"


async def test_a_transfer_accepted_by_a_colleague_moves_the_chat_and_keeps_seq(
    live: LiveServer,
) -> None:
    child, ana, cid = await _chat(live, name="Ana")
    await child.send(type="send", client_id="c1", body="Përshëndetje")
    await ana.expect("msg", seq=1)
    besnik = await live.counsellor(name="Besnik")
    assert besnik.identity is not None
    await ana.send(
        type="transfer",
        conversation_id=cid,
        to_user_id=str(besnik.identity.id),
        note="Flet për shkollën",
    )
    offer = await besnik.expect("transfer_offer", conversation_id=cid)
    assert (offer["from"]["name"], offer["note"]) == ("Ana", "Flet për shkollën")
    pending = await ana.expect("transfer_pending", conversation_id=cid)
    assert pending["to"]["name"] == "Besnik"

    await besnik.send(type="transfer_accept", conversation_id=cid)
    assigned = await besnik.expect("assigned", conversation_id=cid)
    assert assigned["transfer"] == {"note": "Flet për shkollën"}
    assert (await besnik.expect("msg", conversation_id=cid))["seq"] == 1  # the history
    assert (await ana.expect("released", conversation_id=cid))["reason"] == "transferred"
    assert await child.expect("state", status="active", counsellor={"name": "Besnik"})

    await besnik.send(type="send", conversation_id=cid, client_id="b1", body="Jam Besniku.")
    assert (await besnik.expect("ack", client_id="b1"))["seq"] == 2
    assert (await child.expect("msg", seq=2))["body"] == "Jam Besniku."
    await ana.send(type="send", conversation_id=cid, client_id="a9", body="still mine?")
    assert (await ana.expect("error", client_id="a9"))["code"] == "forbidden"
    ana_seen = [f["seq"] for f in await ana.quiet(0.3) if f["type"] == "msg"]
    assert 2 not in ana_seen  # the released console no longer follows the chat


async def test_a_declined_or_lapsed_transfer_leaves_the_chat_where_it_was(
    make_live: MakeLive,
) -> None:
    live = await make_live(transfer_offer_timeout_s=0.5)
    _child, ana, cid = await _chat(live)
    besnik = await live.counsellor()
    assert besnik.identity is not None
    to = str(besnik.identity.id)
    await ana.send(type="transfer", conversation_id=cid, to_user_id=to)
    await besnik.expect("transfer_offer")
    await besnik.send(type="transfer_decline", conversation_id=cid)
    declined = await ana.expect("transfer_declined", conversation_id=cid)
    assert declined["reason"] == "declined"
    await ana.send(type="transfer", conversation_id=cid, to_user_id=to)
    await besnik.expect("transfer_offer")
    lapsed = await ana.expect("transfer_declined", conversation_id=cid, timeout=5)
    assert lapsed["reason"] == "timeout"
    assert (await besnik.expect("transfer_withdrawn", reason="timeout"))["reason"] == "timeout"
    await besnik.send(type="transfer_accept", conversation_id=cid)
    assert (await besnik.expect("error"))["code"] == "conflict"
    await ana.send(type="send", conversation_id=cid, client_id="still", body="Jam ende këtu.")
    assert (await ana.expect("ack", client_id="still"))["seq"] == 1


async def test_transfer_refusals(live: LiveServer) -> None:
    _child, ana, cid = await _chat(live)
    _other_child, besnik, other = await _chat(live)
    assert ana.identity is not None and besnik.identity is not None
    away = await live.counsellor(available=False)
    assert away.identity is not None
    cases = [
        ({"conversation_id": cid, "to_user_id": str(ana.identity.id)}, "bad_request"),
        ({"conversation_id": cid, "to_user_id": str(away.identity.id)}, "conflict"),
        ({"conversation_id": other, "to_user_id": str(besnik.identity.id)}, "forbidden"),
        ({"conversation_id": cid, "note": "x" * 501}, "too_large"),
    ]
    for fields, code in cases:
        await ana.send(type="transfer", **fields)
        assert (await ana.expect("error"))["code"] == code, fields


async def test_a_transfer_to_a_colleague_without_room_is_refused(live: LiveServer) -> None:
    _child, ana, cid = await _chat(live)
    _other, full, _theirs = await _chat(live, max_chats=1)
    resting = await live.counsellor()
    await resting.send(type="status", value="break")
    await resting.expect("me", status="break")
    for colleague, reason in ((full, "at_capacity"), (resting, "unavailable")):
        assert colleague.identity is not None
        await ana.send(type="transfer", conversation_id=cid, to_user_id=str(colleague.identity.id))
        refusal = await ana.expect("error", in_reply_to="transfer")
        assert (refusal["code"], refusal["reason"]) == ("conflict", reason)
        assert all(f["type"] != "transfer_offer" for f in await colleague.quiet(0.2))
    await ana.send(type="send", conversation_id=cid, client_id="mine", body="Jam ende këtu.")
    assert (await ana.expect("ack", client_id="mine"))["seq"] == 1


async def test_a_console_coming_back_gets_each_chats_risk_and_the_transfers_waiting(
    live: LiveServer,
) -> None:
    _child, ana, cid = await _chat(live, name="Ana")
    besnik = await live.counsellor(name="Besnik")
    assert ana.identity is not None and besnik.identity is not None
    assert ana.cookie is not None and besnik.cookie is not None
    await ana.send(type="risk", conversation_id=cid, level="high")
    await ana.expect("risk", conversation_id=cid)
    await ana.send(
        type="transfer", conversation_id=cid, to_user_id=str(besnik.identity.id), note="Shkolla"
    )
    live_offer = await besnik.expect("transfer_offer", conversation_id=cid)
    await ana.expect("transfer_pending", conversation_id=cid)

    mine = await (await live.staff_client(ana.cookie)).expect("snapshot")
    [chat] = mine["chats"]
    assert chat["risk_level"] == "high"
    pending = chat["transfer_pending"]
    assert pending["to"] == {"id": str(besnik.identity.id), "name": "Besnik"}
    assert pending["offered_at"].endswith("Z")
    assert chat["handover"] is None
    assert mine["offers"] == []

    theirs = await (await live.staff_client(besnik.cookie)).expect("snapshot")
    assert theirs["chats"] == []
    [offer] = theirs["offers"]
    assert offer.pop("offered_at").endswith("Z")
    assert offer == {k: v for k, v in live_offer.items() if k != "type"}
    assert (offer["from"]["name"], offer["note"], offer["risk_level"]) == ("Ana", "Shkolla", "high")

    # Declined: neither console coming back shows it any more.
    await besnik.send(type="transfer_decline", conversation_id=cid)
    await ana.expect("transfer_declined", conversation_id=cid)
    mine = await (await live.staff_client(ana.cookie)).expect("snapshot")
    assert mine["chats"][0]["transfer_pending"] is None
    assert (await (await live.staff_client(besnik.cookie)).expect("snapshot"))["offers"] == []


async def test_the_note_of_a_transfer_to_the_queue_reaches_whoever_takes_the_chat_next(
    live: LiveServer,
) -> None:
    _child, ana, cid = await _chat(live, name="Ana")
    assert ana.identity is not None
    await ana.send(type="transfer", conversation_id=cid, note="Ka frikë nga babai.")
    await ana.expect("released", conversation_id=cid)
    besnik = await live.counsellor(name="Besnik")
    assert besnik.cookie is not None
    await besnik.send(type="take", conversation_id=cid)
    await besnik.expect("assigned", conversation_id=cid)
    handover = await besnik.expect("handover", conversation_id=cid)
    assert handover["from"] == {"id": str(ana.identity.id), "name": "Ana"}
    assert handover["note"] == "Ka frikë nga babai."
    # A console of Besnik coming back shows it too.
    again = await (await live.staff_client(besnik.cookie)).expect("snapshot")
    assert again["chats"][0]["handover"] == {
        "from": {"id": str(ana.identity.id), "name": "Ana"},
        "note": "Ka frikë nga babai.",
    }
    # Without a note there is nothing to hand over.
    await besnik.send(type="transfer", conversation_id=cid)
    await besnik.expect("released", conversation_id=cid)
    await ana.send(type="take", conversation_id=cid)
    await ana.expect("assigned", conversation_id=cid)
    assert all(f["type"] != "handover" for f in await ana.quiet(0.3))


async def test_accepting_and_ending_a_transfer_at_once_leaves_one_consistent_outcome(
    live: LiveServer,
) -> None:
    _child, ana, cid = await _chat(live)
    besnik = await live.counsellor()
    assert besnik.identity is not None
    await live.record(ana, cid)
    await ana.send(type="transfer", conversation_id=cid, to_user_id=str(besnik.identity.id))
    await besnik.expect("transfer_offer")
    await asyncio.gather(
        besnik.send(type="transfer_accept", conversation_id=cid),
        ana.send(type="end", conversation_id=cid),
    )
    frames_b = await besnik.quiet(0.8)
    frames_a = await ana.quiet(0.2)
    ended = any(f["type"] == "ended" for f in frames_a)
    accepted = any(f["type"] == "assigned" for f in frames_b)
    assert ended != accepted, (frames_a, frames_b)
    if ended:
        assert [f["code"] for f in frames_b if f["type"] == "error"] == ["conflict"]
    else:
        assert [f["code"] for f in frames_a if f["type"] == "error"] == ["forbidden"]


async def test_ending_with_a_closing_message_stores_it_before_the_end(live: LiveServer) -> None:
    child, staff, cid = await _chat(live)
    await live.record(staff, cid, contact_type="information")
    await staff.send(
        type="end",
        conversation_id=cid,
        closing_message="Faleminderit që na shkrove. Je i/e mirëpritur sërish.",
    )
    last = await child.expect("msg", seq=1)
    assert last["from"] == "counsellor" and last["body"].startswith("Faleminderit")
    await child.expect("ended", reason="counsellor_ended")
    kinds = [f["type"] for f in child.seen if f["type"] in ("msg", "ended")]
    assert kinds == ["msg", "ended"]


async def test_tags_go_into_the_contact_record_and_unknown_codes_are_refused(
    live: LiveServer,
) -> None:
    _child, staff, cid = await _chat(live)
    await staff.send(type="tag", conversation_id=cid, categories=["violence.bullying"])
    tagged = await staff.expect("tagged", conversation_id=cid)
    assert tagged["categories"] == ["violence.bullying"]
    assert (await live.record_of(staff, cid))["categories"] == ["violence.bullying"]
    await staff.send(type="tag", conversation_id=cid, categories=["not.a.category"])
    refusal = await staff.expect("error", in_reply_to="tag")
    assert refusal["code"] == "bad_request" and refusal["field"] == "categories"
    assert (await live.record_of(staff, cid))["categories"] == ["violence.bullying"]


async def _offered(live: LiveServer) -> tuple[Client, Client, Client, str]:
    """A chat of Ana's, offered to Besnik and waiting for his answer."""
    child, ana, cid = await _chat(live, name="Ana")
    besnik = await live.counsellor(name="Besnik")
    assert besnik.identity is not None
    await ana.send(
        type="transfer", conversation_id=cid, to_user_id=str(besnik.identity.id), note="Shkolla"
    )
    await besnik.expect("transfer_offer", conversation_id=cid)
    await ana.expect("transfer_pending", conversation_id=cid)
    return child, ana, besnik, cid


async def test_sending_a_chat_back_to_the_queue_withdraws_the_offer_waiting_for_a_colleague(
    live: LiveServer,
) -> None:
    _child, ana, besnik, cid = await _offered(live)
    assert ana.identity is not None
    await ana.send(type="transfer", conversation_id=cid, note="Për kë e merr")
    withdrawn = await besnik.expect("transfer_withdrawn", conversation_id=cid)
    assert withdrawn["reason"] == "requeued"
    cancelled = await ana.expect("transfer_declined", conversation_id=cid)
    released = await ana.expect("released", conversation_id=cid)
    assert (cancelled["reason"], released["reason"]) == ("requeued", "transferred")
    # Ana's consoles hear of the offer first, so they do not show the chat as Besnik's.
    assert ana.seen.index(cancelled) < ana.seen.index(released)
    await besnik.send(type="transfer_accept", conversation_id=cid)
    refusal = await besnik.expect("error", in_reply_to="transfer_accept")
    assert (refusal["code"], refusal["reason"]) == ("conflict", "withdrawn")
    # The note for the queue, not the offer's, goes to whoever takes the chat next.
    drita = await live.counsellor(name="Drita")
    await drita.send(type="take", conversation_id=cid)
    await drita.expect("assigned", conversation_id=cid)
    handover = await drita.expect("handover", conversation_id=cid)
    assert handover["from"] == {"id": str(ana.identity.id), "name": "Ana"}
    assert handover["note"] == "Për kë e merr"


@pytest.mark.parametrize("by", ["counsellor", "child"])
async def test_ending_a_chat_withdraws_the_offer_waiting_for_a_colleague(
    live: LiveServer, by: str
) -> None:
    child, ana, besnik, cid = await _offered(live)
    if by == "counsellor":
        await live.record(ana, cid)
        await ana.send(type="end", conversation_id=cid)
    else:
        await child.send(type="end")
    await ana.expect("ended", conversation_id=cid)
    withdrawn = await besnik.expect("transfer_withdrawn", conversation_id=cid)
    assert withdrawn["reason"] == "ended"
    assert (await ana.expect("transfer_declined", conversation_id=cid))["reason"] == "ended"
    await besnik.send(type="transfer_accept", conversation_id=cid)
    refusal = await besnik.expect("error", in_reply_to="transfer_accept")
    assert (refusal["code"], refusal["reason"]) == ("conflict", "withdrawn")


async def test_an_offer_left_behind_on_a_queued_chat_is_voided_when_the_chat_is_taken(
    live: LiveServer,
) -> None:
    """A row as earlier builds could leave it: queued, yet still offered to Besnik."""
    ana = await live.counsellor(name="Ana")
    besnik = await live.counsellor(name="Besnik")
    assert ana.identity is not None and besnik.identity is not None
    child = await live.child()
    await child.send(type="start")
    await child.expect("state", status="queued")
    queue = await ana.expect("queue")
    while not queue["items"]:
        queue = await ana.expect("queue")
    cid = queue["items"][0]["conversation_id"]
    engine = create_engine(live.settings.database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            await session.execute(
                update(Conversation)
                .where(col(Conversation.id) == uuid.UUID(cid))
                .values(
                    transfer_to_user_id=besnik.identity.id,
                    transfer_from_user_id=ana.identity.id,
                    transfer_note="Për Besnikun",
                    transfer_offered_at=utcnow(),
                )
            )
    finally:
        await engine.dispose()
    drita = await live.counsellor(name="Drita")
    await drita.send(type="take", conversation_id=cid)
    await drita.expect("assigned", conversation_id=cid)
    await besnik.send(type="transfer_accept", conversation_id=cid)
    answer = await besnik.expect_any(("assigned", "error"))
    assert (answer["type"], answer.get("reason")) == ("error", "withdrawn")
    assert (await besnik.expect("transfer_withdrawn", conversation_id=cid))["reason"] == "requeued"
    # The offer's note was for Besnik, not a handover for whoever takes the chat.
    assert all(f["type"] != "handover" for f in await drita.quiet(0.3))
