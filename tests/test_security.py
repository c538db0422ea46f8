"""Staff sessions, passwords, login throttling, headers and rate limits (docs/security.md)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
import websockets
from argon2 import PasswordHasher
from sqlalchemy import func, select, update
from sqlmodel import col
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chat_server import accounts, passwords
from chat_server.accounts import SESSION_COOKIE, token_hash
from chat_server.errors import Refused
from chat_server.ratelimit import login_key
from db.models import AuditEvent, LoginThrottle, StaffSession, StaffUser, utcnow
from tests.casework_support import database
from tests.clients import Client, connect_staff
from tests.conftest import PASSWORD, LiveServer, MakeLive

# Not about the database: these run on SQLite only, to keep the suite quick.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(autouse=True)
def quick_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap hashes for the accounts these tests make (the server runs in-process); the
    tests of the parameters themselves ask for `real_argon2`."""
    monkeypatch.setattr(
        passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture
def real_argon2(quick_argon2: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "HASHER", REAL_HASHER)


REAL_HASHER = passwords.HASHER


async def log_in(live: LiveServer, username: str, password: str = PASSWORD) -> httpx.Response:
    async with httpx.AsyncClient(base_url=live.url) as http:
        return await http.post("/api/login", json={"username": username, "password": password})


async def new_session(live: LiveServer, username: str) -> str:
    answer = await log_in(live, username)
    assert answer.status_code == 200, answer.text
    return answer.cookies[SESSION_COOKIE]


async def console(live: LiveServer, cookie: str) -> Client:
    client = await live.staff_client(cookie)
    await client.expect("snapshot")
    return client


async def closed_with(client: Client, timeout: float = 5.0) -> int:
    """The close code the server sent, once the socket closes within `timeout`."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(timeout):
            while True:
                await client.connection.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def alive(client: Client) -> bool:
    await client.send(type="ping")
    await client.expect("pong")
    return True


async def post(
    live: LiveServer, path: str, cookie: str | None, body: Any = None, **headers: str
) -> httpx.Response:
    cookies = {SESSION_COOKIE: cookie} if cookie else {}
    async with httpx.AsyncClient(base_url=live.url, cookies=cookies) as http:
        return await http.post(path, json={} if body is None else body, headers=headers)


async def page_status(live: LiveServer, cookie: str) -> tuple[int, str]:
    async with httpx.AsyncClient(base_url=live.url, cookies={SESSION_COOKIE: cookie}) as http:
        answer = await http.get("/console")
    return answer.status_code, answer.headers.get("location", "")


async def set_session(live: LiveServer, cookie: str, **values: Any) -> None:
    async with database(live) as db, db() as session, session.begin():
        await session.execute(
            update(StaffSession)
            .where(col(StaffSession.token_hash) == token_hash(cookie))
            .values(**values)
        )


# --- the session cookie and the session's life ---------------------------------------------


@sqlite_only
async def test_the_session_cookie_is_httponly_strict_and_never_readable(live: LiveServer) -> None:
    staff, _cookie = await live.staff()
    answer = await log_in(live, staff.username)
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain HTTP in tests: a Secure cookie would never return
    async with database(live) as db, db() as session:
        stored = (await session.execute(select(col(StaffSession.token_hash)))).scalars().all()
    assert answer.cookies[SESSION_COOKIE] not in stored  # only its hash is kept


@sqlite_only
async def test_behind_https_the_cookie_is_secure_and_hsts_is_sent(make_live: MakeLive) -> None:
    live = await make_live(public_url="https://chat.116111.al")
    staff, _cookie = await live.staff()
    answer = await log_in(live, staff.username)
    assert "secure" in answer.headers["set-cookie"].lower()
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    async with httpx.AsyncClient(base_url=live.url) as http:
        page = await http.get("/chat")
    assert "upgrade-insecure-requests" in page.headers["content-security-policy"]


async def test_a_session_ends_after_its_idle_time_and_its_lifetime(live: LiveServer) -> None:
    staff, idle_cookie = await live.staff()
    assert await page_status(live, idle_cookie) == (200, "")
    idle = timedelta(seconds=live.settings.session_idle_s + 1)
    await set_session(live, idle_cookie, last_seen_at=utcnow() - idle)
    assert await page_status(live, idle_cookie) == (303, "/console/login")

    old_cookie = await new_session(live, staff.username)
    await set_session(live, old_cookie, expires_at=utcnow() - timedelta(seconds=1))
    assert await page_status(live, old_cookie) == (303, "/console/login")


async def test_logout_closes_only_the_consoles_of_that_session(live: LiveServer) -> None:
    staff, laptop = await live.staff()
    phone = await new_session(live, staff.username)
    on_laptop, on_phone = await console(live, laptop), await console(live, phone)
    assert (await post(live, "/api/logout", laptop)).status_code == 200
    assert await closed_with(on_laptop) == 4401
    assert await alive(on_phone)
    assert await page_status(live, laptop) == (303, "/console/login")
    assert await page_status(live, phone) == (200, "")


async def test_log_out_everywhere_ends_every_session_and_closes_every_console(
    live: LiveServer,
) -> None:
    staff, laptop = await live.staff()
    phone = await new_session(live, staff.username)
    on_laptop, on_phone = await console(live, laptop), await console(live, phone)
    answer = await post(live, "/api/logout-everywhere", phone)
    assert answer.status_code == 200 and answer.json() == {"sessions_ended": 2}
    assert await closed_with(on_laptop) == 4401
    assert await closed_with(on_phone) == 4401
    for cookie in (laptop, phone):
        assert await page_status(live, cookie) == (303, "/console/login")
    async with database(live) as db, db() as session:
        actions = (
            await session.execute(
                select(col(AuditEvent.action)).where(col(AuditEvent.actor_user_id) == staff.id)
            )
        ).scalars()
        assert "auth.logout_everywhere" in set(actions)


async def test_a_password_change_ends_every_other_session(live: LiveServer) -> None:
    staff, here = await live.staff()
    elsewhere = await new_session(live, staff.username)
    there = await console(live, elsewhere)
    wrong = await post(
        live,
        "/api/account/password",
        here,
        {"current_password": "not it at all", "new_password": "a new long phrase"},
    )
    assert (wrong.status_code, wrong.json()["field"]) == (400, "current_password")
    weak = await post(
        live,
        "/api/account/password",
        here,
        {"current_password": PASSWORD, "new_password": "Password2024!"},
    )
    assert (weak.status_code, weak.json()["field"]) == (400, "password")
    answer = await post(
        live,
        "/api/account/password",
        here,
        {"current_password": PASSWORD, "new_password": "lantern orchard violet"},
    )
    assert answer.status_code == 200, answer.text
    assert await closed_with(there) == 4401
    assert await page_status(live, here) == (200, "")
    assert await page_status(live, elsewhere) == (303, "/console/login")
    assert (await log_in(live, staff.username)).status_code == 401
    assert (await log_in(live, staff.username, "lantern orchard violet")).status_code == 200


async def test_deactivating_an_account_ends_its_sessions_and_its_logins(live: LiveServer) -> None:
    staff, cookie = await live.staff("counsellor")
    _admin, admin_cookie = await live.staff("admin")
    _other, other_cookie = await live.staff("supervisor")
    on_duty = await console(live, cookie)
    path = f"/api/staff/{staff.id}/deactivate"
    assert (await post(live, path, other_cookie)).status_code == 403
    assert (await post(live, path, admin_cookie)).status_code == 200
    assert await closed_with(on_duty) == 4401
    assert await page_status(live, cookie) == (303, "/console/login")
    refused = await log_in(live, staff.username)
    assert (refused.status_code, refused.json()) == (401, {"error": "invalid_credentials"})
    assert (await post(live, f"/api/staff/{staff.id}/reactivate", admin_cookie)).status_code == 200
    assert (await log_in(live, staff.username)).status_code == 200


@sqlite_only
async def test_a_console_notices_a_session_that_ended_without_a_word(
    make_live: MakeLive,
) -> None:
    live = await make_live(session_check_interval_s=0.2)
    _staff, cookie = await live.staff()
    on_duty = await console(live, cookie)
    await set_session(live, cookie, expires_at=utcnow() - timedelta(seconds=1))
    assert await closed_with(on_duty) == 4401


@sqlite_only
async def test_an_open_console_keeps_its_session_in_use(make_live: MakeLive) -> None:
    live = await make_live(session_check_interval_s=0.2, session_idle_s=3)
    _staff, cookie = await live.staff()
    on_duty = await console(live, cookie)
    await set_session(live, cookie, last_seen_at=utcnow() - timedelta(seconds=2.5))
    await asyncio.sleep(1)  # idle by the clock of HTTP requests, but the console is open
    assert await alive(on_duty)
    assert await page_status(live, cookie) == (200, "")


# --- passwords -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["short", "Password2024!", "qwertyuiop", "1234567890", "aaaaaaaaaaaa", "Tester2024!!"],
)
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(Refused) as refused:
        passwords.check(password, username="tester", display_name="Zz Tester")
    assert refused.value.context["field"] == "password"


def test_a_phrase_of_unrelated_words_is_accepted() -> None:
    passwords.check("lantern orchard violet", username="ana", display_name="Ana Hoxha")
    assert len(passwords.common_passwords()) >= 10_000


def test_the_argon2id_parameters_are_sound(real_argon2: None) -> None:
    hasher = passwords.HASHER
    assert hasher.type.name == "ID"
    assert hasher.memory_cost >= 64 * 1024 and hasher.time_cost >= 3


async def test_a_hash_with_old_parameters_is_upgraded_at_login(
    live: LiveServer, real_argon2: None
) -> None:
    staff, _cookie = await live.staff()
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    async with database(live) as db:
        async with db() as session, session.begin():
            user = await session.get(StaffUser, staff.id)
            assert user is not None
            user.password_hash = weak
        assert (await log_in(live, staff.username)).status_code == 200
        async with db() as session:
            user = await session.get(StaffUser, staff.id)
        assert user is not None and user.password_hash != weak
        assert "m=65536,t=3,p=4" in user.password_hash
        assert not passwords.needs_rehash(user.password_hash)


# --- login throttling ----------------------------------------------------------------------


async def _age_failures(live: LiveServer, username: str, seconds: float) -> None:
    key = login_key(live.settings.secret_key, username)
    async with database(live) as db, db() as session, session.begin():
        row = await session.get(LoginThrottle, key)
        assert row is not None
        row.last_failure_at = row.last_failure_at - timedelta(seconds=seconds)


async def test_failed_logins_slow_down_then_lock_alike_for_known_and_unknown_names(
    make_live: MakeLive,
) -> None:
    live = await make_live(
        login_delay_after=2, login_lock_after=4, login_lock_s=600, login_address_failures=1000
    )
    staff, _cookie = await live.staff()
    answers: dict[str, list[tuple[int, Any]]] = {}
    for name in (staff.username, "nobody-here"):
        seen = answers[name] = []
        for _ in range(2):
            answer = await log_in(live, name, "wrong password!")
            seen.append((answer.status_code, answer.json()))
        too_soon = await log_in(live, name, "wrong password!")
        seen.append((too_soon.status_code, too_soon.json()["error"]))
        assert int(too_soon.headers["retry-after"]) >= 1
        await _age_failures(live, name, 2)
        seen.append(((await log_in(live, name, "wrong password!")).status_code, None))
        await _age_failures(live, name, 3)
        seen.append(((await log_in(live, name, "wrong password!")).status_code, None))
        locked = await log_in(live, name, PASSWORD)  # even the right password
        seen.append((locked.status_code, locked.json()["error"]))
        assert int(locked.headers["retry-after"]) > 500
    invalid = (401, {"error": "invalid_credentials"})
    expected = [invalid, invalid, (429, "rate_limited"), (401, None), (401, None)]
    assert answers[staff.username] == answers["nobody-here"] == [*expected, (429, "rate_limited")]

    key = login_key(live.settings.secret_key, staff.username)
    async with database(live) as db:
        async with db() as session, session.begin():
            row = await session.get(LoginThrottle, key)
            assert row is not None
            row.locked_until = utcnow() - timedelta(seconds=1)
            row.last_failure_at = utcnow() - timedelta(seconds=60)
        assert (await log_in(live, staff.username)).status_code == 200
        async with db() as session:
            assert await session.get(LoginThrottle, key) is None  # a success forgives
            failures = await session.execute(
                select(func.count())
                .select_from(AuditEvent)
                .where(
                    col(AuditEvent.action) == "auth.login_failed",
                    col(AuditEvent.actor_user_id) == staff.id,
                )
            )
            assert failures.scalar_one() == 6  # every failure audited, throttled ones too


@sqlite_only
async def test_an_address_that_keeps_failing_is_paused_in_memory(make_live: MakeLive) -> None:
    live = await make_live(login_address_failures=3)
    staff, _cookie = await live.staff()
    for n in range(3):
        assert (await log_in(live, f"guess{n}", "wrong password!")).status_code == 401
    paused = await log_in(live, staff.username)
    assert (paused.status_code, paused.json()["error"]) == (429, "rate_limited")


# --- headers ------------------------------------------------------------------------------


@sqlite_only
async def test_every_page_has_a_strict_policy_and_only_the_child_page_may_be_framed(
    make_live: MakeLive,
) -> None:
    live = await make_live(allowed_origins="https://www.alo116.al,https://116111.al")
    async with httpx.AsyncClient(base_url=live.url) as http:
        child = await http.get("/chat")
        staff = await http.get("/console/login")
        api = await http.post("/api/login", json={})
    for answer in (child, staff, api):
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "style-src 'self';" in csp
        assert (
            "unsafe-inline" not in csp
            and "unsafe-eval" not in csp
            and "http" not in csp.split("frame-ancestors")[0]
        )
        assert "object-src 'none'" in csp and "base-uri 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "camera=()" in answer.headers["permissions-policy"]
        assert "strict-transport-security" not in answer.headers  # plain HTTP
    assert child.headers["content-security-policy"].endswith(
        "frame-ancestors https://www.alo116.al https://116111.al"
    )
    assert "x-frame-options" not in child.headers
    for answer in (staff, api):
        assert answer.headers["content-security-policy"].endswith("frame-ancestors 'none'")
        assert answer.headers["x-frame-options"] == "DENY"


@sqlite_only
async def test_without_helpline_origins_the_child_page_is_never_framed(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url) as http:
        child = await http.get("/chat")
    assert child.headers["content-security-policy"].endswith("frame-ancestors 'none'")


# --- origins and rate limits ----------------------------------------------------------------


@sqlite_only
async def test_websockets_accept_a_helpline_origin_and_refuse_any_other(
    make_live: MakeLive,
) -> None:
    live = await make_live(allowed_origins="https://116111.al")
    _staff, cookie = await live.staff()
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    child = await websockets.connect(f"{live.ws_url}/ws/child", origin="https://116111.al")  # type: ignore[arg-type]
    await child.close()
    for path in ("/ws/child", "/ws/staff"):
        for origin in ("https://evil.example", "https://116111.al.evil.example", "null"):
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(
                    f"{live.ws_url}{path}",
                    origin=origin,  # type: ignore[arg-type]
                    additional_headers=headers,
                )
            assert refused.value.response.status_code == 403
    own = await connect_staff(live.ws_url, cookie)
    await own.expect("snapshot")
    await own.close()


@sqlite_only
async def test_a_json_write_needs_json_from_our_origin(live: LiveServer) -> None:
    _staff, cookie = await live.staff()
    async with httpx.AsyncClient(base_url=live.url, cookies={SESSION_COOKIE: cookie}) as http:
        form = await http.post("/api/logout-everywhere", data={"x": "1"})
        assert form.status_code == 415
        text = await http.post(
            "/api/logout-everywhere", content=b"{}", headers={"content-type": "text/plain"}
        )
        assert text.status_code == 415
        foreign = await http.post(
            "/api/logout-everywhere", json={}, headers={"origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
    assert await page_status(live, cookie) == (200, "")


@sqlite_only
async def test_staff_api_writes_have_a_budget_per_staff_member(make_live: MakeLive) -> None:
    live = await make_live(staff_writes_per_minute=1, staff_write_burst=3)
    _staff, cookie = await live.staff()
    _other, other_cookie = await live.staff()
    answers = [
        (await post(live, "/api/contacts", cookie, {"channel": "phone"})).status_code
        for _ in range(4)
    ]
    assert answers[:3] != [429] * 3 and answers[3] == 429
    limited = await post(live, "/api/contacts", cookie, {"channel": "phone"})
    assert (limited.json()["error"], limited.headers["retry-after"]) == ("rate_limited", "5")
    mine = await post(live, "/api/account/password", cookie, {})
    assert mine.status_code == 429  # the same budget covers every JSON write
    assert (
        await post(live, "/api/contacts", other_cookie, {"channel": "phone"})
    ).status_code != 429


@sqlite_only
async def test_new_chats_from_one_address_are_limited(make_live: MakeLive) -> None:
    live = await make_live(new_chats_per_address=2)
    for n in range(3):
        child = await live.child()
        await child.send(type="start")
        if n < 2:
            await child.expect("state")
        else:
            error = await child.expect("error")
            assert (error["code"], error["in_reply_to"]) == ("rate_limited", "start")
            await child.send(type="ping")
            await child.expect("pong")  # refused, not dropped: the socket lives


async def test_the_common_password_list_ships_with_the_code() -> None:
    lines = passwords.COMMON_FILE.read_text(encoding="utf-8").splitlines()
    words = [line for line in lines if line and not line.startswith("#")]
    assert words[:3] == ["123456", "password", "12345678"]
    assert all(w == w.lower().strip() for w in words)
    assert json.dumps(words)  # plain text, one per line


@sqlite_only
async def test_creating_an_account_applies_the_password_policy(live: LiveServer) -> None:
    async with database(live) as db:
        with pytest.raises(Refused):
            await accounts.create_user(db, username="drita", password="drita12345", role="admin")
