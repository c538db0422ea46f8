"""Two-step login (TOTP) with recovery codes: set-up, the login's second step, what a
half-logged-in session may not do, replays, throttling, and the rule for supervisors."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
import websockets
from argon2 import PasswordHasher
from sqlalchemy import select, update
from sqlmodel import col
from websockets.exceptions import ConnectionClosed

from chat_server import login, passwords, two_factor
from chat_server.accounts import SESSION_COOKIE, StaffIdentity, token_hash
from db.models import AuditEvent, StaffRecoveryCode, StaffSession, StaffUser, utcnow
from tests.casework_support import csrf_of, database
from tests.conftest import PASSWORD, LiveServer, MakeLive

# The main flow runs on both databases; the variations on SQLite only, to keep it quick.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(autouse=True)
def quick_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap hashes for the accounts these tests make (the server runs in-process)."""
    monkeypatch.setattr(
        passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


RECOVERY = re.compile(r"<code>([a-z2-9]{5}-[a-z2-9]{5})</code>")


def client(live: LiveServer, cookie: str | None = None) -> httpx.AsyncClient:
    cookies = {SESSION_COOKIE: cookie} if cookie else {}
    return httpx.AsyncClient(base_url=live.url, cookies=cookies)


async def fresh_code(live: LiveServer, staff: StaffIdentity, secret: str) -> str:
    """The current code, with the record of used steps cleared (so a test never waits
    for the next 30-second step; replays are tested on purpose elsewhere)."""
    async with database(live) as db, db() as session, session.begin():
        await session.execute(
            update(StaffUser).where(col(StaffUser.id) == staff.id).values(totp_last_step=None)
        )
    return two_factor.code_at(secret, two_factor.current_step())


async def with_two_factor(live: LiveServer, staff: StaffIdentity) -> tuple[str, list[str]]:
    """Turn two-step login on for `staff` as the set-up page would: secret and codes."""
    async with database(live) as db:
        setup = await login.begin_setup(db, live.settings, staff)
        codes = await login.finish_setup(
            db, live.settings, staff, two_factor.code_at(setup.secret, two_factor.current_step())
        )
    return setup.secret, codes


async def password_step(live: LiveServer, staff: StaffIdentity, **extra: Any) -> httpx.Response:
    async with client(live) as http:
        return await http.post(
            "/api/login", json={"username": staff.username, "password": PASSWORD, **extra}
        )


async def second_step(live: LiveServer, pending: str, code: str) -> httpx.Response:
    async with client(live, pending) as http:
        return await http.post("/api/login/2fa", json={"code": code})


async def refused_socket(live: LiveServer, cookie: str) -> bool:
    raw = await websockets.connect(
        f"{live.ws_url}/ws/staff", additional_headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}
    )
    with pytest.raises(ConnectionClosed) as closed:
        await raw.recv()
    return closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_setting_up_two_step_login_and_logging_in_with_it(live: LiveServer) -> None:
    staff, cookie = await live.staff()
    async with client(live, cookie) as http:
        page = await http.get("/console/account/2fa?lang=en")
        assert page.status_code == 200
        secret = re.search(r'<code class="secret" translate="no">([A-Z2-7 ]+)</code>', page.text)
        assert secret is not None and 'src="data:image/svg+xml' in page.text
        secret_key = secret.group(1).replace(" ", "")
        token = csrf_of(page.text)
        wrong = await http.post(
            "/console/account/2fa/enable", data={"csrf": token, "code": "000000"}
        )
        assert wrong.status_code == 400 and secret.group(1) in wrong.text  # same secret again
        right = await http.post(
            "/console/account/2fa/enable",
            data={"csrf": token, "code": two_factor.code_at(secret_key, two_factor.current_step())},
        )
        assert right.status_code == 200 and right.headers["cache-control"] == "no-store"
        codes = RECOVERY.findall(right.text)
        assert len(codes) == 10 and len(set(codes)) == 10
    async with database(live) as db, db() as session:
        user = await session.get(StaffUser, staff.id)
        assert user is not None and user.totp_secret and user.totp_pending_secret is None
        assert secret_key not in user.totp_secret  # encrypted at rest
        stored = set((await session.execute(select(col(StaffRecoveryCode.code_hash)))).scalars())
        assert len(stored) == 10 and not stored & set(codes)

    first = await password_step(live, staff)
    assert first.status_code == 200
    assert first.json() == {"step": "second_factor", "next": "/console/login/2fa"}
    pending = first.cookies[SESSION_COOKIE]
    # A half session opens nothing but the second step.
    assert await refused_socket(live, pending)
    async with client(live, pending) as http:
        assert (await http.get("/api/cases")).status_code == 401
        for path in ("/console", "/console/login", "/console/account"):
            answer = await http.get(path)
            assert (answer.status_code, answer.headers["location"]) == (
                303,
                "/console/login/2fa?lang=sq",
            ), path
    wrong_code = await second_step(live, pending, "123456")
    assert (wrong_code.status_code, wrong_code.json()) == (401, {"error": "invalid_credentials"})
    code = await fresh_code(live, staff, secret_key)
    done = await second_step(live, pending, code)
    assert done.status_code == 200 and done.json()["id"] == str(staff.id)
    full = done.cookies[SESSION_COOKIE]
    assert full != pending
    assert (await second_step(live, pending, code)).status_code == 401  # the half session is over
    async with client(live, full) as http:
        assert (await http.get("/console")).status_code == 200

    # The same code cannot be used twice, even for a new login.
    again = (await password_step(live, staff)).cookies[SESSION_COOKIE]
    assert (await second_step(live, again, code)).status_code == 401
    # A recovery code works once.
    assert (await second_step(live, again, codes[0].upper())).status_code == 200
    again = (await password_step(live, staff)).cookies[SESSION_COOKIE]
    assert (await second_step(live, again, codes[0])).status_code == 401
    async with database(live) as db, db() as session:
        logins = (
            await session.execute(
                select(col(AuditEvent.detail)).where(
                    col(AuditEvent.action) == "auth.login",
                    col(AuditEvent.actor_user_id) == staff.id,
                )
            )
        ).scalars()
        ways = [d.get("second_factor") for d in logins]
        assert ways.count("totp") == 1 and ways.count("recovery") == 1


@sqlite_only
async def test_the_second_step_as_a_page_needs_its_csrf_token(live: LiveServer) -> None:
    staff, _cookie = await live.staff()
    secret, _codes = await with_two_factor(live, staff)
    pending = (await password_step(live, staff)).cookies[SESSION_COOKIE]
    async with client(live, pending) as http:
        page = await http.get("/console/login/2fa?lang=en")
        assert page.status_code == 200 and 'autocomplete="one-time-code"' in page.text
        code = await fresh_code(live, staff, secret)
        for token in (None, "0" * 64):
            data = {"code": code} | ({"csrf": token} if token else {})
            assert (await http.post("/console/login/2fa", data=data)).status_code == 403
        answer = await http.post(
            "/console/login/2fa?lang=en", data={"code": code, "csrf": csrf_of(page.text)}
        )
        assert (answer.status_code, answer.headers["location"]) == (303, "/console?lang=en")
        full = answer.cookies[SESSION_COOKIE]
    async with client(live, full) as http:
        assert (await http.get("/console")).status_code == 200


@sqlite_only
async def test_a_tool_may_give_the_code_with_the_password(live: LiveServer) -> None:
    staff, _cookie = await live.staff()
    secret, _codes = await with_two_factor(live, staff)
    assert (await password_step(live, staff, code="000000")).status_code == 401
    answer = await password_step(live, staff, code=await fresh_code(live, staff, secret))
    assert answer.status_code == 200 and answer.json()["role"] == "counsellor"


@sqlite_only
async def test_supervisors_must_set_up_two_step_login_when_it_is_required(
    make_live: MakeLive,
) -> None:
    live = await make_live(two_factor_required=True)
    _counsellor, counsellor_cookie = await live.staff("counsellor")  # not required
    async with client(live, counsellor_cookie) as http:
        assert (await http.get("/console")).status_code == 200
    _supervisor, cookie = await live.staff("supervisor")
    assert await refused_socket(live, cookie)
    async with client(live, cookie) as http:
        assert (await http.get("/api/cases")).status_code == 401
        console = await http.get("/console")
        assert console.headers["location"] == "/console/account/2fa?lang=sq"
        page = await http.get("/console/account/2fa?lang=en")
        assert "requires two-step login" in page.text
        secret = re.search(r'<code class="secret" translate="no">([A-Z2-7 ]+)</code>', page.text)
        assert secret is not None
        code = two_factor.code_at(secret.group(1).replace(" ", ""), two_factor.current_step())
        enabled = await http.post(
            "/console/account/2fa/enable", data={"csrf": csrf_of(page.text), "code": code}
        )
        assert enabled.status_code == 200
        assert (await http.get("/console")).status_code == 200
        manage = await http.get("/console/account/2fa?lang=en")
        assert "cannot be turned off" in manage.text
        off = await http.post(
            "/console/account/2fa/disable", data={"csrf": csrf_of(manage.text), "code": "123456"}
        )
        assert off.status_code == 403
    socket = await live.staff_client(cookie)
    await socket.expect("snapshot")


@sqlite_only
async def test_wrong_codes_count_towards_the_lock(make_live: MakeLive) -> None:
    live = await make_live(login_delay_after=2, login_lock_after=3, login_address_failures=1000)
    staff, _cookie = await live.staff()
    secret, _codes = await with_two_factor(live, staff)
    pending = (await password_step(live, staff)).cookies[SESSION_COOKIE]
    assert (await second_step(live, pending, "111111")).status_code == 401
    assert (await second_step(live, pending, "222222")).status_code == 401
    code = await fresh_code(live, staff, secret)
    assert (await second_step(live, pending, code)).status_code == 429


@sqlite_only
async def test_a_half_session_lives_only_minutes(live: LiveServer) -> None:
    staff, _cookie = await live.staff()
    secret, _codes = await with_two_factor(live, staff)
    pending = (await password_step(live, staff)).cookies[SESSION_COOKIE]
    async with database(live) as db, db() as session, session.begin():
        row = (
            await session.execute(
                select(StaffSession).where(col(StaffSession.token_hash) == token_hash(pending))
            )
        ).scalar_one()
        assert row.pending_second_factor
        assert row.expires_at - row.created_at == timedelta(
            seconds=live.settings.second_factor_timeout_s
        )
        row.expires_at = utcnow() - timedelta(seconds=1)
    answer = await second_step(live, pending, await fresh_code(live, staff, secret))
    assert (answer.status_code, answer.json()["error"]) == (401, "unauthorized")


@sqlite_only
async def test_turning_two_step_login_off_and_new_recovery_codes(live: LiveServer) -> None:
    staff, cookie = await live.staff()
    secret, old_codes = await with_two_factor(live, staff)
    async with client(live, cookie) as http:
        manage = await http.get("/console/account/2fa?lang=en")
        token = csrf_of(manage.text)
        renewed = await http.post(
            "/console/account/2fa/recovery-codes",
            data={"csrf": token, "code": await fresh_code(live, staff, secret)},
        )
        new_codes = RECOVERY.findall(renewed.text)
        assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
        wrong = await http.post(
            "/console/account/2fa/disable", data={"csrf": token, "code": "000000"}
        )
        assert wrong.status_code == 400
        off = await http.post(
            "/console/account/2fa/disable",
            data={"csrf": token, "code": await fresh_code(live, staff, secret)},
        )
        assert off.status_code == 303
    answer = await password_step(live, staff)
    assert answer.json()["id"] == str(staff.id)  # no second step any more
