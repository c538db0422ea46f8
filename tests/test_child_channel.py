"""What the child's page needs from the server: availability, left messages, return
codes and quick exit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from chat_server.brokers import Event
from chat_server.brokers.memory import MemoryBroker
from chat_server.conversations import Conversations
from db.models import Conversation
from tests.conftest import LiveServer, MakeLive


async def test_welcome_says_honestly_whether_someone_can_answer(live: LiveServer) -> None:
    child = await live.child()
    nobody = child.of_type("welcome")[0]["availability"]
    assert nobody == {"open": False, "counsellors_online": 0, "reason": "nobody_online"}
    await live.counsellor()
    later = await live.child()
    assert later.of_type("welcome")[0]["availability"] == {"open": True, "counsellors_online": 1}


async def test_outside_opening_hours_the_child_is_told_the_line_is_closed(
    make_live: MakeLive,
) -> None:
    now = datetime.now(UTC).astimezone(ZoneInfo("Europe/Tirane"))
    start, end = now + timedelta(hours=1), now + timedelta(hours=2)
    live = await make_live(opening_hours=f"{start:%H:%M}-{end:%H:%M}")
    await live.counsellor()
    child = await live.child()
    assert child.of_type("welcome")[0]["availability"]["reason"] == "closed"


async def test_a_long_wait_offers_to_leave_a_message(make_live: MakeLive) -> None:
    live = await make_live(wait_threshold_s=60)
    await live.counsellor(max_chats=1)
    first = await live.child()
    await first.send(type="start")
    assert (await first.expect("state"))["availability"]["open"] is True
    second = await live.child()
    await second.send(type="start")
    state = await second.expect("state")
    assert state["position"] == 2 and state["estimated_wait_s"] > 60
    assert state["availability"]["reason"] == "busy"


async def test_a_left_message_is_answered_and_read_later_with_the_return_code(
    make_live: MakeLive,
) -> None:
    live = await make_live(child_queue_grace_s=0.5)
    child = await live.child()
    old_token = child.token
    await child.send(type="start", mode="message", pre_chat={"age_band": "10-12"})
    assert (await child.expect("state"))["mode"] == "message"
    await child.send(type="send", client_id="m1", body="Kam frikë të flas me prindërit.")
    await child.expect("ack", client_id="m1")
    await child.send(type="return_code")
    code = (await child.expect("return_code"))["code"]
    assert len(code.split("-")) == 4
    await child.close()
    await asyncio.sleep(1.5)  # past the queue grace: a left message still waits

    counsellor = await live.counsellor()
    queue = (await counsellor.expect("queue"))["items"]
    assert [(i["mode"], i["child_online"]) for i in queue] == [("message", False)]
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    assert (await counsellor.expect("msg", conversation_id=cid))["seq"] == 1
    await counsellor.send(type="send", conversation_id=cid, client_id="r1", body="Jemi këtu.")
    await counsellor.expect("ack", client_id="r1")

    # On another device, typed differently: the whole conversation comes back.
    typed = code.upper().replace("-", " ")
    back = await live.child(return_code=typed)
    welcome = back.of_type("welcome")[0]
    assert welcome["status"] == "active" and welcome["token"] != old_token
    msgs = [f for f in await back.quiet(0.5) if f["type"] == "msg"]
    assert [m["seq"] for m in msgs] == [1, 2] and msgs[1]["body"] == "Jemi këtu."
    # The old device's token no longer opens it.
    stale = await live.child(token=old_token)
    assert stale.of_type("welcome")[0]["status"] == "new"


async def test_wrong_return_codes_are_refused_and_then_rate_limited(make_live: MakeLive) -> None:
    live = await make_live(return_code_attempts=3)
    child = await live.child()
    await child.send(type="start", mode="message")
    await child.send(type="return_code")
    code = (await child.expect("return_code"))["code"]
    guesser = await live.ws_connection()
    for attempt in range(3):
        await guesser.send(type="hello", v=1, return_code=f"mal-det-yll-{10 + attempt}")
        refusal = await guesser.expect("error")
        assert (refusal["code"], refusal["message"]) == ("not_found", "that code is not right")
    await guesser.send(type="hello", v=1, return_code=code)
    assert (await guesser.expect("error"))["code"] == "rate_limited"


async def test_quick_exit_takes_a_waiting_child_out_of_the_queue(live: LiveServer) -> None:
    counsellor = await live.counsellor(max_chats=1)
    busy = await live.child()
    await busy.send(type="start")
    await busy.expect("state")
    await counsellor.send(type="take")
    await counsellor.expect("assigned")
    child = await live.child()
    await child.send(type="start")
    await child.expect("state")
    async with httpx.AsyncClient(base_url=live.url) as http:
        answer = await http.post(
            "/api/child/quick-exit",
            content=child.token,
            headers={"content-type": "text/plain;charset=UTF-8"},
        )
        assert answer.status_code == 204
        # Unknown or malformed tokens get the same answer: it tells nothing.
        assert (await http.post("/api/child/quick-exit", content="x" * 40)).status_code == 204
        assert (await http.post("/api/child/quick-exit", content="x" * 5000)).status_code == 204
    deadline = asyncio.get_running_loop().time() + 10
    while (await counsellor.expect("queue"))["items"]:
        assert asyncio.get_running_loop().time() < deadline


async def test_quick_exit_mid_chat_tells_the_counsellor_and_forgets_the_token(
    live: LiveServer,
) -> None:
    child = await live.child()
    await child.send(type="start")
    counsellor = await live.counsellor()
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    async with httpx.AsyncClient(base_url=live.url) as http:
        await http.post("/api/child/quick-exit", content=child.token)
    left = await counsellor.expect("presence", conversation_id=cid, child="left_quickly")
    assert left["child"] == "left_quickly"
    again = await live.child(token=child.token)
    assert again.of_type("welcome")[0]["status"] == "new"


async def test_a_chat_taken_before_the_childs_socket_follows_it_still_shows_as_taken(
    make_live: MakeLive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child's `start` commits, a counsellor takes the chat at once, and only then
    does the child's socket join the chat's channel: the `active` event went to nobody
    here, so the state the child is sent must be read after the join."""
    started, taken = asyncio.Event(), asyncio.Event()
    start = Conversations.start

    async def start_then_wait(self: Conversations, *args: Any, **kwargs: Any) -> Conversation:
        conversation = await start(self, *args, **kwargs)
        started.set()
        await taken.wait()
        return conversation

    monkeypatch.setattr(Conversations, "start", start_then_wait)
    live = await make_live()
    counsellor = await live.counsellor(name="Ana")
    child = await live.child()
    await child.send(type="start")
    await asyncio.wait_for(started.wait(), 10)
    await counsellor.send(type="take")
    await counsellor.expect("assigned")
    # The empty queue is published after the child's `active` event; and the broker
    # delivers on a later turn of the loop: let it go by, to nobody on the child's side.
    await counsellor.expect("queue", items=[])
    await asyncio.sleep(0.3)
    taken.set()
    state = await child.expect("state")
    assert (state["status"], state.get("counsellor")) == ("active", {"name": "Ana"})


async def test_a_lost_status_event_is_repaired_from_the_database(
    make_live: MakeLive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pub/sub may drop any event, not only messages: a child whose `active` never came
    must not stay on "waiting" while a counsellor writes to them."""
    publish = MemoryBroker.publish

    async def drop_status_to_children(self: MemoryBroker, channel: str, event: Event) -> None:
        if event.get("type") == "state" and event.get("_to") == "child":
            return
        await publish(self, channel, event)

    monkeypatch.setattr(MemoryBroker, "publish", drop_status_to_children)
    live = await make_live()  # a heartbeat every 0.5 s
    child = await live.child()
    await child.send(type="start")
    await child.expect("state", status="queued")
    counsellor = await live.counsellor(name="Ana")
    await counsellor.send(type="take")
    await counsellor.expect("assigned")
    state = await child.expect("state", status="active", timeout=5)
    assert state.get("counsellor") == {"name": "Ana"}
