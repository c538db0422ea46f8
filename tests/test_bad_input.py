"""Every bad input gets a clear answer and loses nothing; the connection lives on."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import LiveServer


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        ("not json at all", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": 7}', "string 'type'"),
        ('{"type": "dance"}', "unknown message type 'dance'"),
        ('{"type": "send", "client_id": "a"}', "body"),
        ('{"type": "send", "client_id": "a", "body": "   "}', "blank"),
        ('{"type": "typing", "on": "yes"}', "on"),
        ('{"type": "read", "seq": -4}', "seq"),
    ],
)
async def test_a_broken_child_frame_gets_bad_request_and_the_socket_lives(
    live: LiveServer, frame: str, needle: str
) -> None:
    child = await live.child()
    await child.send(type="start")
    await child.send_raw(frame)
    error = await child.expect("error")
    assert error["code"] == "bad_request"
    assert needle in error["message"]
    await child.send(type="send", client_id="after", body="still here")
    assert (await child.expect("ack", client_id="after"))["seq"] == 1


async def test_a_binary_frame_is_refused_and_the_socket_lives(live: LiveServer) -> None:
    child = await live.child()
    await child.send_raw(b"\x00\x01")
    assert (await child.expect("error"))["code"] == "bad_request"
    await child.send(type="start")
    await child.expect("state")


async def test_an_over_long_body_is_refused_as_too_large(live: LiveServer) -> None:
    child = await live.child()
    await child.send(type="start")
    await child.send(type="send", client_id="long", body="a" * 2001)
    error = await child.expect("error")
    assert (error["code"], error["in_reply_to"]) == ("too_large", "send")
    await child.send(type="send", client_id="ok", body="a" * 2000)
    assert (await child.expect("ack", client_id="ok"))["seq"] == 1


async def test_a_frame_over_the_size_limit_closes_with_1009(live: LiveServer) -> None:
    child = await live.child()
    await child.send(type="start")
    await child.send_raw(json.dumps({"type": "send", "client_id": "x", "body": "a" * 17000}))
    with pytest.raises(ConnectionClosed) as closed:
        await child.recv()
        await child.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_frames_before_hello_and_sends_before_start_are_refused(live: LiveServer) -> None:
    raw = await websockets.connect(f"{live.ws_url}/ws/child")
    try:
        await raw.send(json.dumps({"type": "start"}))
        error = json.loads(await raw.recv())
        assert (error["code"], error["message"]) == ("bad_request", "say hello first")
    finally:
        await raw.close()
    child = await live.child()
    await child.send(type="send", client_id="c", body="hi")
    assert (await child.expect("error"))["code"] == "conflict"
    await child.send(type="start")
    await child.expect("state")
    await child.send(type="start")
    assert (await child.expect("error"))["code"] == "conflict"


async def test_too_many_messages_too_fast_are_answered_rate_limited(live: LiveServer) -> None:
    child = await live.child()
    await child.send(type="start")
    for n in range(14):
        await child.send(type="send", client_id=f"m{n}", body="spam")
    frames = await child.quiet(0.8)
    acks = [f for f in frames if f["type"] == "ack"]
    limited = [f for f in frames if f["type"] == "error" and f["code"] == "rate_limited"]
    assert len(acks) >= 10 and limited and len(acks) + len(limited) == 14
    assert all("client_id" in f for f in limited)


async def test_a_staff_socket_without_a_session_closes_with_4401(live: LiveServer) -> None:
    for headers in ({}, {"Cookie": "alo116_session=forged-token-value"}):
        raw = await websockets.connect(f"{live.ws_url}/ws/staff", additional_headers=headers)
        with pytest.raises(ConnectionClosed) as closed:
            await raw.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_a_staff_session_ends_at_logout(live: LiveServer) -> None:
    _staff, cookie = await live.staff()
    async with httpx.AsyncClient(base_url=live.url, cookies={"alo116_session": cookie}) as http:
        assert (await http.post("/api/logout", json={})).status_code == 200
    raw = await websockets.connect(
        f"{live.ws_url}/ws/staff", additional_headers={"Cookie": f"alo116_session={cookie}"}
    )
    with pytest.raises(ConnectionClosed) as closed:
        await raw.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_a_websocket_from_a_foreign_origin_is_refused(live: LiveServer) -> None:
    for path in ("/ws/child", "/ws/staff"):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(
                f"{live.ws_url}{path}",
                origin="https://evil.example",  # type: ignore[arg-type]
            )
        assert refused.value.response.status_code == 403


async def test_wrong_credentials_get_one_answer_whatever_was_wrong(live: LiveServer) -> None:
    staff, _cookie = await live.staff()
    async with httpx.AsyncClient(base_url=live.url) as http:
        unknown = await http.post("/api/login", json={"username": "nobody", "password": "x" * 12})
        wrong = await http.post(
            "/api/login", json={"username": staff.username, "password": "wrong password"}
        )
        assert unknown.status_code == wrong.status_code == 401
        assert unknown.json() == wrong.json() == {"error": "invalid_credentials"}
        assert "set-cookie" not in unknown.headers
        form = await http.post("/api/login", data={"username": staff.username})
        assert form.status_code == 415
        broken = await http.post(
            "/api/login", content=b"{", headers={"content-type": "application/json"}
        )
        assert broken.status_code == 400
        foreign = await http.post(
            "/api/login",
            json={"username": staff.username, "password": "correct horse battery"},
            headers={"origin": "https://evil.example"},
        )
        assert foreign.status_code == 403


async def test_health_reports_the_database(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url) as http:
        answer = await http.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


async def test_a_deeply_nested_frame_is_refused_and_the_socket_lives(live: LiveServer) -> None:
    child = await live.child()
    await child.send_raw("[" * 5000)
    assert (await child.expect("error"))["code"] == "bad_request"
    await child.send(type="start")
    await child.expect("state")


async def test_every_refused_send_names_its_client_id(live: LiveServer) -> None:
    child = await live.child()
    await child.send(type="send", client_id="early", body="hi")  # before start
    assert (await child.expect("error"))["client_id"] == "early"
    await child.send(type="start")
    await child.send(type="send", client_id="blank", body="\u200b \n")
    assert (await child.expect("error", client_id="blank"))["code"] == "bad_request"
    await child.send(type="end")
    await child.expect("ended")
    await child.send(type="send", client_id="late", body="hello?")
    late = await child.expect("error", client_id="late")
    assert (late["code"], late["in_reply_to"]) == ("closed", "send")


async def test_an_unknown_token_is_replaced_by_a_fresh_one(live: LiveServer) -> None:
    made_up = "x" * 40
    child = await live.child(token=made_up, last_seq=0)
    assert child.token != made_up and len(child.token or "") >= 40
    assert child.of_type("welcome")[0]["status"] == "new"
