"""Alerts for supervisors: opened inside the transaction of what caused them, at most
one per kind and conversation, published to every supervisor's console after commit."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from chat_server import protocol
from chat_server.brokers import Event
from db.models import Alert, utcnow

SUPERVISORS = "supervisors"
KINDS = ("in_danger", "risk", "long_wait", "unanswered")


async def open_alert(
    session: AsyncSession, kind: str, conversation_id: uuid.UUID, level: str | None = None
) -> Event | None:
    """Open an alert unless one of this kind is already open for the chat; returns the
    event to publish after commit, or None. A risk alert re-opens when the level rises."""
    if kind not in KINDS:
        raise ValueError(f"alert kind must be one of {KINDS}, not {kind!r}")
    existing = (
        await session.execute(
            select(Alert).where(
                col(Alert.conversation_id) == conversation_id, col(Alert.kind) == kind
            )
        )
    ).scalar_one_or_none()
    now = utcnow()
    if existing is None:
        alert = Alert(kind=kind, conversation_id=conversation_id, level=level, created_at=now)
        session.add(alert)
        await session.flush()
    elif kind == "risk" and level is not None and level != existing.level:
        existing.level, existing.created_at = level, now
        existing.acked_by, existing.acked_at = None, None
        alert = existing
    else:
        return None
    return alert_frame(alert)


def alert_frame(alert: Alert) -> Event:
    frame: dict[str, Any] = {
        "type": "alert",
        "id": str(alert.id),
        "kind": alert.kind,
        "conversation_id": str(alert.conversation_id),
        "level": alert.level,
        "at": protocol.iso(alert.created_at),
        "acked": alert.acked_at is not None,
    }
    return frame
