"""The live floor as a supervisor sees it: the queue, who is on duty and how loaded,
every active chat with its age, risk and how long the child has waited for a reply,
and the open alerts. Read in a few queries; the console ticks the clocks itself."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from chat_server import alerts, protocol
from chat_server.brokers import Event
from db.models import Alert, Conversation, StaffUser, utcnow

# What the floor shows of each active chat: columns, not whole rows as objects.
_CHAT_COLUMNS = (
    col(Conversation.id),
    col(Conversation.assigned_user_id),
    col(Conversation.created_at),
    col(Conversation.assigned_at),
    col(Conversation.last_message_at),
    col(Conversation.last_child_message_at),
    col(Conversation.last_staff_message_at),
    col(Conversation.risk_level),
    col(Conversation.priority),
    col(Conversation.lang),
    col(Conversation.mode),
    col(Conversation.child_left_at),
    col(Conversation.child_seen_at),
)


async def floor_view(
    session: AsyncSession, queue_items: list[Event], *, online_after: datetime
) -> Event:
    now = utcnow()
    load = (
        select(func.count())
        .select_from(Conversation)
        .where(
            col(Conversation.assigned_user_id) == col(StaffUser.id),
            col(Conversation.status) == "active",
        )
        .scalar_subquery()
    )
    staff_rows = await session.execute(
        select(StaffUser, load)
        .where(col(StaffUser.active).is_(True))
        .order_by(col(StaffUser.display_name))
    )
    staff = [
        {
            "id": str(user.id),
            "name": user.display_name,
            "role": user.role,
            "status": user.status,
            "status_since": protocol.iso(user.status_since),
            "load": int(count),
            "capacity": user.max_chats,
            "online": user.last_seen_at is not None and user.last_seen_at >= online_after,
        }
        for user, count in staff_rows
        if user.status != "offline" or int(count) > 0
    ]
    names = {s["id"]: s["name"] for s in staff}
    active = (
        await session.execute(
            select(*_CHAT_COLUMNS)
            .where(col(Conversation.status) == "active")
            .order_by(col(Conversation.priority).desc(), col(Conversation.assigned_at))
        )
    ).all()
    chats = [
        {
            "conversation_id": str(c.id),
            "counsellor": {
                "id": str(c.assigned_user_id),
                "name": names.get(str(c.assigned_user_id), ""),
            },
            "created_at": protocol.iso(c.created_at),
            "assigned_at": protocol.iso(c.assigned_at) if c.assigned_at else None,
            "last_message_at": _iso(c.last_message_at),
            "waiting_for_reply_since": _waiting_since(c),
            "risk_level": c.risk_level,
            "priority": c.priority,
            "lang": c.lang,
            "mode": c.mode,
            "child_online": c.child_left_at is None and c.child_seen_at >= online_after,
        }
        for c in active
    ]
    open_alerts = (
        await session.execute(
            select(Alert)
            .where(col(Alert.acked_at).is_(None))
            .order_by(col(Alert.created_at).desc())
            .limit(100)
        )
    ).scalars()
    longest = min((item["waiting_since"] for item in queue_items), default=None)
    return {
        "type": "floor",
        "at": protocol.iso(now),
        "queue": {
            "count": len(queue_items),
            "longest_wait_s": _seconds_since(longest, now),
            "items": queue_items,
        },
        "staff": staff,
        "chats": chats,
        "alerts": [alerts.alert_frame(a) for a in open_alerts],
    }


def _waiting_since(c: Any) -> str | None:
    """When the child's unanswered message came, if the counsellor has not replied since."""
    child, staff = c.last_child_message_at, c.last_staff_message_at
    if child is None or (staff is not None and staff >= child):
        return None
    return protocol.iso(child)


def _iso(value: datetime | None) -> str | None:
    return protocol.iso(value) if value is not None else None


def _seconds_since(iso_text: str | None, now: datetime) -> int:
    if iso_text is None:
        return 0
    then = datetime.fromisoformat(iso_text.replace("Z", "+00:00"))
    return max(0, int((now - then) / timedelta(seconds=1)))
