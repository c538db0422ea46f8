"""Transfers: hand a chat to a named colleague (who accepts or declines) or back to the
front of the queue. The record draft is keyed by conversation, so it travels along."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import audit, protocol, switchboard
from chat_server.accounts import StaffIdentity
from chat_server.brokers import Event
from chat_server.conversations import (
    QUEUE_CHANGED,
    Conversations,
    assigned_frame,
    require_room,
    tell_withdrawn,
    void_transfer,
)
from chat_server.errors import Refused
from chat_server.hub import FLOOR, Hub, conv_channel, user_channel
from db.models import Conversation, StaffUser, utcnow

NOTE_LIMIT = 500


class Transfers:
    def __init__(
        self, db: async_sessionmaker[AsyncSession], hub: Hub, conversations: Conversations
    ) -> None:
        self.db = db
        self.hub = hub
        self.conversations = conversations

    async def offer(
        self,
        staff: StaffIdentity,
        conversation_id: uuid.UUID,
        to_user_id: uuid.UUID | None,
        note: str | None,
    ) -> None:
        if note is not None and len(note) > NOTE_LIMIT:
            raise Refused("too_large", f"the note is limited to {NOTE_LIMIT} characters")
        if to_user_id is None:
            await self._requeue(staff, conversation_id, note)
            return
        if to_user_id == staff.id:
            raise Refused("bad_request", "you cannot transfer a chat to yourself")
        async with self.db() as session, session.begin():
            colleague = await session.get(StaffUser, to_user_id)
            if colleague is None or not colleague.active:
                raise Refused("not_found", "no such colleague")
            await check_can_receive(session, colleague)
            offered = (
                await session.execute(
                    update(Conversation)
                    .where(
                        col(Conversation.id) == conversation_id,
                        col(Conversation.status) == "active",
                        col(Conversation.assigned_user_id) == staff.id,
                        col(Conversation.transfer_to_user_id).is_(None),
                    )
                    .values(
                        transfer_to_user_id=to_user_id,
                        transfer_from_user_id=staff.id,
                        transfer_note=note,
                        transfer_offered_at=utcnow(),
                    )
                    .returning(Conversation)
                )
            ).scalar_one_or_none()
            if offered is None:
                raise await self._why_not_offered(session, conversation_id, staff)
            audit.record(
                session,
                action="chat.transfer_offer",
                actor_user_id=staff.id,
                target=f"conversation:{conversation_id}",
                to_user_id=str(to_user_id),
            )
        await self.hub.publish(
            user_channel(to_user_id),
            offer_frame(offered, {"id": str(staff.id), "name": staff.name}),
        )
        await self.hub.publish(
            user_channel(staff.id),
            {
                "type": "transfer_pending",
                "conversation_id": str(conversation_id),
                "to": {"id": str(colleague.id), "name": colleague.display_name},
            },
        )

    async def accept(self, staff: StaffIdentity, conversation_id: uuid.UUID) -> None:
        now = utcnow()
        async with self.db() as session, session.begin():
            user = (
                await session.execute(
                    select(StaffUser).where(col(StaffUser.id) == staff.id).with_for_update()
                )
            ).scalar_one()
            await require_room(session, user, own=True)
            previous = (
                await session.execute(
                    select(
                        col(Conversation.transfer_from_user_id), col(Conversation.transfer_note)
                    ).where(
                        col(Conversation.id) == conversation_id,
                        col(Conversation.transfer_to_user_id) == staff.id,
                    )
                )
            ).first()
            taken = (
                await session.execute(
                    update(Conversation)
                    .where(
                        col(Conversation.id) == conversation_id,
                        col(Conversation.status) == "active",
                        col(Conversation.transfer_to_user_id) == staff.id,
                        # Still the chat of whoever offered it: an offer never moves a
                        # chat that has meanwhile gone to someone else.
                        col(Conversation.assigned_user_id)
                        == col(Conversation.transfer_from_user_id),
                    )
                    .values(
                        assigned_user_id=staff.id,
                        assigned_at=now,
                        transfer_to_user_id=None,
                        transfer_from_user_id=None,
                        transfer_note=None,
                        transfer_offered_at=None,
                    )
                    .returning(Conversation)
                )
            ).scalar_one_or_none()
            if taken is None or previous is None:
                raise Refused("conflict", "this transfer is no longer open", reason="withdrawn")
            audit.record(
                session,
                action="chat.transfer_accept",
                actor_user_id=staff.id,
                target=f"conversation:{conversation_id}",
            )
        from_user_id, note = previous
        if from_user_id is not None:
            await self._release(from_user_id, conversation_id, "transferred")
        await self.hub.publish(
            user_channel(staff.id), {**assigned_frame(taken), "transfer": {"note": note}}
        )
        await self.conversations.publish_me(staff.id)
        await self.hub.publish(
            conv_channel(conversation_id),
            {
                "type": "state",
                "conversation_id": str(conversation_id),
                "status": "active",
                "counsellor": {"name": staff.name},
                "_to": "child",
            },
        )
        await self.hub.publish(FLOOR, QUEUE_CHANGED)

    async def decline(
        self, staff: StaffIdentity, conversation_id: uuid.UUID, *, reason: str = "declined"
    ) -> None:
        async with self.db() as session, session.begin():
            withdrawn = (
                await session.execute(
                    update(Conversation)
                    .where(
                        col(Conversation.id) == conversation_id,
                        col(Conversation.transfer_to_user_id) == staff.id,
                    )
                    .values(
                        transfer_to_user_id=None,
                        transfer_from_user_id=None,
                        transfer_note=None,
                        transfer_offered_at=None,
                    )
                    .returning(col(Conversation.transfer_from_user_id))
                )
            ).first()
            if withdrawn is None:
                raise Refused("conflict", "this transfer is no longer open", reason="withdrawn")
        await self._tell_declined(conversation_id, staff.id, staff.name, reason)

    async def expire(self, timeout_s: float) -> int:
        """Lapse offers nobody answered in time; the chat stays with its counsellor."""
        cutoff = utcnow() - timedelta(seconds=timeout_s)
        async with self.db() as session, session.begin():
            lapsed = (
                await session.execute(
                    select(col(Conversation.id), col(Conversation.transfer_to_user_id))
                    .where(col(Conversation.transfer_offered_at) < cutoff)
                    .with_for_update()
                )
            ).all()
            if not lapsed:
                return 0
            await session.execute(
                update(Conversation)
                .where(col(Conversation.id).in_([c for c, _ in lapsed]))
                .values(
                    transfer_to_user_id=None,
                    transfer_from_user_id=None,
                    transfer_note=None,
                    transfer_offered_at=None,
                )
            )
        for conversation_id, to_user_id in lapsed:
            if to_user_id is not None:
                await self._tell_declined(conversation_id, to_user_id, None, "timeout")
        return len(lapsed)

    async def _requeue(
        self, staff: StaffIdentity, conversation_id: uuid.UUID, note: str | None
    ) -> None:
        """Back to the front of the queue, with the note for whoever takes it next; an
        offer to a colleague still waiting is withdrawn."""
        async with self.db() as session, session.begin():
            moved = (
                await session.execute(
                    update(Conversation)
                    .where(
                        col(Conversation.id) == conversation_id,
                        col(Conversation.status) == "active",
                        col(Conversation.assigned_user_id) == staff.id,
                    )
                    .values(
                        status="queued",
                        assigned_user_id=None,
                        priority=priority_at_least(session, switchboard.PRIORITY_REQUEUED),
                    )
                    .returning(Conversation)
                )
            ).scalar_one_or_none()
            if moved is None:
                raise await self._why_not_offered(session, conversation_id, staff)
            withdrawn = void_transfer(moved, "requeued")
            moved.transfer_from_user_id = staff.id
            moved.transfer_note = note
            audit.record(
                session,
                action="chat.transfer_queue",
                actor_user_id=staff.id,
                target=f"conversation:{conversation_id}",
            )
        # Before `released`, so that my consoles never show the chat as the colleague's.
        await tell_withdrawn(self.hub, withdrawn)
        await self._release(staff.id, conversation_id, "transferred")
        await self.hub.publish(
            conv_channel(conversation_id),
            {
                "type": "state",
                "conversation_id": str(conversation_id),
                "status": "queued",
                "reason": "transferred",
                "_to": "child",
            },
        )
        await self.hub.publish(FLOOR, QUEUE_CHANGED)

    async def standing(
        self, user_id: uuid.UUID, mine: Sequence[Conversation]
    ) -> tuple[dict[str, Event], list[Event]]:
        """What a console coming back needs beyond the floor's snapshot: for each of its
        chats (`mine`, as read for the snapshot) the risk level, the transfer it waits on
        and the note it came with; and the offers waiting for this person's answer, each
        as its `transfer_offer` was."""
        async with self.db() as session:
            offered = list(
                (
                    await session.execute(
                        select(Conversation)
                        .where(
                            col(Conversation.transfer_to_user_id) == user_id,
                            col(Conversation.status) == "active",
                            col(Conversation.assigned_user_id)
                            == col(Conversation.transfer_from_user_id),
                        )
                        .order_by(col(Conversation.transfer_offered_at))
                    )
                ).scalars()
            )
            names = await _names(
                session,
                {c.transfer_to_user_id for c in mine}
                | {c.transfer_from_user_id for c in [*mine, *offered]},
            )
        chats: dict[str, Event] = {
            str(c.id): {
                "risk_level": c.risk_level,
                "transfer_pending": _pending(c, names),
                "handover": _handover(c, names),
            }
            for c in mine
        }
        offers: list[Event] = []
        for c in offered:
            offer = offer_frame(c, _person(c.transfer_from_user_id, names))
            del offer["type"]
            offer["offered_at"] = protocol.iso(c.transfer_offered_at or utcnow())
            offers.append(offer)
        return chats, offers

    async def _release(self, user_id: uuid.UUID, conversation_id: uuid.UUID, reason: str) -> None:
        # On the chat's channel: every console following it (the counsellor's tabs) leaves.
        await self.hub.publish(
            conv_channel(conversation_id),
            {
                "type": "released",
                "conversation_id": str(conversation_id),
                "reason": reason,
                "user_id": str(user_id),
                "_to": "staff",
            },
        )
        await self.conversations.publish_me(user_id)

    async def _tell_declined(
        self, conversation_id: uuid.UUID, to_user_id: uuid.UUID, name: str | None, reason: str
    ) -> None:
        async with self.db() as session:
            owner = (
                await session.execute(
                    select(col(Conversation.assigned_user_id)).where(
                        col(Conversation.id) == conversation_id
                    )
                )
            ).scalar_one_or_none()
        event: Event = {
            "type": "transfer_declined",
            "conversation_id": str(conversation_id),
            "reason": reason,
        }
        if name is not None:
            event["by"] = {"id": str(to_user_id), "name": name}
        if owner is not None:
            await self.hub.publish(user_channel(owner), event)
        await self.hub.publish(
            user_channel(to_user_id),
            {
                "type": "transfer_withdrawn",
                "conversation_id": str(conversation_id),
                "reason": reason,
            },
        )

    async def _why_not_offered(
        self, session: AsyncSession, conversation_id: uuid.UUID, staff: StaffIdentity
    ) -> Refused:
        conversation = await session.get(Conversation, conversation_id)
        if conversation is None:
            return Refused("not_found", f"no conversation {str(conversation_id)!r}")
        if conversation.status == "ended":
            return Refused("closed", "this conversation has ended")
        if conversation.assigned_user_id != staff.id:
            return Refused("forbidden", "this chat is not assigned to you")
        return Refused("conflict", "a transfer of this chat is already waiting for an answer")


def priority_at_least(session: AsyncSession, floor: int) -> Any:
    """max(priority, floor) in the dialect at hand (SQLite's scalar max, else greatest)."""
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        return func.max(col(Conversation.priority), floor)
    return func.greatest(col(Conversation.priority), floor)


async def tell_handover(
    db: async_sessionmaker[AsyncSession], hub: Hub, conversation: Conversation
) -> None:
    """The note a chat came back to the queue with, for whoever has it now (`assigned`
    itself is built in conversations.py, so the note follows it as its own frame)."""
    if conversation.assigned_user_id is None or not _handed_over(conversation):
        return
    async with db() as session:
        names = await _names(session, {conversation.transfer_from_user_id})
    await hub.publish(
        user_channel(conversation.assigned_user_id),
        {
            "type": "handover",
            "conversation_id": str(conversation.id),
            "from": _person(conversation.transfer_from_user_id, names),
            "note": conversation.transfer_note,
        },
    )


async def check_can_receive(session: AsyncSession, colleague: StaffUser) -> None:
    """Refuse to hand a chat to someone who is not on duty or has no room for it: the
    same rule for a transfer offered to a colleague and a supervisor's `assign`."""
    if colleague.status != "available":
        raise Refused(
            "conflict",
            f"{colleague.display_name} is not available ({colleague.status})",
            reason="unavailable",
        )
    await require_room(session, colleague, own=False)


def offer_frame(conversation: Conversation, sender: Event | None) -> Event:
    return {
        **assigned_frame(conversation),
        "type": "transfer_offer",
        "from": sender,
        "note": conversation.transfer_note,
        "risk_level": conversation.risk_level,
    }


def _handed_over(c: Conversation) -> bool:
    """Sent back to the queue with a note by someone else than its counsellor now (an
    offer waiting for an answer keeps its note for the colleague instead)."""
    return (
        c.transfer_to_user_id is None
        and c.transfer_from_user_id is not None
        and c.transfer_note is not None
        and c.transfer_from_user_id != c.assigned_user_id
    )


def _handover(c: Conversation, names: dict[uuid.UUID, str]) -> Event | None:
    if not _handed_over(c):
        return None
    return {"from": _person(c.transfer_from_user_id, names), "note": c.transfer_note}


def _pending(c: Conversation, names: dict[uuid.UUID, str]) -> Event | None:
    if c.transfer_to_user_id is None or c.transfer_offered_at is None:
        return None
    return {
        "to": _person(c.transfer_to_user_id, names),
        "offered_at": protocol.iso(c.transfer_offered_at),
    }


def _person(user_id: uuid.UUID | None, names: dict[uuid.UUID, str]) -> Event | None:
    return None if user_id is None else {"id": str(user_id), "name": names.get(user_id, "")}


async def _names(session: AsyncSession, ids: set[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    rows = await session.execute(
        select(col(StaffUser.id), col(StaffUser.display_name)).where(col(StaffUser.id).in_(wanted))
    )
    return {user_id: name for user_id, name in rows.all()}
