"""Supervisors: silent monitoring, whisper, take-over, assign, block, alerts, the floor;
every action audited, and none of it visible to the child."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from chat_server.supervision import AddressBlocks
from db.engine import create_engine, session_factory
from db.models import AuditEvent, Whisper, utcnow
from tests.clients import Client
from tests.conftest import LiveServer, MakeLive

VOLATILE = {"token", "at", "client_id", "conversation_id"}


async def _supervisor(live: LiveServer, name: str = "Drita") -> Client:
    _staff, cookie = await live.staff("supervisor", name=name)
    client = await live.staff_client(cookie)
    await client.expect("snapshot")
    await client.expect("floor")
    return client


async def _audit(live: LiveServer) -> list[tuple[str, str | None]]:
    engine = create_engine(live.settings.database_url)
    try:
        async with session_factory(engine)() as session:
            rows = await session.execute(select(col(AuditEvent.action), col(AuditEvent.target)))
            return [(a, t) for a, t in rows]
    finally:
        await engine.dispose()


def _shape(frames: list[dict[str, Any]]) -> list[tuple[str, tuple[str, ...]]]:
    """Frame types and field names, without values that differ from run to run."""
    return [(f["type"], tuple(sorted(k for k in f if k not in VOLATILE))) for f in frames]


async def _scripted_chat(live: LiveServer, watch: bool) -> list[dict[str, Any]]:
    child = await live.child()
    await child.send(type="start", pre_chat={"age_band": "13-15"})
    await child.expect("state")
    counsellor = await live.counsellor()
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    await child.expect("state", status="active")
    if watch:
        supervisor = await _supervisor(live)
        await supervisor.send(type="monitor", conversation_id=cid, on=True)
        await supervisor.expect("monitoring", conversation_id=cid)
    await child.send(type="send", client_id="a", body="Kam një problem në shkollë.")
    await counsellor.expect("msg", seq=1)
    if watch:
        await supervisor.send(type="whisper", conversation_id=cid, body="Pyet për mësuesin.")
        await counsellor.expect("whisper", conversation_id=cid)
    await counsellor.send(type="typing", conversation_id=cid, on=True)
    await counsellor.send(type="send", conversation_id=cid, client_id="b", body="Më trego.")
    await child.expect("msg", seq=2)
    await child.send(type="read", seq=2)
    await live.record(counsellor, cid)
    await counsellor.send(type="end", conversation_id=cid)
    await child.expect("ended")
    if watch:
        await supervisor.expect("ended", conversation_id=cid)
    await child.quiet(0.3)
    return [f for f in child.seen if f["type"] not in ("state",)]


async def test_a_monitored_chat_looks_exactly_the_same_to_the_child(live: LiveServer) -> None:
    plain = await _scripted_chat(live, watch=False)
    watched = await _scripted_chat(live, watch=True)
    assert _shape(watched) == _shape(plain)
    assert [f.get("body") for f in watched] == [f.get("body") for f in plain]
    assert not any("Pyet" in str(f) for f in watched)


async def test_monitoring_replays_the_history_and_follows_the_chat_live(live: LiveServer) -> None:
    child, counsellor, cid = await live.taken_chat("Ana")
    await child.send(type="send", client_id="1", body="një")
    await counsellor.expect("msg", seq=1)
    supervisor = await _supervisor(live)
    await supervisor.send(type="monitor", conversation_id=cid, on=True)
    assert (await supervisor.expect("monitoring"))["last_seq"] == 1
    assert (await supervisor.expect("msg", conversation_id=cid))["seq"] == 1
    # The counsellor is told (the default, for an open practice); the child never.
    told = await counsellor.expect("monitored", conversation_id=cid)
    assert (told["by"]["name"], told["on"]) == ("Drita", True)
    await child.send(type="typing", on=True)
    assert (await supervisor.expect("typing", conversation_id=cid))["on"] is True
    await counsellor.send(type="send", conversation_id=cid, client_id="2", body="dy")
    assert (await supervisor.expect("msg", seq=2))["body"] == "dy"
    # A monitor cannot act in the chat.
    await supervisor.send(type="send", conversation_id=cid, client_id="x", body="hello")
    assert (await supervisor.expect("error", client_id="x"))["code"] == "forbidden"
    await supervisor.send(type="typing", conversation_id=cid, on=True)
    assert (await supervisor.expect("error", in_reply_to="typing"))["code"] == "forbidden"
    await counsellor.send(type="typing", conversation_id=cid, on=True)
    assert (await supervisor.expect("typing", conversation_id=cid))["on"] is True
    await supervisor.send(type="monitor", conversation_id=cid, on=False)
    await counsellor.expect("monitored", conversation_id=cid, on=False)
    await counsellor.send(type="send", conversation_id=cid, client_id="3", body="tre")
    await counsellor.expect("ack", client_id="3")
    assert [f for f in await supervisor.quiet(0.3) if f["type"] == "msg"] == []
    actions = [a for a, _t in await _audit(live)]
    assert actions.count("monitor.start") == 1 and actions.count("monitor.stop") == 1


async def test_a_whisper_reaches_the_counsellor_only_and_is_kept(live: LiveServer) -> None:
    child, counsellor, cid = await live.taken_chat()
    other = await live.counsellor()
    supervisor = await _supervisor(live)
    await supervisor.send(type="whisper", conversation_id=cid, body="Qëndro e qetë.")
    whisper = await counsellor.expect("whisper", conversation_id=cid)
    assert (whisper["from"]["name"], whisper["body"]) == ("Drita", "Qëndro e qetë.")
    assert all(f["type"] != "whisper" for f in await other.quiet(0.3))
    assert all(f["type"] not in ("whisper", "msg") for f in await child.quiet(0.3))
    engine = create_engine(live.settings.database_url)
    async with session_factory(engine)() as session:
        stored = (await session.execute(select(col(Whisper.body)))).scalars().all()
    await engine.dispose()
    assert stored == ["Qëndro e qetë."]


async def test_a_takeover_keeps_seq_continuous_and_releases_the_counsellor(
    live: LiveServer,
) -> None:
    child, counsellor, cid = await live.taken_chat("Ana")
    await child.send(type="send", client_id="1", body="Më ndihmoni.")
    await counsellor.expect("msg", seq=1)
    supervisor = await _supervisor(live)
    await supervisor.send(type="takeover", conversation_id=cid)
    assert (await supervisor.expect("assigned", conversation_id=cid))["last_seq"] == 1
    released = await counsellor.expect("released", conversation_id=cid)
    assert (released["reason"], released["by"]["name"]) == ("takeover", "Drita")
    await child.expect("state", status="active", counsellor={"name": "Drita"})
    await supervisor.send(type="send", conversation_id=cid, client_id="s", body="Jam Drita.")
    assert (await supervisor.expect("ack", client_id="s"))["seq"] == 2
    assert [m["seq"] for m in [await child.expect("msg", seq=1), await child.expect("msg", seq=2)]]
    await counsellor.send(type="send", conversation_id=cid, client_id="late", body="...")
    assert (await counsellor.expect("error", client_id="late"))["code"] == "forbidden"
    assert ("takeover", f"conversation:{cid}") in await _audit(live)


async def test_counsellors_are_refused_supervisor_actions_and_each_attempt_is_audited(
    live: LiveServer,
) -> None:
    child = await live.child()
    await child.send(type="start")
    counsellor = await live.counsellor()
    intruder = await live.counsellor()
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    assert counsellor.identity is not None
    attempts: list[dict[str, Any]] = [
        {"type": "monitor", "conversation_id": cid, "on": True},
        {"type": "whisper", "conversation_id": cid, "body": "psst"},
        {"type": "takeover", "conversation_id": cid},
        {"type": "assign", "conversation_id": cid, "to_user_id": str(counsellor.identity.id)},
        {"type": "block", "conversation_id": cid, "reason": "test"},
        {"type": "list_blocks"},
        {"type": "alert_ack", "alert_id": str(uuid.uuid4())},
    ]
    for attempt in attempts:
        await intruder.send(**attempt)
        refusal = await intruder.expect("error", in_reply_to=attempt["type"])
        assert refusal["code"] == "forbidden", attempt
    denied = [a for a, _t in await _audit(live) if a.endswith(".denied")]
    assert len(denied) == len(attempts)
    assert all(f["type"] not in ("msg", "ended") for f in await child.quiet(0.2))


async def test_monitoring_an_ended_chat_is_refused_as_closed(live: LiveServer) -> None:
    child = await live.child()
    await child.send(type="start")
    await child.send(type="end")
    await child.expect("ended")
    supervisor = await _supervisor(live)
    queue = supervisor.of_type("snapshot")[0]["queue"]
    assert queue == []
    cid = str(uuid.uuid4())
    await supervisor.send(type="monitor", conversation_id=cid, on=True)
    assert (await supervisor.expect("error"))["code"] == "not_found"
    counsellor = await live.counsellor()
    child2 = await live.child()
    await child2.send(type="start")
    await child2.expect("state")
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    await live.record(counsellor, cid, contact_type="silent")
    await counsellor.send(type="end", conversation_id=cid)
    await counsellor.expect("ended", conversation_id=cid)
    await supervisor.send(type="monitor", conversation_id=cid, on=True)
    assert (await supervisor.expect("error", in_reply_to="monitor"))["code"] == "closed"


async def test_a_supervisor_assigns_a_waiting_child_to_a_counsellor_with_room(
    live: LiveServer,
) -> None:
    busy = await live.counsellor(max_chats=1, name="Busy")
    free = await live.counsellor(max_chats=2, name="Free")
    first = await live.child()
    await first.send(type="start")
    await first.expect("state")
    await busy.send(type="take")
    await busy.expect("assigned")
    child = await live.child()
    await child.send(type="start")
    await child.expect("state")
    supervisor = await _supervisor(live)
    cid = supervisor.of_type("snapshot")[0]["queue"][0]["conversation_id"]
    assert busy.identity is not None and free.identity is not None
    await supervisor.send(type="assign", conversation_id=cid, to_user_id=str(busy.identity.id))
    refusal = await supervisor.expect("error", in_reply_to="assign")
    assert (refusal["code"], refusal["reason"]) == ("conflict", "at_capacity")
    await supervisor.send(type="assign", conversation_id=cid, to_user_id=str(free.identity.id))
    assert (await free.expect("assigned"))["conversation_id"] == cid
    await child.expect("state", status="active", counsellor={"name": "Free"})
    await supervisor.send(type="assign", conversation_id=cid, to_user_id=str(free.identity.id))
    assert (await supervisor.expect("error", in_reply_to="assign"))["code"] == "conflict"


async def test_a_takeover_cancels_a_transfer_waiting_for_a_colleague_and_tells_both(
    live: LiveServer,
) -> None:
    _child, ana, cid = await live.taken_chat("Ana")
    besnik = await live.counsellor(name="Besnik")
    assert besnik.identity is not None and besnik.cookie is not None
    await ana.send(type="transfer", conversation_id=cid, to_user_id=str(besnik.identity.id))
    await besnik.expect("transfer_offer", conversation_id=cid)
    await ana.expect("transfer_pending", conversation_id=cid)
    supervisor = await _supervisor(live)
    await supervisor.send(type="takeover", conversation_id=cid)
    await supervisor.expect("assigned", conversation_id=cid)
    withdrawn = await besnik.expect("transfer_withdrawn", conversation_id=cid)
    assert withdrawn["reason"] == "takeover"
    cancelled = await ana.expect("transfer_declined", conversation_id=cid)
    assert cancelled["reason"] == "takeover"
    await ana.expect("released", conversation_id=cid, reason="takeover")
    # The offer is gone for good: Besnik cannot accept a chat that is now the supervisor's,
    # and a console of his coming back is offered nothing.
    await besnik.send(type="transfer_accept", conversation_id=cid)
    refusal = await besnik.expect("error", in_reply_to="transfer_accept")
    assert (refusal["code"], refusal["reason"]) == ("conflict", "withdrawn")
    again = await live.staff_client(besnik.cookie)
    assert (await again.expect("snapshot"))["offers"] == []
    await supervisor.send(type="send", conversation_id=cid, client_id="s", body="Jam Drita.")
    assert (await supervisor.expect("ack", client_id="s"))["seq"] == 1


async def test_assign_refuses_a_counsellor_who_is_not_available(live: LiveServer) -> None:
    away = await live.counsellor(name="Away", available=False)  # offline: never on duty
    resting = await live.counsellor(name="Resting")
    await resting.send(type="status", value="break")
    await resting.expect("me", status="break")
    child = await live.child()
    await child.send(type="start")
    await child.expect("state")
    supervisor = await _supervisor(live)
    cid = supervisor.of_type("snapshot")[0]["queue"][0]["conversation_id"]
    for target in (away, resting):
        assert target.identity is not None
        await supervisor.send(
            type="assign", conversation_id=cid, to_user_id=str(target.identity.id)
        )
        refusal = await supervisor.expect("error", in_reply_to="assign")
        assert (refusal["code"], refusal["reason"]) == ("conflict", "unavailable"), refusal
    assert all(f["type"] != "assigned" for f in await away.quiet(0.2) + await resting.quiet(0.1))
    # Nothing changed: the child still waits, and a supervisor may take it for themself
    # whatever their own status (as a takeover is always theirs to make).
    me = supervisor.of_type("snapshot")[0]["me"]
    await supervisor.send(type="assign", conversation_id=cid, to_user_id=me["id"])
    await supervisor.expect("assigned", conversation_id=cid)
    await child.expect("state", status="active", counsellor={"name": "Drita"})


async def test_a_chat_assigned_after_a_transfer_to_the_queue_comes_with_its_note(
    live: LiveServer,
) -> None:
    _child, ana, cid = await live.taken_chat("Ana")
    await ana.send(type="transfer", conversation_id=cid, note="Flet vetëm shqip.")
    await ana.expect("released", conversation_id=cid)
    besnik = await live.counsellor(name="Besnik")
    assert besnik.identity is not None
    supervisor = await _supervisor(live)
    await supervisor.send(type="assign", conversation_id=cid, to_user_id=str(besnik.identity.id))
    await besnik.expect("assigned", conversation_id=cid)
    handover = await besnik.expect("handover", conversation_id=cid)
    assert (handover["from"]["name"], handover["note"]) == ("Ana", "Flet vetëm shqip.")


async def test_a_block_ends_the_chat_and_refuses_new_ones_until_lifted(live: LiveServer) -> None:
    child, _counsellor, cid = await live.taken_chat()
    supervisor = await _supervisor(live)
    await supervisor.send(
        type="block", conversation_id=cid, reason="Fyerje të përsëritura", hours=24
    )
    blocked = await supervisor.expect("blocked")
    assert blocked["conversation_id"] == cid
    assert (await child.expect("ended"))["reason"] == "blocked"
    again = await live.child()
    await again.send(type="start")
    refusal = await again.expect("error", in_reply_to="start")
    assert (refusal["code"], refusal["reason"]) == ("forbidden", "blocked")
    await supervisor.send(type="list_blocks")
    items = (await supervisor.expect("blocks"))["items"]
    assert [b["block_id"] for b in items] == [blocked["block_id"]]
    await supervisor.send(type="unblock", block_id=blocked["block_id"])
    await supervisor.expect("unblocked")
    await again.send(type="start")
    assert (await again.expect("state"))["status"] == "queued"
    await supervisor.send(type="list_blocks")
    assert (await supervisor.expect("blocks"))["items"] == []
    actions = [a for a, _t in await _audit(live)]
    assert "block" in actions and "unblock" in actions
    await supervisor.send(type="block", conversation_id=cid, reason="x", hours=100000)
    assert (await supervisor.expect("error", in_reply_to="block"))["code"] == "bad_request"


async def test_a_block_withdraws_the_offer_waiting_for_a_colleague(live: LiveServer) -> None:
    _child, ana, cid = await live.taken_chat("Ana")
    besnik = await live.counsellor(name="Besnik")
    assert besnik.identity is not None
    await ana.send(type="transfer", conversation_id=cid, to_user_id=str(besnik.identity.id))
    await besnik.expect("transfer_offer", conversation_id=cid)
    supervisor = await _supervisor(live)
    await supervisor.send(type="block", conversation_id=cid, reason="Fyerje", hours=1)
    await supervisor.expect("blocked")
    await ana.expect("ended", conversation_id=cid, reason="blocked")
    withdrawn = await besnik.expect("transfer_withdrawn", conversation_id=cid)
    assert withdrawn["reason"] == "ended"
    assert (await ana.expect("transfer_declined", conversation_id=cid))["reason"] == "ended"


def test_an_address_block_expires_by_itself() -> None:
    blocks = AddressBlocks()
    block_id = uuid.uuid4()
    blocks.add("10.0.0.7", block_id, utcnow() + timedelta(hours=1))
    blocks.add("10.0.0.8", uuid.uuid4(), utcnow() - timedelta(seconds=1))
    assert blocks.blocked("10.0.0.7") and not blocks.blocked("10.0.0.8")
    blocks.lift(block_id)
    assert not blocks.blocked("10.0.0.7")


async def test_alerts_reach_supervisors_and_are_acknowledged(make_live: MakeLive) -> None:
    live = await make_live(wait_alert_s=0.5)
    supervisor = await _supervisor(live)
    child = await live.child()
    await child.send(type="start", pre_chat={"in_danger": True})
    danger = await supervisor.expect("alert", kind="in_danger")
    long_wait = await supervisor.expect("alert", kind="long_wait", timeout=5)
    assert long_wait["conversation_id"] == danger["conversation_id"]
    await supervisor.send(type="alert_ack", alert_id=danger["id"])
    assert (await supervisor.expect("alert", id=danger["id"]))["acked"] is True
    await supervisor.send(type="alert_ack", alert_id=danger["id"])
    assert (await supervisor.expect("error", in_reply_to="alert_ack"))["code"] == "not_found"
    counsellor = await live.counsellor()
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    await counsellor.send(type="risk", conversation_id=cid, level="high")
    risk = await supervisor.expect("alert", kind="risk")
    assert risk["level"] == "high"
    floor = await supervisor.expect("floor")
    while [a["id"] for a in floor["alerts"]] != [risk["id"], long_wait["id"]]:
        floor = await supervisor.expect("floor", timeout=5)


async def test_the_floor_matches_the_real_state_after_a_scripted_shift(
    make_live: MakeLive,
) -> None:
    live = await make_live()
    ana = await live.counsellor(name="Ana", max_chats=2)
    besnik = await live.counsellor(name="Besnik", max_chats=1)
    await live.counsellor(name="Pushim", available=False)
    children = [await live.child() for _ in range(5)]
    for child in children:
        await child.send(type="start")
        await child.expect("state")
    cids = []
    for staff in (ana, ana, besnik):  # one after the other: the longest waiting go first
        await staff.send(type="take")
        cids.append((await staff.expect("assigned"))["conversation_id"])
    await children[0].send(type="send", client_id="q", body="A je aty?")
    await ana.send(type="risk", conversation_id=cids[0], level="imminent")
    supervisor = await _supervisor(live)
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        floor = supervisor.of_type("floor")[-1]
        shown = {s["name"]: (s["status"], s["load"], s["capacity"]) for s in floor["staff"]}
        if (
            floor["queue"]["count"] == 2
            and len(floor["chats"]) == 3
            and floor["chats"][0]["risk_level"] == "imminent"
        ):
            break
        assert asyncio.get_running_loop().time() < deadline, floor
        await supervisor.expect("floor")
    assert shown["Ana"] == ("available", 2, 2) and shown["Besnik"] == ("available", 1, 1)
    assert "Pushim" not in shown  # offline and without chats
    assert floor["queue"]["longest_wait_s"] >= 0
    assert floor["chats"][0]["conversation_id"] == cids[0]
    waiting = [c for c in floor["chats"] if c["waiting_for_reply_since"]]
    assert [c["conversation_id"] for c in waiting] == [cids[0]]
    flagged = [t for a, t in await _audit(live) if a == "risk.flag"]
    assert flagged == [f"conversation:{cids[0]}"]
