"""The audit log read back: filters and pages on both databases, the terminal table, and
who may read it. Administrators only: supervisors' own monitoring and take-overs are in
it, and the watchers do not review their own watch. Every reading, and every refused
attempt, leaves a row of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import audit_log
from chat_server.audit_log import Cursor
from chat_server.errors import Refused
from db.engine import create_engine, session_factory
from db.models import AuditEvent, StaffUser
from tests.conftest import LiveServer

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
TIRANA = ZoneInfo("Europe/Tirane")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def _user(db: async_sessionmaker[AsyncSession], username: str, role: str) -> uuid.UUID:
    user = StaffUser(username=username, display_name=username.title(), role=role, password_hash="-")
    async with db() as session, session.begin():
        session.add(user)
    return user.id


async def _event(
    db: async_sessionmaker[AsyncSession],
    minutes: float,
    action: str,
    actor: uuid.UUID | None = None,
    target: str | None = None,
    **detail: Any,
) -> None:
    async with db() as session, session.begin():
        session.add(
            AuditEvent(
                at=T0 + timedelta(minutes=minutes),
                action=action,
                actor_user_id=actor,
                target=target,
                detail=detail,
            )
        )


@pytest.fixture
async def shift(db: async_sessionmaker[AsyncSession]) -> dict[str, uuid.UUID]:
    """A morning on the floor, one event a minute from 09:00 UTC."""
    drita = await _user(db, "drita", "supervisor")
    ana = await _user(db, "ana", "counsellor")
    chat = uuid.UUID(int=1)
    await _event(db, 0, "auth.login", drita, f"user:{drita}")
    await _event(db, 1, "auth.login_failed", None, None)
    await _event(db, 2, "auth.login", ana, f"user:{ana}")
    await _event(db, 3, "monitor.start", drita, f"conversation:{chat}")
    await _event(db, 4, "whisper", drita, f"conversation:{chat}")
    await _event(db, 5, "monitor.stop", drita, f"conversation:{chat}")
    await _event(db, 6, "risk.flag", ana, f"conversation:{chat}", level="high")
    await _event(db, 7, "takeover", drita, f"conversation:{chat}", from_user_id=str(ana))
    await _event(db, 8, "monitor.denied", ana, f"conversation:{uuid.UUID(int=2)}")
    return {"drita": drita, "ana": ana}


async def _actions(db: async_sessionmaker[AsyncSession], **filters: Any) -> list[str]:
    base: dict[str, Any] = {"since": None, "until": None, "actor": None, "action": None}
    rows = await audit_log.query(db, **(base | {"limit": 100} | filters))
    return [row["action"] for row in rows]


# --- filters ------------------------------------------------------------------------------------


async def test_query_answers_newest_first_with_the_actor_spelled_out(
    db: async_sessionmaker[AsyncSession], shift: dict[str, uuid.UUID]
) -> None:
    rows = await audit_log.query(db, since=None, until=None, actor=None, action=None, limit=3)
    assert [r["action"] for r in rows] == ["monitor.denied", "takeover", "risk.flag"]
    takeover = rows[1]
    assert takeover["at"] == "2025-03-01T09:07:00Z"
    assert takeover["actor"] == {
        "id": str(shift["drita"]),
        "username": "drita",
        "name": "Drita",
        "role": "supervisor",
    }
    assert takeover["detail"] == {"from_user_id": str(shift["ana"])}
    assert takeover["target"] == f"conversation:{uuid.UUID(int=1)}"


async def test_query_filters_by_time_range_with_the_end_excluded(
    db: async_sessionmaker[AsyncSession], shift: dict[str, uuid.UUID]
) -> None:
    found = await _actions(db, since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=6))
    assert found == ["monitor.stop", "whisper", "monitor.start"]


async def test_query_filters_by_actor_username_and_action_prefix(
    db: async_sessionmaker[AsyncSession], shift: dict[str, uuid.UUID]
) -> None:
    assert await _actions(db, actor="ana") == ["monitor.denied", "risk.flag", "auth.login"]
    assert await _actions(db, actor=" Drita ", action="monitor.") == [
        "monitor.stop",
        "monitor.start",
    ]
    # A prefix: "auth.login" also finds the failed logins, and "monitor" the refusals.
    assert await _actions(db, action="auth.login") == [
        "auth.login",
        "auth.login_failed",
        "auth.login",
    ]
    assert "monitor.denied" in await _actions(db, action="monitor")
    assert await _actions(db, actor="nobody") == []
    # LIKE wildcards in a filter are plain characters.
    assert await _actions(db, action="%") == []
    assert await _actions(db, action="auth_") == []


async def test_query_filters_by_part_of_the_target(
    db: async_sessionmaker[AsyncSession], shift: dict[str, uuid.UUID]
) -> None:
    chat = str(uuid.UUID(int=1))
    found = await _actions(db, target=chat.upper())
    assert found == ["takeover", "risk.flag", "monitor.stop", "whisper", "monitor.start"]
    assert await _actions(db, target="user:", actor="ana") == ["auth.login"]


async def test_a_limit_outside_the_bounds_is_refused(
    db: async_sessionmaker[AsyncSession], shift: dict[str, uuid.UUID]
) -> None:
    for limit in (0, audit_log.MAX_LIMIT + 1):
        with pytest.raises(Refused, match="limit must be"):
            await audit_log.query(db, since=None, until=None, actor=None, action=None, limit=limit)


async def test_pages_walk_the_whole_log_without_gaps_or_repeats(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """Events sharing a timestamp still page cleanly: the id breaks the tie."""
    for i in range(7):
        await _event(db, 0, "case.view", None, f"case:{i}")
    await _event(db, 1, "case.create", None, "case:new")
    seen: list[str] = []
    pages: list[audit_log.Page] = []
    before: Cursor | None = None
    while True:
        page = await audit_log.read_page(db, action="case.", limit=3, before=before)
        pages.append(page)
        seen += [row["id"] for row in page.rows]
        if page.older is None:
            break
        before = page.older
    assert [len(p.rows) for p in pages] == [3, 3, 2]
    assert len(seen) == len(set(seen)) == 8
    assert pages[0].rows[0]["target"] == "case:new"
    assert pages[0].newer is None and pages[1].newer is not None
    # And back again, from the last page towards the newest.
    back = await audit_log.read_page(db, action="case.", limit=3, after=pages[2].newer)
    assert [r["id"] for r in back.rows] == [r["id"] for r in pages[1].rows]
    cursor = Cursor.parse(str(pages[1].older))
    assert cursor == pages[1].older
    assert await audit_log.count(db, action="case.") == 8


# --- text in and out -------------------------------------------------------------------------


def test_a_day_is_read_in_the_helpline_time_zone() -> None:
    # Tirana is UTC+1 in winter: the 1st of March starts at 23:00 UTC the day before.
    assert audit_log.parse_moment("2025-03-01", TIRANA) == datetime(2025, 2, 28, 23, tzinfo=UTC)
    end = audit_log.parse_moment("2025-03-01", TIRANA, end=True)
    assert end == datetime(2025, 3, 1, 23, tzinfo=UTC)
    assert audit_log.parse_moment("2025-03-01T10:00:00Z", TIRANA) == T0 + timedelta(hours=1)
    assert audit_log.parse_moment("2025-03-01T10:00", TIRANA) == T0 + timedelta(hours=1)
    assert audit_log.parse_moment("  ", TIRANA) is None
    with pytest.raises(Refused, match="'yesterday'"):
        audit_log.parse_moment("yesterday", TIRANA)
    with pytest.raises(Refused, match="page cursor"):
        Cursor.parse("2025-03-01_not-an-id")


async def test_rows_print_as_an_aligned_table_for_the_terminal(
    db: async_sessionmaker[AsyncSession], shift: dict[str, uuid.UUID]
) -> None:
    rows = await audit_log.query(db, since=None, until=None, actor=None, action="ri", limit=5)
    rows += await audit_log.query(
        db, since=None, until=None, actor=None, action="auth.login_", limit=5
    )
    lines = audit_log.format_rows(rows).splitlines()
    assert lines[0].split() == ["time", "(UTC)", "actor", "action", "target", "detail"]
    assert lines[1].startswith("2025-03-01 09:06:00  ana    risk.flag")
    assert lines[1].endswith("level=high")
    assert lines[2].startswith("2025-03-01 09:01:00  -      auth.login_failed  -")
    assert lines[1].index("risk.flag") == lines[2].index("auth.login_failed")
    assert audit_log.format_rows([]) == "no audit events match"


# --- who may read it, and the reading recorded ------------------------------------------------


async def _views(live: LiveServer) -> list[tuple[str, str | None, dict[str, Any]]]:
    engine = create_engine(live.settings.database_url)
    try:
        async with session_factory(engine)() as session:
            rows = await session.execute(
                select(
                    col(AuditEvent.action), col(AuditEvent.actor_user_id), col(AuditEvent.detail)
                )
                .where(
                    col(AuditEvent.action).startswith("audit.")
                    | col(AuditEvent.action).startswith("floor.")
                )
                .order_by(col(AuditEvent.at))
            )
            return [(a, str(u) if u else None, d) for a, u, d in rows]
    finally:
        await engine.dispose()


async def _get(live: LiveServer, path: str, cookie: str | None = None) -> httpx.Response:
    cookies = {"alo116_session": cookie} if cookie else {}
    async with httpx.AsyncClient(base_url=live.url, cookies=cookies) as http:
        return await http.get(path)


async def test_only_administrators_read_the_log_and_every_attempt_is_recorded(
    live: LiveServer,
) -> None:
    counsellor, counsellor_cookie = await live.staff("counsellor")
    supervisor, supervisor_cookie = await live.staff("supervisor")
    admin, admin_cookie = await live.staff("admin")
    assert (await _get(live, "/api/audit")).status_code == 401
    for cookie in (counsellor_cookie, supervisor_cookie):
        refused = await _get(live, "/api/audit?action=monitor", cookie)
        assert refused.status_code == 403
        assert refused.json()["error"] == "forbidden"
    answer = await _get(live, "/api/audit?action=auth.login&limit=2", admin_cookie)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert [row["action"] for row in body["items"]] == ["auth.login", "auth.login"]
    assert body["items"][0]["actor"]["username"] == admin.username
    assert body["next_before"] is not None  # three logins: a second page waits
    older = await _get(
        live, f"/api/audit?action=auth.login&before={body['next_before']}", admin_cookie
    )
    assert [row["actor"]["username"] for row in older.json()["items"]] == [counsellor.username]
    views = await _views(live)
    assert [(a, u) for a, u, _ in views] == [
        ("audit.view.denied", str(counsellor.id)),
        ("audit.view.denied", str(supervisor.id)),
        ("audit.view", str(admin.id)),
        ("audit.view", str(admin.id)),
    ]
    assert views[0][2] == {"via": "api", "filters": {"action": "monitor"}}
    assert views[2][2] == {"via": "api", "filters": {"action": "auth.login", "limit": "2"}}
    # The reading shows up in the log it reads.
    mine = await _get(live, "/api/audit?action=audit.view&limit=1", admin_cookie)
    assert mine.json()["items"][0]["actor"]["id"] == str(admin.id)


async def test_bad_filters_are_refused_with_the_value_quoted(live: LiveServer) -> None:
    _admin, cookie = await live.staff("admin")
    for query, quoted in (
        ("since=yesterday", "'yesterday'"),
        ("limit=0", "'0'"),
        ("limit=many", "'many'"),
        ("before=nowhere", "'nowhere'"),
        ("since=2025-03-02&until=2025-03-01", "before its start"),
    ):
        answer = await _get(live, f"/api/audit?{query}", cookie)
        assert answer.status_code == 400, query
        assert quoted in answer.json()["message"]


async def test_the_audit_page_is_for_administrators_and_is_itself_audited(
    live: LiveServer,
) -> None:
    supervisor, supervisor_cookie = await live.staff("supervisor", name="Drita")
    admin, admin_cookie = await live.staff("admin", name="Arben")
    anonymous = await _get(live, "/console/audit?lang=en")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/console/login?lang=en"
    refused = await _get(live, "/console/audit", supervisor_cookie)
    assert refused.status_code == 403
    assert "Regjistri i auditimit është vetëm për administratorët" in refused.text
    page = await _get(live, f"/console/audit?lang=en&actor={supervisor.username}", admin_cookie)
    assert page.status_code == 200
    assert "Refused the audit log" in page.text and "Signed in" in page.text
    assert "Matching events: 2" in page.text
    assert "content-security-policy" in page.headers
    bad = await _get(live, "/console/audit?lang=en&since=03/01/2025", admin_cookie)
    assert bad.status_code == 400 and "03/01/2025" in bad.text
    views = await _views(live)
    assert [(a, u, d.get("via")) for a, u, d in views] == [
        ("audit.view.denied", str(supervisor.id), "page"),
        ("audit.view", str(admin.id), "page"),
        ("audit.view", str(admin.id), "page"),
    ]
    assert views[1][2]["filters"] == {"actor": supervisor.username}


async def test_the_floor_page_is_for_supervisors_and_administrators(live: LiveServer) -> None:
    counsellor, counsellor_cookie = await live.staff("counsellor")
    _supervisor, supervisor_cookie = await live.staff("supervisor", name="Drita")
    _admin, admin_cookie = await live.staff("admin")
    assert (await _get(live, "/console/floor")).headers["location"] == "/console/login?lang=sq"
    refused = await _get(live, "/console/floor?lang=en", counsellor_cookie)
    assert refused.status_code == 403
    assert "for supervisors and administrators" in refused.text
    for cookie in (supervisor_cookie, admin_cookie):
        page = await _get(live, "/console/floor", cookie)
        assert page.status_code == 200
        assert 'id="floor-config"' in page.text and "Mbikëqyrja e turnit" in page.text
        assert "<script>" not in page.text  # the CSP allows no inline script
    views = await _views(live)
    assert [(a, u) for a, u, _ in views] == [("floor.view.denied", str(counsellor.id))]
