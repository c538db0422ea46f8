"""Conversations: joining the queue, messages with gap-free seq, taking, reading, ending.

Every state change is one transaction; events are published only after it commits.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import alerts, audit, protocol, records, return_codes, switchboard
from chat_server.accounts import StaffIdentity
from chat_server.brokers import Event
from chat_server.connection import REPLAY_BATCH
from chat_server.errors import Refused
from chat_server.hub import FLOOR, Hub, conv_channel, user_channel
from chat_server.message_log import MessageLog, Posted, Stored
from chat_server.risk_terms import RiskTerms
from db.models import Conversation, Message, StaffUser, utcnow

log = logging.getLogger(__name__)

QUEUE_CHANGED: Event = {"type": "queue_changed"}


def message_frame(message: Message) -> Event:
    return protocol.msg_frame(
        conversation_id=message.conversation_id,
        seq=message.seq,
        sender=message.sender,
        body=message.body,
        at=message.created_at,
        client_id=message.client_id,
    )


class Conversations:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        hub: Hub,
        *,
        secret: str,
        risk_terms: RiskTerms | None = None,
    ) -> None:
        self.db = db
        self.hub = hub
        self.risk_terms = risk_terms
        # Every message of this node goes through one group-commit writer; the runtime
        # starts and closes it.
        self.messages = MessageLog(db.kw["bind"], self._fan_out)
        self._secret = secret.encode()
        self._secret_text = secret

    # --- the child's side ------------------------------------------------------------

    def token_hash(self, token: str) -> str:
        """Keyed, so a leaked table cannot be matched against tokens without the secret."""
        return hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()

    async def by_token(self, token: str) -> Conversation | None:
        async with self.db() as session:
            result = await session.execute(
                select(Conversation).where(
                    col(Conversation.child_token_hash) == self.token_hash(token)
                )
            )
            return result.scalar_one_or_none()

    async def get(self, conversation_id: uuid.UUID) -> Conversation | None:
        async with self.db() as session:
            return await session.get(Conversation, conversation_id)

    async def start(
        self, token: str, *, lang: str, pre_chat: protocol.PreChat | None, mode: str = "chat"
    ) -> Conversation:
        answers = pre_chat.model_dump(exclude_none=True) if pre_chat else {}
        now = utcnow()
        conversation = Conversation(
            child_token_hash=self.token_hash(token),
            lang=lang,
            pre_chat=answers,
            priority=switchboard.initial_priority(in_danger=answers.get("in_danger")),
            mode=mode,
            created_at=now,
            queued_at=now,
            child_seen_at=now,
        )
        alert = None
        try:
            async with self.db() as session, session.begin():
                session.add(conversation)
                await session.flush()
                if answers.get("in_danger"):
                    alert = await alerts.open_alert(session, "in_danger", conversation.id)
        except IntegrityError:
            raise Refused(
                "conflict",
                "this token already has a conversation; to start again, say hello without a token",
            ) from None
        await self.hub.publish(FLOOR, QUEUE_CHANGED)
        if alert is not None:
            await self.hub.publish(alerts.SUPERVISORS, alert)
        return conversation

    async def feedback(
        self, conversation_id: uuid.UUID, *, rating: int, helped: bool | None
    ) -> None:
        async with self.db() as session, session.begin():
            result = await session.execute(
                update(Conversation)
                .where(
                    col(Conversation.id) == conversation_id,
                    col(Conversation.status) == "ended",
                    col(Conversation.feedback_rating).is_(None),
                )
                .values(feedback_rating=rating, feedback_helped=helped)
                .returning(col(Conversation.id))
            )
            if result.scalar_one_or_none() is None:
                raise Refused(
                    "conflict", "feedback is given once, after the conversation has ended"
                )

    async def issue_return_code(self, conversation_id: uuid.UUID) -> str:
        """A new code for coming back later; it replaces any earlier one."""
        for _attempt in range(5):
            code = return_codes.new_code()
            try:
                async with self.db() as session, session.begin():
                    result = await session.execute(
                        update(Conversation)
                        .where(col(Conversation.id) == conversation_id)
                        .values(return_code_hash=return_codes.code_hash(self._secret_text, code))
                        .returning(col(Conversation.id))
                    )
                    if result.scalar_one_or_none() is None:
                        raise Refused("not_found", "no such conversation")
                return code
            except IntegrityError:
                continue  # the same code is in use: draw another
        raise Refused("unavailable", "could not make a return code; try again")

    async def by_return_code(self, code: str) -> Conversation | None:
        async with self.db() as session:
            result = await session.execute(
                select(Conversation).where(
                    col(Conversation.return_code_hash)
                    == return_codes.code_hash(self._secret_text, code)
                )
            )
            return result.scalar_one_or_none()

    async def come_back(self, code: str, new_token: str) -> Conversation | None:
        """The conversation behind a return code, now bound to this device's new token."""
        async with self.db() as session, session.begin():
            result = await session.execute(
                update(Conversation)
                .where(
                    col(Conversation.return_code_hash)
                    == return_codes.code_hash(self._secret_text, code)
                )
                .values(child_token_hash=self.token_hash(new_token))
                .returning(Conversation)
            )
            return result.scalar_one_or_none()

    async def quick_exit(self, token: str) -> None:
        """The child left in a hurry: forget the token (it no longer opens the chat), take
        a waiting child out of the queue, and tell the counsellor."""
        now = utcnow()
        async with self.db() as session, session.begin():
            conversation = (
                await session.execute(
                    update(Conversation)
                    .where(col(Conversation.child_token_hash) == self.token_hash(token))
                    .values(
                        quick_exit_at=now,
                        child_left_at=now,
                        child_token_hash=self.token_hash(secrets.token_urlsafe(32)),
                    )
                    .returning(Conversation)
                )
            ).scalar_one_or_none()
            if conversation is None:
                return
            # A waiting chat leaves the queue; a left message stays for its answer.
            withdrawn = None
            if conversation.status == "queued" and conversation.mode == "chat":
                conversation.status = "ended"
                conversation.ended_at = now
                conversation.end_reason = "quick_exit"
                withdrawn = void_transfer(conversation, "ended")
        await self.hub.publish(
            conv_channel(conversation.id),
            {
                "type": "presence",
                "conversation_id": str(conversation.id),
                "child": "left_quickly",
                "_to": "staff",
            },
        )
        if conversation.status == "ended":
            await self.announce_end(conversation, withdrawn)

    async def child_present(self, conversation_id: uuid.UUID, *, online: bool) -> None:
        now = utcnow()
        async with self.db() as session, session.begin():
            await session.execute(
                update(Conversation)
                .where(col(Conversation.id) == conversation_id)
                .values(child_seen_at=now, child_left_at=None if online else now)
            )
        await self.hub.publish(
            conv_channel(conversation_id),
            {
                "type": "presence",
                "conversation_id": str(conversation_id),
                "child": "online" if online else "offline",
                "_to": "staff",
            },
        )

    # --- messages (both sides) --------------------------------------------------------

    async def post(
        self,
        conversation_id: uuid.UUID,
        *,
        client_id: str,
        body: str,
        staff: StaffIdentity | None = None,
    ) -> Posted:
        """Store a message under the next seq, once per client_id; it fans out when its
        batch commits, before this returns (chat_server/message_log.py)."""
        return await self.messages.post(
            conversation_id,
            sender="child" if staff is None else "counsellor",
            staff_id=None if staff is None else staff.id,
            client_id=client_id,
            body=body,
        )

    async def _fan_out(self, stored: Sequence[Stored]) -> None:
        queue_changed = False
        for message in stored:
            frame = protocol.msg_frame(
                conversation_id=message.conversation_id,
                seq=message.seq,
                sender=message.sender,
                body=message.body,
                at=message.at,
                client_id=message.client_id,
            )
            await self.hub.publish(conv_channel(message.conversation_id), self._flag(frame))
            # The queue shows how much a waiting child has written.
            queue_changed = queue_changed or message.queued
        if queue_changed:
            await self.hub.publish(FLOOR, QUEUE_CHANGED)

    async def fetch_after(self, conversation_id: uuid.UUID, after_seq: int) -> Sequence[Event]:
        async with self.db() as session:
            result = await session.execute(
                select(Message)
                .where(
                    col(Message.conversation_id) == conversation_id, col(Message.seq) > after_seq
                )
                .order_by(col(Message.seq))
                .limit(REPLAY_BATCH)
            )
            return [self.frame(m) for m in result.scalars()]

    def frame(self, message: Message) -> Event:
        return self._flag(message_frame(message))

    def _flag(self, frame: Event) -> Event:
        """A child's words that match a risk term carry the match, which only consoles
        ever see (the child's connection drops it)."""
        if frame["from"] == "child" and self.risk_terms is not None:
            match = self.risk_terms.match(frame["body"])
            if match is not None:
                frame["risk"] = match.as_json()
        return frame

    async def typing(self, conversation_id: uuid.UUID, *, sender: str, on: bool) -> None:
        await self.hub.publish(
            conv_channel(conversation_id),
            {"type": "typing", "conversation_id": str(conversation_id), "from": sender, "on": on},
        )

    async def mark_read(
        self, conversation_id: uuid.UUID, seq: int, *, staff: StaffIdentity | None = None
    ) -> None:
        column = (
            col(Conversation.child_read_seq) if staff is None else col(Conversation.staff_read_seq)
        )
        statement = (
            update(Conversation)
            .where(
                col(Conversation.id) == conversation_id,
                column < seq,
                col(Conversation.last_seq) >= seq,
            )
            .values({column: seq})
            .returning(col(Conversation.id))
        )
        if staff is not None:
            statement = statement.where(col(Conversation.assigned_user_id) == staff.id)
        async with self.db() as session, session.begin():
            moved = (await session.execute(statement)).scalar_one_or_none()
        if moved is not None:
            await self.hub.publish(
                conv_channel(conversation_id),
                {
                    "type": "read",
                    "conversation_id": str(conversation_id),
                    "from": "child" if staff is None else "counsellor",
                    "seq": seq,
                },
            )

    # --- the counsellor's side ---------------------------------------------------------

    async def take(
        self, staff: StaffIdentity, conversation_id: uuid.UUID | None = None
    ) -> Conversation:
        """Assign a queued chat to `staff`: exactly one of several racing takes wins, and
        nobody goes over capacity, on SQLite and PostgreSQL alike."""
        now = utcnow()
        for _attempt in range(5):
            async with self.db() as session, session.begin():
                # Lock the counsellor's row: two tabs of one counsellor taking at once
                # serialise here, so the load counted below is the committed truth.
                user = (
                    await session.execute(
                        select(StaffUser).where(col(StaffUser.id) == staff.id).with_for_update()
                    )
                ).scalar_one()
                load = await require_room(session, user, own=True)
                target = conversation_id or await self._next_in_queue(session)
                if target is None:
                    raise Refused("not_found", "nobody is waiting", reason="queue_empty")
                taken = (
                    await session.execute(
                        update(Conversation)
                        .where(col(Conversation.id) == target, col(Conversation.status) == "queued")
                        .values(status="active", assigned_user_id=staff.id, assigned_at=now)
                        .returning(Conversation)
                    )
                ).scalar_one_or_none()
                if taken is None and conversation_id is not None:
                    raise await self._why_not_queued(session, conversation_id)
                withdrawn = (
                    None if taken is None else void_transfer(taken, "requeued", keep_handover=True)
                )
            if taken is not None:
                await tell_withdrawn(self.hub, withdrawn)
                await self._announce_assignment(taken, staff, load + 1, user.max_chats)
                return taken
            # Someone else took the next child between our read and our update: try again.
        raise Refused("conflict", "the queue is moving fast; try again", reason="busy")

    async def end(
        self, conversation_id: uuid.UUID, *, reason: str, staff: StaffIdentity | None = None
    ) -> Conversation:
        statement = (
            update(Conversation)
            .where(col(Conversation.id) == conversation_id, col(Conversation.status) != "ended")
            .values(status="ended", ended_at=utcnow(), end_reason=reason)
            .returning(Conversation)
        )
        if staff is not None:
            statement = statement.where(col(Conversation.assigned_user_id) == staff.id)
        async with self.db() as session, session.begin():
            ended = (await session.execute(statement)).scalar_one_or_none()
            if ended is None:
                raise await self._why_not(session, conversation_id, staff)
            withdrawn = void_transfer(ended, "ended")
        await self.announce_end(ended, withdrawn)
        return ended

    async def announce_end(
        self, conversation: Conversation, withdrawn: Withdrawn | None = None
    ) -> None:
        """Tell everyone a chat is over; `withdrawn` is the offer its end made void."""
        await tell_withdrawn(self.hub, withdrawn)
        try:
            # Whoever or whatever ended it, a record with a contact type is final now.
            await records.finalise_for_conversation(
                self.db, conversation.id, conversation.assigned_user_id
            )
        except Exception:
            log.warning("could not finalise the record of an ended chat", exc_info=True)
        await self.hub.publish(
            conv_channel(conversation.id),
            {
                "type": "ended",
                "conversation_id": str(conversation.id),
                "reason": conversation.end_reason,
            },
        )
        await self.hub.publish(FLOOR, QUEUE_CHANGED)
        if conversation.assigned_user_id is not None:
            await self.publish_me(conversation.assigned_user_id)

    async def apply_risk(
        self, conversation_id: uuid.UUID, level: str, *, staff: StaffIdentity
    ) -> Conversation:
        """Flag the live risk of a chat: high and imminent move it up the queue, and the
        flag is never lowered by priority (only the level itself changes)."""
        if level not in switchboard.RISK_LEVELS:
            raise Refused(
                "bad_request", f"risk level must be one of {switchboard.RISK_LEVELS}, not {level!r}"
            )
        async with self.db() as session, session.begin():
            conversation = (
                await session.execute(
                    select(Conversation)
                    .where(col(Conversation.id) == conversation_id)
                    .with_for_update()
                )
            ).scalar_one_or_none()
            if conversation is None:
                raise Refused("not_found", f"no conversation {str(conversation_id)!r}")
            if conversation.assigned_user_id != staff.id and not staff.supervises:
                raise Refused("forbidden", "this chat is not assigned to you")
            previous = conversation.risk_level
            conversation.risk_level = level
            conversation.priority = switchboard.priority_for_risk(conversation.priority, level)
            alert = (
                await alerts.open_alert(session, "risk", conversation_id, level)
                if level in ("high", "imminent")
                else None
            )
            audit.record(
                session,
                action="risk.flag",
                actor_user_id=staff.id,
                target=f"conversation:{conversation_id}",
                level=level,
                previous=previous,
            )
        await self.hub.publish(
            conv_channel(conversation_id),
            {
                "type": "risk",
                "conversation_id": str(conversation_id),
                "level": level,
                "priority": conversation.priority,
                "_to": "staff",
            },
        )
        await self.hub.publish(FLOOR, QUEUE_CHANGED)
        if alert is not None:
            await self.hub.publish(alerts.SUPERVISORS, alert)
        return conversation

    async def set_status(self, staff: StaffIdentity, value: str) -> None:
        async with self.db() as session, session.begin():
            await session.execute(
                update(StaffUser)
                .where(col(StaffUser.id) == staff.id, col(StaffUser.status) != value)
                .values(status=value, status_since=utcnow(), last_seen_at=utcnow())
            )
        await self.publish_me(staff.id)
        await self.hub.publish(FLOOR, QUEUE_CHANGED)

    async def me(self, user_id: uuid.UUID) -> Event:
        async with self.db() as session:
            user = await session.get(StaffUser, user_id)
            if user is None:
                raise Refused("not_found", "no such staff member")
            load = await load_of(session, user_id)
        return {
            "id": str(user.id),
            "name": user.display_name,
            "role": user.role,
            "status": user.status,
            "capacity": user.max_chats,
            "load": load,
        }

    async def publish_me(self, user_id: uuid.UUID) -> None:
        await self.hub.publish(user_channel(user_id), {"type": "me", **await self.me(user_id)})

    async def chats_of(self, user_id: uuid.UUID) -> list[Conversation]:
        async with self.db() as session:
            result = await session.execute(
                select(Conversation)
                .where(
                    col(Conversation.assigned_user_id) == user_id,
                    col(Conversation.status) == "active",
                )
                .order_by(col(Conversation.assigned_at))
            )
            return list(result.scalars())

    async def check_assigned(
        self, staff: StaffIdentity, conversation_id: uuid.UUID
    ) -> Conversation:
        """The conversation if `staff` is its counsellor (ended chats stay readable)."""
        conversation = await self.get(conversation_id)
        if conversation is None:
            raise Refused("not_found", f"no conversation {str(conversation_id)!r}")
        if conversation.assigned_user_id != staff.id:
            raise Refused("forbidden", "this chat is not assigned to you")
        return conversation

    # --- helpers ------------------------------------------------------------------------

    async def _announce_assignment(
        self, conversation: Conversation, staff: StaffIdentity, load: int, capacity: int
    ) -> None:
        cid = str(conversation.id)
        await self.hub.publish(user_channel(staff.id), assigned_frame(conversation))
        await self.hub.publish(
            user_channel(staff.id),
            {"type": "me", **(await self.me(staff.id))},
        )
        await self.hub.publish(
            conv_channel(conversation.id),
            {
                "type": "state",
                "conversation_id": cid,
                "status": "active",
                "counsellor": {"name": staff.name},
                "_to": "child",
            },
        )
        await self.hub.publish(FLOOR, QUEUE_CHANGED)

    async def _next_in_queue(self, session: AsyncSession) -> uuid.UUID | None:
        result = await session.execute(
            select(col(Conversation.id))
            .where(col(Conversation.status) == "queued")
            .order_by(
                col(Conversation.priority).desc(),
                col(Conversation.queued_at),
                col(Conversation.id),
            )
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def _why_not(
        self, session: AsyncSession, conversation_id: uuid.UUID, staff: StaffIdentity | None
    ) -> Refused:
        conversation = await session.get(Conversation, conversation_id)
        if conversation is None:
            return Refused("not_found", f"no conversation {str(conversation_id)!r}")
        if conversation.status == "ended":
            return Refused("closed", "this conversation has ended")
        if staff is not None and conversation.assigned_user_id != staff.id:
            return Refused("forbidden", "this chat is not assigned to you")
        return Refused("conflict", f"this conversation is {conversation.status}")

    async def _why_not_queued(self, session: AsyncSession, conversation_id: uuid.UUID) -> Refused:
        conversation = await session.get(Conversation, conversation_id)
        if conversation is None:
            return Refused("not_found", f"no conversation {str(conversation_id)!r}")
        if conversation.status == "ended":
            return Refused("closed", "this conversation has ended")
        return Refused("conflict", "another counsellor has already taken this chat", reason="taken")


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """A transfer offer made void because its chat changed hands or ended."""

    conversation_id: uuid.UUID
    offered_by: uuid.UUID | None
    offered_to: uuid.UUID
    reason: str


def void_transfer(
    conversation: Conversation, reason: str, *, keep_handover: bool = False
) -> Withdrawn | None:
    """Clear what a transfer left on a chat that is changing hands or ending, in the
    transaction that changes it (which holds its row): an offer still waiting must never
    be accepted later, from whoever has the chat by then. The note of a transfer back to
    the queue is for its next taker only: `keep_handover` while that taker gets the chat;
    otherwise it goes, so nobody after them is shown a stale note as a handover.
    Returns the offer voided, for `tell_withdrawn` once committed."""
    offered_to = conversation.transfer_to_user_id
    offered_by = conversation.transfer_from_user_id
    nothing_left = offered_by is None and conversation.transfer_note is None
    if offered_to is None and (keep_handover or nothing_left):
        return None
    conversation.transfer_to_user_id = None
    conversation.transfer_from_user_id = None
    conversation.transfer_note = None
    conversation.transfer_offered_at = None
    if offered_to is None:
        return None
    return Withdrawn(conversation.id, offered_by, offered_to, reason)


async def tell_withdrawn(hub: Hub, *withdrawn: Withdrawn | None) -> None:
    """Offers that will never be answered: both ends hear of each as of a declined one,
    with the reason (the colleague's card goes; the sender stops waiting for it)."""
    for offer in withdrawn:
        if offer is None:
            continue
        cid = str(offer.conversation_id)
        if offer.offered_by is not None:
            await hub.publish(
                user_channel(offer.offered_by),
                {"type": "transfer_declined", "conversation_id": cid, "reason": offer.reason},
            )
        await hub.publish(
            user_channel(offer.offered_to),
            {"type": "transfer_withdrawn", "conversation_id": cid, "reason": offer.reason},
        )


def assigned_frame(conversation: Conversation) -> Event:
    return {
        "type": "assigned",
        "conversation_id": str(conversation.id),
        "last_seq": conversation.last_seq,
        "pre_chat": conversation.pre_chat,
        "lang": conversation.lang,
        "priority": conversation.priority,
        "waiting_since": protocol.iso(conversation.created_at),
    }


async def load_of(session: AsyncSession, user_id: uuid.UUID) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(Conversation)
        .where(col(Conversation.assigned_user_id) == user_id, col(Conversation.status) == "active")
    )
    return int(result.scalar_one())


async def require_room(session: AsyncSession, user: StaffUser, *, own: bool) -> int:
    """`user`'s load, if they have room for one more chat; refused `at_capacity` if not.
    `own`: the user is the one asking (a take), not a colleague being handed a chat."""
    load = await load_of(session, user.id)
    if not switchboard.has_capacity(capacity=user.max_chats, load=load):
        who = "you already have" if own else f"{user.display_name} already has"
        raise Refused("conflict", f"{who} {load} of {user.max_chats} chats", reason="at_capacity")
    return load
