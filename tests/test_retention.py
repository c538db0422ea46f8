"""Retention: the purge removes exactly what it should, a dry run changes nothing, the
daily sweep runs once a day, and every report figure is the same before and after."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import cli, retention
from chat_server.cases import HELPLINE_TZ
from chat_server.settings import Settings
from db.casework import CaseEvent, CaseFile, ContactRecord, Organization, Referral, Service
from db.engine import create_engine, session_factory
from db.models import (
    AuditEvent,
    Block,
    Conversation,
    LoginThrottle,
    Message,
    StaffSession,
    StaffUser,
    Whisper,
    utcnow,
)
from tests.casework_support import staff_http
from tests.conftest import LiveServer, MakeLive

DAY = timedelta(days=1)


@dataclass
class Seeded:
    """The conversations and rows the seed made, by what should become of them."""

    purged: list[uuid.UUID]  # transcripts that must go
    kept: list[uuid.UUID]  # transcripts that must stay
    old_case: uuid.UUID
    kept_cases: list[uuid.UUID]
    old_offline: uuid.UUID
    recent_offline: uuid.UUID


async def seed(db: async_sessionmaker[AsyncSession]) -> Seeded:
    now = utcnow()
    async with db() as session, session.begin():
        staff = StaffUser(username=f"r{secrets.token_hex(4)}", display_name="R", role="counsellor",
                          password_hash="!")  # fmt: skip
        session.add(staff)
        organization = Organization(name="Njësia e Mbrojtjes së Fëmijëve")
        session.add(organization)
        await session.flush()
        service = Service(organization_id=organization.id, name="Vlerësim")
        session.add(service)

        def chat(ended_days: float | None, created_days: float) -> Conversation:
            created = now - created_days * DAY
            conversation = Conversation(
                status="ended" if ended_days is not None else "active",
                child_token_hash=secrets.token_hex(32),
                return_code_hash=secrets.token_hex(32),
                pre_chat={"age_band": "13-15", "in_danger": True},
                assigned_user_id=staff.id,
                created_at=created,
                queued_at=created,
                assigned_at=created + timedelta(minutes=3),
                ended_at=now - ended_days * DAY if ended_days is not None else None,
                transfer_note="nga Ana",
                feedback_rating=4,
                feedback_helped=True,
            )
            session.add(conversation)
            return conversation

        def case(status: str, closed_days: float | None, opened_days: float) -> CaseFile:
            row = CaseFile(
                number=f"T-{secrets.token_hex(4)}",
                status=status,
                pseudonym="Drita",
                summary="e ndjeshme",
                opened_by_user_id=staff.id,
                created_at=now - opened_days * DAY,
                closed_at=now - closed_days * DAY if closed_days is not None else None,
            )
            session.add(row)
            return row

        unlinked_old = chat(40, 40.1)
        unlinked_recent = chat(10, 10.1)
        open_case_chat = chat(40, 40.1)
        old_case_chat = chat(6 * 365, 6 * 365 + 1)
        recent_case_chat = chat(400, 400.1)
        still_active = chat(None, 40)
        open_case = case("open", None, 40)
        old_case = case("closed", 6 * 365 - 10, 6 * 365)
        recent_case = case("closed", 300, 400)
        await session.flush()
        for conversation, linked in (
            (unlinked_old, None),
            (unlinked_recent, None),
            (open_case_chat, open_case),
            (old_case_chat, old_case),
            (recent_case_chat, recent_case),
            (still_active, None),
        ):
            session.add(
                ContactRecord(
                    conversation_id=conversation.id,
                    contact_type="counselling",
                    categories=["violence.bullying"],
                    age_band="13-15",
                    gender="girl",
                    status="final",
                    summary="Flet për shkollën",
                    case_id=linked.id if linked else None,
                    counsellor_user_id=staff.id,
                    contact_at=conversation.created_at,
                )
            )
            for seq in (1, 2):
                session.add(
                    Message(
                        conversation_id=conversation.id,
                        seq=seq,
                        sender="child" if seq == 1 else "counsellor",
                        body=f"mesazh {seq}",
                        created_at=conversation.created_at,
                    )
                )
            session.add(
                Whisper(conversation_id=conversation.id, author_user_id=staff.id, body="kujdes")
            )
        old_offline = ContactRecord(
            channel="phone", contact_type="counselling", status="final", summary="telefonatë",
            contact_at=now - 6 * 365 * DAY,
        )  # fmt: skip
        recent_offline = ContactRecord(
            channel="phone", contact_type="counselling", status="final", summary="telefonatë",
            contact_at=now - 40 * DAY,
        )  # fmt: skip
        session.add_all([old_offline, recent_offline])
        for row in (open_case, old_case, recent_case):
            session.add(CaseEvent(case_id=row.id, kind="note", body="shënim"))
            session.add(
                Referral(
                    case_id=row.id,
                    service_id=service.id,
                    reason="arsye",
                    referred_on=date(2020, 1, 1),
                    status_on=date(2020, 1, 1),
                    created_by_user_id=staff.id,
                )
            )
        session.add(
            Block(
                child_token_hash=unlinked_old.child_token_hash,
                conversation_id=unlinked_old.id,
                reason="fyerje",
                created_by=staff.id,
                created_at=now - 39 * DAY,
                expires_at=now - 38 * DAY,
            )
        )
        session.add(
            StaffSession(
                token_hash=secrets.token_hex(32),
                user_id=staff.id,
                created_at=now - 45 * DAY,
                last_seen_at=now - 45 * DAY,
                expires_at=now - 44 * DAY,
            )
        )
        session.add(
            LoginThrottle(key=secrets.token_hex(32), failures=2, last_failure_at=now - 2 * DAY)
        )
        await session.flush()
        return Seeded(
            purged=[unlinked_old.id, old_case_chat.id],
            kept=[unlinked_recent.id, open_case_chat.id, recent_case_chat.id, still_active.id],
            old_case=old_case.id,
            kept_cases=[open_case.id, recent_case.id],
            old_offline=old_offline.id,
            recent_offline=recent_offline.id,
        )


async def count(db: async_sessionmaker[AsyncSession], table: Any, *where: Any) -> int:
    async with db() as session:
        result = await session.execute(select(func.count()).select_from(table).where(*where))
        return int(result.scalar_one())


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {timeout} s")


async def swept_at_start(db: async_sessionmaker[AsyncSession]) -> None:
    """Wait for the live server's own first sweep, so it cannot race the test's seed."""

    async def swept() -> bool:
        return await count(db, AuditEvent, col(AuditEvent.action) == retention.ACTION) > 0

    await eventually(swept)


async def reports(live: LiveServer) -> list[dict[str, Any]]:
    """Every figure of the report over the last year and over the year six years ago."""
    today = datetime.now().date()
    spans = [
        (today - timedelta(days=365), today),
        (today - timedelta(days=6 * 365 + 180), today - timedelta(days=6 * 365 - 180)),
    ]
    async with AsyncExitStack() as stack:
        _s, supervisor, _ = await staff_http(live, "supervisor", stack)
        found = []
        for start, end in spans:
            answer = await supervisor.get(
                "/api/reports/summary", params={"from": str(start), "to": str(end)}
            )
            assert answer.status_code == 200, answer.text
            found.append(answer.json())
    return found


async def test_the_purge_removes_what_it_should_and_the_figures_stay(live: LiveServer) -> None:
    engine = create_engine(live.settings.database_url)
    db = session_factory(engine)
    try:
        await swept_at_start(db)
        seeded = await seed(db)
        before = await reports(live)
        assert before[0]["chats"]["total"] >= 4 and before[1]["contacts"]["total"] == 2
        planned = await retention.plan(db, live.settings)
        assert (await count(db, Message)) == 12  # a dry run changes nothing
        counts = await retention.purge(db, live.settings)
        assert counts.as_dict() == planned.as_dict() | {"login_names": 1}
        assert (counts.transcripts, counts.messages, counts.whispers) == (2, 4, 2)
        assert (counts.cases, counts.case_events, counts.referrals) == (1, 1, 1)
        assert (counts.record_summaries, counts.sessions, counts.blocks) == (2, 1, 1)

        async with db() as session:
            for cid in seeded.purged:
                conversation = await session.get(Conversation, cid)
                assert conversation is not None and conversation.transcript_purged_at
                assert conversation.return_code_hash is None and conversation.pre_chat == {}
                assert conversation.transfer_note is None
                assert conversation.child_token_hash.startswith("purged:")
                assert conversation.feedback_rating == 4  # what reports use stays
            for cid in seeded.kept:
                conversation = await session.get(Conversation, cid)
                assert conversation is not None and conversation.transcript_purged_at is None
                assert conversation.return_code_hash is not None
            assert await session.get(CaseFile, seeded.old_case) is None
            for case_id in seeded.kept_cases:
                assert await session.get(CaseFile, case_id) is not None
            old = await session.get(ContactRecord, seeded.old_offline)
            recent = await session.get(ContactRecord, seeded.recent_offline)
            assert old is not None and old.summary == "" and old.contact_type == "counselling"
            assert recent is not None and recent.summary == "telefonatë"
        for cid in seeded.purged:
            assert await count(db, Message, col(Message.conversation_id) == cid) == 0
            assert await count(db, Whisper, col(Whisper.conversation_id) == cid) == 0
        for cid in seeded.kept:
            assert await count(db, Message, col(Message.conversation_id) == cid) == 2
        assert await count(db, ContactRecord) == 8  # every record stays, for the reports

        assert await reports(live) == before
        again = await retention.purge(db, live.settings)
        assert again.transcripts == again.messages == again.cases == 0  # idempotent
    finally:
        await engine.dispose()


async def test_the_sweep_runs_once_a_day(live: LiveServer) -> None:
    engine = create_engine(live.settings.database_url)
    db = session_factory(engine)
    try:
        await swept_at_start(db)
        await seed(db)
        now = utcnow() + timedelta(days=2)  # after any sweep the server ran at its start
        first = await retention.sweep(db, live.settings, now)
        assert first is not None and first.transcripts == 2
        assert await retention.sweep(db, live.settings, now + timedelta(hours=23)) is None
        later = await retention.sweep(db, live.settings, now + timedelta(hours=25))
        assert later is not None and later.transcripts == 0
        assert await count(db, AuditEvent, col(AuditEvent.action) == retention.ACTION) >= 3
    finally:
        await engine.dispose()


async def test_a_server_runs_the_sweep_by_itself(database_url: str, make_live: MakeLive) -> None:
    engine = create_engine(database_url)
    db = session_factory(engine)
    try:
        seeded = await seed(db)
        await make_live()
        await swept_at_start(db)
        assert await count(db, Message, col(Message.conversation_id) == seeded.purged[0]) == 0
        assert await count(db, AuditEvent, col(AuditEvent.action) == retention.ACTION) == 1
    finally:
        await engine.dispose()


async def test_alo116_purge_dry_run_shows_what_would_go_and_changes_nothing(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_engine(database_url)
    db = session_factory(engine)
    try:
        await seed(db)
        monkeypatch.setenv("ALO116_DATABASE_URL", database_url)
        monkeypatch.setenv("ALO116_TRANSCRIPT_RETENTION_DAYS", "30")
        assert await asyncio.to_thread(cli.main, ["purge", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "would remove (dry run, nothing changed):" in out
        assert "transcripts" in out and "messages           4" in out
        assert await count(db, Message) == 12
        monkeypatch.setenv("ALO116_TRANSCRIPT_RETENTION_DAYS", "5")
        assert await asyncio.to_thread(cli.main, ["purge"]) == 0
        out = capsys.readouterr().out
        assert "removed:" in out and "transcripts        3" in out
        assert await count(db, Message) == 6
    finally:
        await engine.dispose()


def test_the_cutoffs_follow_the_settings() -> None:
    settings = Settings(
        _env_file=None,
        transcript_retention_days=7,
        closed_case_retention_years=2,
    )
    now = datetime(2026, 6, 1, tzinfo=ZoneInfo(HELPLINE_TZ))
    cut = retention.Cutoffs.of(settings, now)
    assert now - cut.transcripts == timedelta(days=7)
    assert now - cut.cases == timedelta(days=730)
