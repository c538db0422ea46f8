"""The append-only audit log: who did what to which record, and when.

Rows are added inside the transaction of the action they describe, so an action and
its audit row commit together or not at all. Nothing in the code updates or deletes one.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditEvent


def record(
    session: AsyncSession,
    *,
    action: str,
    actor_user_id: uuid.UUID | None = None,
    target: str | None = None,
    **detail: Any,
) -> None:
    session.add(
        AuditEvent(action=action, actor_user_id=actor_user_id, target=target, detail=detail)
    )
