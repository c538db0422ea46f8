"""Reading the audit log: filtered, newest first, a page at a time.

Shared by the admin page, the JSON API and `alo116 audit`. Reading the log is itself
recorded (`viewed`), so the log also says who looked at it, and for what.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import audit, protocol
from chat_server.errors import Refused
from db.models import AuditEvent, StaffUser

MAX_LIMIT = 1000
VIEW = "audit.view"


@dataclass(frozen=True, slots=True)
class Cursor:
    """A place in the log (time, then id to break ties), for stable keyset pages."""

    at: datetime
    id: uuid.UUID

    def __str__(self) -> str:
        return f"{protocol.iso(self.at)}_{self.id.hex}"  # no "+": safe in a URL as it is

    @classmethod
    def parse(cls, text: str) -> Cursor:
        try:
            at, _, hex_id = text.rpartition("_")
            moment = datetime.fromisoformat(at)
            if moment.tzinfo is None:
                raise ValueError(text)
            return cls(moment, uuid.UUID(hex=hex_id))
        except ValueError:
            raise Refused("bad_request", f"not a page cursor: {text!r}") from None


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, Any]]
    older: Cursor | None  # where the next, older page starts; None at the oldest
    newer: Cursor | None  # where the previous, newer page ends; None at the newest


async def query(
    db: async_sessionmaker[AsyncSession],
    *,
    since: datetime | None,
    until: datetime | None,
    actor: str | None,
    action: str | None,
    limit: int,
    target: str | None = None,
    before: Cursor | None = None,
) -> list[dict[str, Any]]:
    """Events newest first: at or after `since`, before `until`, by the staff member with
    that username, whose action starts with `action`, whose target contains `target`."""
    page = await read_page(
        db,
        since=since,
        until=until,
        actor=actor,
        action=action,
        target=target,
        limit=limit,
        before=before,
    )
    return page.rows


async def read_page(
    db: async_sessionmaker[AsyncSession],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 50,
    before: Cursor | None = None,
    after: Cursor | None = None,
) -> Page:
    """One page of `query`, older than `before` or newer than `after`, with the cursors
    of its neighbours."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Refused("bad_request", f"limit must be 1 to {MAX_LIMIT}, not {limit!r}")
    if before is not None and after is not None:
        raise Refused("bad_request", "ask for the page before or after a place, not both")
    conditions = _conditions(since=since, until=until, actor=actor, action=action, target=target)
    newest_first = after is None
    if before is not None:
        conditions.append(_older_than(before))
    if after is not None:
        conditions.append(_newer_than(after))
    order = (
        (col(AuditEvent.at).desc(), col(AuditEvent.id).desc())
        if newest_first
        else (col(AuditEvent.at).asc(), col(AuditEvent.id).asc())
    )
    statement = (
        select(AuditEvent, StaffUser)
        .outerjoin(StaffUser, col(StaffUser.id) == col(AuditEvent.actor_user_id))
        .where(*conditions)
        .order_by(*order)
        .limit(limit + 1)
    )
    async with db() as session:
        found = [(event, user) for event, user in await session.execute(statement)]
    more = len(found) > limit
    found = found[:limit]
    if not newest_first:
        found.reverse()
    rows = [_row(event, user) for event, user in found]
    if not found:
        return Page(rows, None, None)
    first = Cursor(found[0][0].at, found[0][0].id)
    last = Cursor(found[-1][0].at, found[-1][0].id)
    if newest_first:
        return Page(rows, older=last if more else None, newer=first if before else None)
    return Page(rows, older=last, newer=first if more else None)


async def count(
    db: async_sessionmaker[AsyncSession],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
) -> int:
    conditions = _conditions(since=since, until=until, actor=actor, action=action, target=target)
    statement = (
        select(func.count())
        .select_from(AuditEvent)
        .outerjoin(StaffUser, col(StaffUser.id) == col(AuditEvent.actor_user_id))
        .where(*conditions)
    )
    async with db() as session:
        return int((await session.execute(statement)).scalar_one())


async def actions(db: async_sessionmaker[AsyncSession]) -> list[str]:
    """Every action the log holds, for a filter's choices."""
    async with db() as session:
        found = await session.execute(
            select(col(AuditEvent.action)).distinct().order_by(col(AuditEvent.action))
        )
        return list(found.scalars())


async def actors(db: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    """(username, display name) of every staff account, for a filter's choices."""
    async with db() as session:
        found = await session.execute(
            select(col(StaffUser.username), col(StaffUser.display_name)).order_by(
                col(StaffUser.username)
            )
        )
        return [(username, name) for username, name in found]


async def viewed(
    db: async_sessionmaker[AsyncSession],
    *,
    actor_user_id: uuid.UUID | None,
    via: str,
    filters: dict[str, Any] | None = None,
    allowed: bool = True,
) -> None:
    """Record that someone read the log (or was refused), with the filters they used."""
    used = {k: plain(v) for k, v in (filters or {}).items() if v not in (None, "")}
    detail: dict[str, Any] = {"via": via, "filters": used} if used else {"via": via}
    async with db() as session, session.begin():
        audit.record(
            session,
            action=VIEW if allowed else f"{VIEW}.denied",
            actor_user_id=actor_user_id,
            target="audit_log",
            **detail,
        )


# --- reading filters from text (the page, the API, the command line) ----------------------


def parse_moment(text: str | None, zone: ZoneInfo, *, end: bool = False) -> datetime | None:
    """An ISO 8601 time (naive means UTC, as on the wire), or a day in the helpline's time
    zone: its start, or with `end` the start of the next day (so `until` includes it)."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day + timedelta(days=1 if end else 0), time(), zone)
            return start.astimezone(UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Refused("bad_request", f"not a date or ISO 8601 time: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned table for a terminal, in the order given (newest first)."""
    if not rows:
        return "no audit events match"
    table = [("time (UTC)", "actor", "action", "target", "detail")]
    for row in rows:
        actor = row["actor"]["username"] if row["actor"] else "-"
        detail = " ".join(f"{k}={plain(v)}" for k, v in sorted(row["detail"].items()))
        table.append(
            (row["at"][:19].replace("T", " "), actor, row["action"], row["target"] or "-", detail)
        )
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line[:4], widths, strict=True))
        + ("  " + line[4] if line[4] else "")
        for line in table
    ]
    return "\n".join(line.rstrip() for line in lines)


# --- helpers ---------------------------------------------------------------------------------


def _conditions(
    *,
    since: datetime | None,
    until: datetime | None,
    actor: str | None,
    action: str | None,
    target: str | None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(col(AuditEvent.at) >= since)
    if until is not None:
        conditions.append(col(AuditEvent.at) < until)
    if actor:
        conditions.append(col(StaffUser.username) == actor.strip().lower())
    if action:
        conditions.append(col(AuditEvent.action).startswith(action.strip(), autoescape=True))
    if target:
        conditions.append(
            func.lower(col(AuditEvent.target)).contains(target.strip().lower(), autoescape=True)
        )
    return conditions


def _older_than(cursor: Cursor) -> ColumnElement[bool]:
    return or_(
        col(AuditEvent.at) < cursor.at,
        and_(col(AuditEvent.at) == cursor.at, col(AuditEvent.id) < cursor.id),
    )


def _newer_than(cursor: Cursor) -> ColumnElement[bool]:
    return or_(
        col(AuditEvent.at) > cursor.at,
        and_(col(AuditEvent.at) == cursor.at, col(AuditEvent.id) > cursor.id),
    )


def _row(event: AuditEvent, user: StaffUser | None) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "at": protocol.iso(event.at),
        "actor": (
            {
                "id": str(user.id),
                "username": user.username,
                "name": user.display_name,
                "role": user.role,
            }
            if user is not None
            else None
        ),
        "action": event.action,
        "target": event.target,
        "detail": dict(event.detail or {}),
    }


def plain(value: Any) -> str:
    """A detail value as text: strings as they are, anything else as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return protocol.iso(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
