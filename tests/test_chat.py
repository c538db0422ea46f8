"""A child and a counsellor chat end to end through a real server, on both databases."""

from __future__ import annotations

import asyncio

from tests.conftest import LiveServer, MakeLive, new_id


async def test_a_child_and_a_counsellor_chat_from_queue_to_feedback(live: LiveServer) -> None:
    child = await live.child(lang="sq")
    await child.send(type="start", pre_chat={"age_band": "13-15", "topic": "school"})
    state = await child.expect("state", status="queued")
    assert state["position"] == 1

    counsellor = await live.counsellor(name="Ana")
    queue = await counsellor.expect("queue")
    assert [i["pre_chat"] for i in queue["items"]] == [{"age_band": "13-15", "topic": "school"}]

    await counsellor.send(type="take")
    assigned = await counsellor.expect("assigned")
    cid = assigned["conversation_id"]
    assert (await child.expect("state", status="active"))["counsellor"] == {"name": "Ana"}

    await child.send(type="send", client_id="c1", body="Përshëndetje")
    ack = await child.expect("ack", client_id="c1")
    assert ack["seq"] == 1
    got = await counsellor.expect("msg", seq=1)
    assert (got["from"], got["body"], got["conversation_id"]) == ("child", "Përshëndetje", cid)

    await counsellor.send(type="send", conversation_id=cid, client_id="k1", body="Si je?")
    assert (await counsellor.expect("ack", client_id="k1"))["seq"] == 2
    reply = await child.expect("msg", seq=2)
    assert (reply["from"], reply["body"]) == ("counsellor", "Si je?")
    assert "conversation_id" not in reply

    await child.send(type="typing", on=True)
    assert (await counsellor.expect("typing", conversation_id=cid))["on"] is True
    await counsellor.send(type="typing", conversation_id=cid, on=True)
    assert await child.expect("typing", on=True) == {"type": "typing", "on": True}

    await child.send(type="read", seq=2)
    assert (await counsellor.expect("read", conversation_id=cid))["seq"] == 2
    await counsellor.send(type="read", conversation_id=cid, seq=1)
    assert await child.expect("read") == {"type": "read", "seq": 1}

    # A chat is closed only once its contact is recorded.
    await counsellor.send(type="end", conversation_id=cid)
    refusal = await counsellor.expect("error", in_reply_to="end")
    assert (refusal["code"], refusal["field"]) == ("conflict", "contact_type")
    await live.record(counsellor, cid, categories=["education.academic"])
    await counsellor.send(type="end", conversation_id=cid)
    assert (await child.expect("ended"))["reason"] == "counsellor_ended"
    final = await live.record_of(counsellor, cid)
    assert (final["status"], final["contact_type"]) == ("final", "counselling")
    assert (await counsellor.expect("ended", conversation_id=cid))["reason"] == "counsellor_ended"

    await child.send(type="feedback", rating=5, helped=True)
    await child.send(type="feedback", rating=4)
    assert (await child.expect("error"))["code"] == "conflict"  # once only
    # Nobody sees their own typing or read receipt echoed, and only one of each message.
    assert [f["seq"] for f in child.of_type("msg")] == [1, 2]
    assert [f["seq"] for f in counsellor.of_type("msg")] == [1, 2]
    assert not [f for f in child.seen if f["type"] == "typing" and f.get("from") == "child"]


async def test_resume_replays_exactly_the_missed_messages_in_order(live: LiveServer) -> None:
    child = await live.child()
    token = child.token
    await child.send(type="start")
    counsellor = await live.counsellor()
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    for n in range(1, 4):
        await child.send(type="send", client_id=f"c{n}", body=f"child {n}")
        await child.expect("ack", client_id=f"c{n}")
    await child.close()
    for n in range(1, 3):
        await counsellor.send(type="send", conversation_id=cid, client_id=f"k{n}", body=f"k {n}")
        await counsellor.expect("ack", client_id=f"k{n}")

    back = await live.child(token=token, last_seq=3)
    frames = await back.quiet(0.5)
    msgs = [f for f in frames if f["type"] == "msg"]
    assert [(m["seq"], m["body"]) for m in msgs] == [(4, "k 1"), (5, "k 2")]
    assert back.of_type("welcome")[0]["status"] == "active"
    assert back.of_type("welcome")[0]["last_seq"] == 5


async def test_a_repeated_client_id_is_stored_once_and_acked_with_the_same_seq(
    live: LiveServer,
) -> None:
    child = await live.child()
    await child.send(type="start")
    await child.send(type="send", client_id="same", body="once")
    first = await child.expect("ack", client_id="same")
    await child.send(type="send", client_id="same", body="once")
    second = await child.expect("ack", client_id="same")
    assert first["seq"] == second["seq"] == 1
    await child.send(type="send", client_id="next", body="two")
    assert (await child.expect("ack", client_id="next"))["seq"] == 2

    counsellor = await live.counsellor()
    await counsellor.send(type="take")
    await counsellor.expect("assigned")
    frames = await counsellor.quiet(0.5)
    assert [f["seq"] for f in frames if f["type"] == "msg"] == [1, 2]


async def test_concurrent_sends_get_gap_free_sequence_numbers(live: LiveServer) -> None:
    child = await live.child()
    await child.send(type="start")
    counsellor = await live.counsellor()
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    sends = [child.send(type="send", client_id=f"c{n}", body=f"c{n}") for n in range(8)]
    sends += [
        counsellor.send(type="send", conversation_id=cid, client_id=f"k{n}", body=f"k{n}")
        for n in range(8)
    ]
    await asyncio.gather(*sends)
    for n in range(8):
        await child.expect("ack", client_id=f"c{n}")
        await counsellor.expect("ack", client_id=f"k{n}")
    await asyncio.sleep(0.3)
    await child.quiet(0.2)
    assert sorted(f["seq"] for f in child.of_type("msg")) == list(range(1, 17))
    assert [f["seq"] for f in child.of_type("msg")] == list(range(1, 17))
    await counsellor.quiet(0.2)
    assert [f["seq"] for f in counsellor.of_type("msg")] == list(range(1, 17))


def test_ids_are_unique() -> None:
    assert new_id() != new_id()


async def test_ping_is_answered_with_pong_on_both_sockets(live: LiveServer) -> None:
    child = await live.ws_connection()
    await child.send(type="ping")  # even before hello
    assert await child.expect("pong") == {"type": "pong"}
    counsellor = await live.counsellor()
    await counsellor.send(type="ping")
    assert await counsellor.expect("pong") == {"type": "pong"}


async def test_a_counsellors_other_consoles_learn_what_was_read(live: LiveServer) -> None:
    child = await live.child()
    await child.send(type="start")
    counsellor = await live.counsellor()
    assert counsellor.cookie is not None
    other_tab = await live.staff_client(counsellor.cookie)
    await other_tab.expect("snapshot")
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    await child.send(type="send", client_id="c", body="hi")
    await counsellor.expect("msg", seq=1)
    await counsellor.send(type="read", conversation_id=cid, seq=1)
    assert (await other_tab.expect("read", conversation_id=cid))["seq"] == 1
    third = await live.staff_client(counsellor.cookie)
    assert (await third.expect("snapshot"))["chats"][0]["staff_read_seq"] == 1


async def test_a_console_coming_back_gets_each_message_once_in_order(
    make_live: MakeLive,
) -> None:
    """The chats of a reconnecting console wait for its `resume`: what came meanwhile is
    sent once, in order, not live first and again in the replay."""
    live = await make_live(resume_grace_s=30.0)
    child = await live.child()
    await child.send(type="start")
    counsellor = await live.counsellor()
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    await child.send(type="send", client_id="c1", body="one")
    await counsellor.expect("msg", seq=1)

    assert counsellor.cookie is not None
    back = await live.staff_client(counsellor.cookie)
    await back.expect("snapshot")
    await child.send(type="send", client_id="c2", body="two")
    await child.expect("ack", client_id="c2")
    await back.send(type="resume", conversation_id=cid, last_seq=0)
    await back.expect("msg", seq=2)
    await child.send(type="send", client_id="c3", body="three")
    await back.expect("msg", seq=3)
    assert [f["seq"] for f in back.of_type("msg")] == [1, 2, 3]


async def test_a_console_that_never_resumes_still_gets_what_came_after_it(
    make_live: MakeLive,
) -> None:
    live = await make_live(resume_grace_s=0.3)
    child = await live.child()
    await child.send(type="start")
    counsellor = await live.counsellor()
    await counsellor.send(type="take")
    await counsellor.expect("assigned")
    assert counsellor.cookie is not None
    back = await live.staff_client(counsellor.cookie)
    await back.expect("snapshot")
    for k in (1, 2):
        await child.send(type="send", client_id=f"c{k}", body=f"m{k}")
        await child.expect("ack", client_id=f"c{k}")
    await back.expect("msg", seq=2, timeout=5)
    assert [f["seq"] for f in back.of_type("msg")] == [1, 2]
