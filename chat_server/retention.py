"""Retention: what is kept, and for how long.

- A chat not linked to a case: its transcript (messages, whispers) goes N days after it
  ended (ALO116_TRANSCRIPT_RETENTION_DAYS, default 30), with whatever still ties the
  conversation row to a child (token hash, return code hash, pre-chat answers, the
  transfer note).
- A closed case, M years after it closed (ALO116_CLOSED_CASE_RETENTION_YEARS): the case,
  its notes and referrals, the transcripts of its chats, and the summaries of its
  contact records. Contact records not in a case lose their summary after M years too.
- What the reports count stays: contact records keep their codes (type, categories, age
  band, gender, municipality, risk, actions, time) and conversations keep their times,
  status and feedback, so every report figure is the same after a purge as before.
- Housekeeping: sessions ended over 30 days ago, quiet login-throttle rows, blocks
  expired before the transcript cut-off.

The sweep runs at most once a day (the audit log remembers the last run, so restarts
and several nodes do not repeat it); every step is an idempotent conditional change.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import ratelimit
from chat_server.settings import Settings
from db.casework import CaseEvent, CaseFile, ContactRecord, Referral
from db.models import AuditEvent, Block, Conversation, Message, StaffSession, Whisper, utcnow

log = logging.getLogger(__name__)

SWEEP_EVERY = timedelta(days=1)
SESSIONS_KEPT = timedelta(days=30)
BATCH = 500
ACTION = "retention.purge"


@dataclass
class Counts:
    """What a purge removes (or, in a dry run, would remove)."""

    transcripts: int = 0  # conversations whose transcript goes
    messages: int = 0
    whispers: int = 0
    cases: int = 0
    case_events: int = 0
    referrals: int = 0
    record_summaries: int = 0
    sessions: int = 0
    blocks: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if k != "extra"} | self.extra


@dataclass(frozen=True, slots=True)
class Cutoffs:
    transcripts: datetime  # chats that ended before this lose their transcript
    cases: datetime  # cases closed before this go; records older lose their summary

    @classmethod
    def of(cls, settings: Settings, now: datetime) -> Cutoffs:
        return cls(
            now - timedelta(days=settings.transcript_retention_days),
            now - timedelta(days=365 * settings.closed_case_retention_years),
        )


def _linked_to_case() -> Any:
    return exists().where(
        col(ContactRecord.conversation_id) == col(Conversation.id),
        col(ContactRecord.case_id).is_not(None),
    )


def _expired_chats(cut: Cutoffs) -> Any:
    return and_(
        col(Conversation.status) == "ended",
        col(Conversation.ended_at) < cut.transcripts,
        col(Conversation.transcript_purged_at).is_(None),
        ~_linked_to_case(),
    )


def _expired_cases(cut: Cutoffs) -> Any:
    return and_(col(CaseFile.status) == "closed", col(CaseFile.closed_at) < cut.cases)


def _old_summaries(cut: Cutoffs) -> Any:
    return and_(
        col(ContactRecord.case_id).is_(None),
        col(ContactRecord.contact_at) < cut.cases,
        col(ContactRecord.summary) != "",
    )


def _old_sessions(now: datetime) -> Any:
    before = now - SESSIONS_KEPT
    return or_(col(StaffSession.expires_at) < before, col(StaffSession.revoked_at) < before)


def _old_blocks(cut: Cutoffs) -> Any:
    return col(Block.expires_at) < cut.transcripts


async def _count(session: AsyncSession, table: Any, *where: Any) -> int:
    return int(
        (await session.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
    )


async def plan(
    db: async_sessionmaker[AsyncSession], settings: Settings, now: datetime | None = None
) -> Counts:
    """What a purge now would remove; changes nothing (`alo116 purge --dry-run`)."""
    now = now or utcnow()
    cut = Cutoffs.of(settings, now)
    async with db() as session:
        case_ids = select(col(CaseFile.id)).where(_expired_cases(cut))
        case_chats = select(col(ContactRecord.conversation_id)).where(
            col(ContactRecord.case_id).in_(case_ids),
            col(ContactRecord.conversation_id).is_not(None),
        )
        chats = select(col(Conversation.id)).where(
            or_(_expired_chats(cut), col(Conversation.id).in_(case_chats)),
            col(Conversation.transcript_purged_at).is_(None),
        )
        return Counts(
            transcripts=await _count(session, Conversation, col(Conversation.id).in_(chats)),
            messages=await _count(session, Message, col(Message.conversation_id).in_(chats)),
            whispers=await _count(session, Whisper, col(Whisper.conversation_id).in_(chats)),
            cases=await _count(session, CaseFile, _expired_cases(cut)),
            case_events=await _count(session, CaseEvent, col(CaseEvent.case_id).in_(case_ids)),
            referrals=await _count(session, Referral, col(Referral.case_id).in_(case_ids)),
            record_summaries=await _count(
                session,
                ContactRecord,
                or_(
                    _old_summaries(cut),
                    and_(
                        col(ContactRecord.case_id).in_(case_ids), col(ContactRecord.summary) != ""
                    ),
                ),
            ),
            sessions=await _count(session, StaffSession, _old_sessions(now)),
            blocks=await _count(session, Block, _old_blocks(cut)),
        )


async def purge(
    db: async_sessionmaker[AsyncSession], settings: Settings, now: datetime | None = None
) -> Counts:
    """Remove what retention says must go, in batches of short transactions."""
    now = now or utcnow()
    cut = Cutoffs.of(settings, now)
    counts = Counts()
    # Expired cases first: their chats then count as not linked and go below.
    while True:
        async with db() as session, session.begin():
            ids = list(
                (
                    await session.execute(
                        select(col(CaseFile.id)).where(_expired_cases(cut)).limit(BATCH)
                    )
                ).scalars()
            )
            if not ids:
                break
            chats = list(
                (
                    await session.execute(
                        select(col(ContactRecord.conversation_id)).where(
                            col(ContactRecord.case_id).in_(ids),
                            col(ContactRecord.conversation_id).is_not(None),
                        )
                    )
                ).scalars()
            )
            counts.record_summaries += await _rowcount(
                session,
                update(ContactRecord)
                .where(col(ContactRecord.case_id).in_(ids))
                .values(summary="", case_id=None, updated_at=now),
            )
            counts.case_events += await _rowcount(
                session,
                delete(CaseEvent).where(col(CaseEvent.case_id).in_(ids)),
            )
            counts.referrals += await _rowcount(
                session,
                delete(Referral).where(col(Referral.case_id).in_(ids)),
            )
            counts.cases += await _rowcount(
                session,
                delete(CaseFile).where(col(CaseFile.id).in_(ids)),
            )
            await _purge_transcripts(session, [c for c in chats if c is not None], now, counts)
    while True:
        async with db() as session, session.begin():
            ids = list(
                (
                    await session.execute(
                        select(col(Conversation.id)).where(_expired_chats(cut)).limit(BATCH)
                    )
                ).scalars()
            )
            if not ids:
                break
            await _purge_transcripts(session, ids, now, counts)
    async with db() as session, session.begin():
        counts.record_summaries += await _rowcount(
            session,
            update(ContactRecord).where(_old_summaries(cut)).values(summary="", updated_at=now),
        )
        counts.sessions += await _rowcount(session, delete(StaffSession).where(_old_sessions(now)))
        counts.blocks += await _rowcount(session, delete(Block).where(_old_blocks(cut)))
        counts.extra["login_names"] = await ratelimit.forget_quiet_names(session, now)
        # Dated `now`, the moment the cut-offs were taken from (the sweep's clock).
        session.add(AuditEvent(action=ACTION, at=now, detail={"counts": counts.as_dict()}))
    return counts


async def _purge_transcripts(
    session: AsyncSession, ids: list[uuid.UUID], now: datetime, counts: Counts
) -> None:
    if not ids:
        return
    counts.messages += await _rowcount(
        session,
        delete(Message).where(col(Message.conversation_id).in_(ids)),
    )
    counts.whispers += await _rowcount(
        session,
        delete(Whisper).where(col(Whisper.conversation_id).in_(ids)),
    )
    for conversation_id in ids:
        counts.transcripts += await _rowcount(
            session,
            update(Conversation)
            .where(
                col(Conversation.id) == conversation_id,
                col(Conversation.transcript_purged_at).is_(None),
            )
            .values(
                transcript_purged_at=now,
                # Unique and meaningless: no token can ever hash to it again.
                child_token_hash=f"purged:{uuid.uuid4().hex}",
                return_code_hash=None,
                pre_chat={},
                transfer_note=None,
            ),
        )


async def _rowcount(session: AsyncSession, statement: Any) -> int:
    result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


async def last_purge(db: async_sessionmaker[AsyncSession]) -> datetime | None:
    async with db() as session:
        return (
            await session.execute(
                select(func.max(col(AuditEvent.at))).where(col(AuditEvent.action) == ACTION)
            )
        ).scalar_one_or_none()


async def sweep(
    db: async_sessionmaker[AsyncSession], settings: Settings, now: datetime | None = None
) -> Counts | None:
    """The daily sweep (called from the floor's sweep loop every few seconds): purges if
    the last purge, by any node, was a day ago or more; else returns None at once."""
    now = now or utcnow()
    last = await last_purge(db)
    if last is not None and now - last < SWEEP_EVERY:
        return None
    counts = await purge(db, settings, now)
    log.info("retention purge: %s", counts.as_dict())
    return counts
