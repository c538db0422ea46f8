"""After a full scenario, neither a dump of every table nor the logs hold anything that
points at a child: no address, no user agent, no raw token, no return code; the logs hold
no message text; staff secrets are stored only hashed or encrypted."""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import inspect, text

from chat_server import login, two_factor
from chat_server.accounts import SESSION_COOKIE
from db.engine import create_engine
from tests.casework_support import database, http, on_duty
from tests.clients import Client
from tests.conftest import PASSWORD, LiveServer, MakeLive

CHILD_ADDRESS = "203.0.113.77"  # what a proxy in front of the server says the child is
USER_AGENT = "ProbeAgent/7.7 (Linux; Android 9; SM-J530F)"
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")


async def dump(url: str) -> str:
    """Every row of every table in the database, as text."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
            assert len(tables) > 15
            parts: list[str] = []
            for table in tables:
                rows = await connection.execute(text(f'SELECT * FROM "{table}"'))
                parts.extend(f"{table}: {tuple(row)!r}" for row in rows)
            return "\n".join(parts)
    finally:
        await engine.dispose()


async def child_behind_proxy(live: LiveServer, **hello: Any) -> Client:
    connection = await websockets.connect(
        f"{live.ws_url}/ws/child",
        compression=None,
        user_agent_header=USER_AGENT,
        additional_headers={"X-Forwarded-For": CHILD_ADDRESS},
    )
    child = Client(connection)
    live.clients.append(child)
    await child.send(type="hello", v=1, **hello)
    child.token = (await child.expect("welcome"))["token"]
    return child


async def test_a_full_scenario_leaves_nothing_that_points_at_a_child(
    make_live: MakeLive, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    live = await make_live()
    # uvicorn's handshake lines name addresses; its loggers do not propagate to the root.
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    uvicorn_logs = logging.getLogger("uvicorn")
    uvicorn_logs.addHandler(caplog.handler)
    try:
        await scenario_and_checks(live, caplog)
    finally:
        uvicorn_logs.removeHandler(caplog.handler)


async def scenario_and_checks(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    body = f"Më ndihmoni, {secrets.token_hex(6)}"
    reply = f"Jam këtu, {secrets.token_hex(6)}"
    whisper = f"Pyet për shkollën {secrets.token_hex(6)}"
    late = f"Erdha përsëri {secrets.token_hex(6)}"

    counsellor = await on_duty(live, name="Ana")
    supervisor = await on_duty(live, "supervisor", name="Drita")
    child = await child_behind_proxy(live, lang="sq")
    await child.send(type="start", pre_chat={"age_band": "13-15", "in_danger": True})
    await child.expect("state", status="queued")
    await counsellor.send(type="take")
    cid = (await counsellor.expect("assigned"))["conversation_id"]
    await child.send(type="send", client_id="c1", body=body)
    await child.expect("ack", client_id="c1")
    await counsellor.send(type="send", conversation_id=cid, client_id="s1", body=reply)
    await child.expect("msg", body=reply)
    await child.send(type="typing", on=True)
    await supervisor.send(type="monitor", conversation_id=cid, on=True)
    await supervisor.expect("monitoring", conversation_id=cid)
    await supervisor.send(type="whisper", conversation_id=cid, body=whisper)
    await counsellor.expect("whisper", conversation_id=cid)
    await child.send(type="return_code")
    code = (await child.expect("return_code"))["code"]
    await child.close()

    back = await child_behind_proxy(live, lang="sq", return_code=code)
    await back.expect("msg", body=reply)
    await back.send(type="send", client_id="c2", body=late)
    await back.expect("ack", client_id="c2")
    async with http(live, counsellor.cookie) as api:
        assert (
            await api.put(
                f"/api/records/{cid}", json={"summary": "s", "contact_type": "counselling"}
            )
        ).status_code == 200
        case = await api.post("/api/cases", json={"conversation_id": cid})
        assert case.status_code == 201, case.text
    await counsellor.send(type="end", conversation_id=cid)
    await back.expect("ended")
    await back.send(type="feedback", rating=5, helped=True)

    other = await child_behind_proxy(live, lang="en")
    await other.send(type="start")
    await other.expect("state")
    async with httpx.AsyncClient(base_url=live.url) as anyone:
        gone = await anyone.post(
            "/api/child/quick-exit",
            content=other.token,
            headers={"content-type": "text/plain", "X-Forwarded-For": CHILD_ADDRESS},
        )
        assert gone.status_code == 204

    # A staff member with two-step login, for the staff secrets.
    staff, cookie = await live.staff("counsellor")
    async with database(live) as db:
        setup = await login.begin_setup(db, live.settings, staff)
        recovery = await login.finish_setup(
            db, live.settings, staff, two_factor.code_at(setup.secret, two_factor.current_step())
        )

    everything = await dump(live.settings.database_url)
    assert body in everything  # the transcript is kept (until retention), only that
    never = {
        "the child's address": CHILD_ADDRESS,
        "the test client's address": "127.0.0.1",
        "the user agent": "ProbeAgent",
        "the first token": child.token,
        "the second token": back.token,
        "the quick-exit token": other.token,
        "the return code": code,
        "the return code, spaced": code.replace("-", " "),
        "a staff password": PASSWORD,
        "a session cookie": cookie,
        "a session cookie (on duty)": counsellor.cookie,
        "the TOTP secret": setup.secret,
        "a recovery code": recovery[0],
    }
    for what, value in never.items():
        assert value and value not in everything, f"{what} is in the database"
    assert not IPV4.findall(everything), "an IPv4 address is in the database"
    assert "::1" not in everything

    # The server's logs: the test's own clients (websockets.client, httpx) are not it.
    server_records = [
        r
        for r in caplog.records
        if not r.name.startswith(("websockets.client", "httpx", "httpcore"))
    ]
    logged = "\n".join(
        record.getMessage() + (f"\n{record.exc_text}" if record.exc_text else "")
        for record in server_records
    )
    assert any("WebSocket /ws/child" in r.getMessage() for r in server_records)
    for what, value in {
        **never,
        "a child's message": body,
        "a later message": late,
        "a counsellor's message": reply,
        "a whisper": whisper,
    }.items():
        assert value not in logged, f"{what} is in the logs"


async def test_database_errors_never_quote_the_values_of_a_statement(live: LiveServer) -> None:
    engine = create_engine(live.settings.database_url)
    try:
        assert engine.sync_engine.hide_parameters
    finally:
        await engine.dispose()


async def test_the_session_cookie_is_not_in_any_page(live: LiveServer) -> None:
    _staff, cookie = await live.staff()
    async with httpx.AsyncClient(base_url=live.url, cookies={SESSION_COOKIE: cookie}) as client:
        for path in ("/console", "/console/account", "/console/account/password"):
            page = await client.get(path)
            assert page.status_code == 200 and cookie not in page.text
