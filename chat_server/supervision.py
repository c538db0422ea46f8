"""What supervisors do on the floor: monitor silently, whisper, take over, assign,
block, acknowledge alerts. Every action, and every refused attempt, is audited."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import alerts, audit, protocol, transfers
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
from chat_server.settings import Settings
from db.models import Alert, Block, Conversation, StaffUser, Whisper, utcnow

BLOCKS = "blocks"
REASON_LIMIT = 500
WHISPER_LIMIT = 2000


class AddressBlocks:
    """Addresses of blocked children, seen by this node: memory only, never stored."""

    def __init__(self) -> None:
        self._until: dict[str, tuple[uuid.UUID, datetime]] = {}

    def add(self, address: str, block_id: uuid.UUID, until: datetime) -> None:
        self._until[address] = (block_id, until)

    def lift(self, block_id: uuid.UUID) -> None:
        for address in [a for a, (b, _) in self._until.items() if b == block_id]:
            del self._until[address]

    def blocked(self, address: str) -> bool:
        entry = self._until.get(address)
        if entry is None:
            return False
        if entry[1] <= utcnow():
            del self._until[address]
            return False
        return True


class Supervision:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        hub: Hub,
        conversations: Conversations,
        settings: Settings,
    ) -> None:
        self.db = db
        self.hub = hub
        self.conversations = conversations
        self.settings = settings
        self.address_blocks = AddressBlocks()
        hub.listen(BLOCKS, self._on_block_event)

    def _on_block_event(self, event: Event) -> None:
        """Every node remembers, in memory, the addresses its blocked children came from."""
        if event["type"] == "_unblock":
            self.address_blocks.lift(uuid.UUID(event["block_id"]))
            return
        until = datetime.fromisoformat(event["until"])
        channel = conv_channel(uuid.UUID(event["conversation_id"]))
        for connection in self.hub.members(channel):
            if connection.kind == "child" and connection.address is not None:
                self.address_blocks.add(connection.address, uuid.UUID(event["block_id"]), until)

    async def require_supervisor(self, staff: StaffIdentity, action: str, target: str) -> None:
        """Refuse (and audit the attempt) unless `staff` supervises."""
        if staff.supervises:
            return
        async with self.db() as session, session.begin():
            audit.record(
                session,
                action=f"{action}.denied",
                actor_user_id=staff.id,
                target=target,
                role=staff.role,
            )
        raise Refused("forbidden", f"only supervisors may {action}")

    # --- silent monitoring -----------------------------------------------------------------

    async def monitor(self, staff: StaffIdentity, conversation_id: uuid.UUID, on: bool) -> int:
        """Start or stop following a chat; returns its last seq. The child's stream does
        not change in any way; the audit log records who watched what, and when."""
        target = f"conversation:{conversation_id}"
        await self.require_supervisor(staff, "monitor", target)
        async with self.db() as session, session.begin():
            conversation = await _conversation(session, conversation_id)
            if on and conversation.status == "ended":
                raise Refused("closed", "this conversation has ended")
            audit.record(
                session,
                action="monitor.start" if on else "monitor.stop",
                actor_user_id=staff.id,
                target=target,
            )
        if self.settings.tell_counsellor_about_monitoring:
            await self.hub.publish(
                conv_channel(conversation_id),
                {
                    "type": "monitored",
                    "conversation_id": str(conversation_id),
                    "by": {"id": str(staff.id), "name": staff.name},
                    "on": on,
                    "_to": "staff",
                },
            )
        return conversation.last_seq

    async def whisper(self, staff: StaffIdentity, conversation_id: uuid.UUID, body: str) -> None:
        target = f"conversation:{conversation_id}"
        await self.require_supervisor(staff, "whisper", target)
        protocol.check_body(body, WHISPER_LIMIT)
        now = utcnow()
        async with self.db() as session, session.begin():
            conversation = await _conversation(session, conversation_id)
            if conversation.status != "active":
                raise Refused(
                    "closed" if conversation.status == "ended" else "conflict",
                    "whispers go to the counsellor of an active chat",
                )
            session.add(
                Whisper(
                    conversation_id=conversation_id,
                    author_user_id=staff.id,
                    body=body,
                    created_at=now,
                )
            )
            audit.record(session, action="whisper", actor_user_id=staff.id, target=target)
        await self.hub.publish(
            conv_channel(conversation_id),
            {
                "type": "whisper",
                "conversation_id": str(conversation_id),
                "from": {"id": str(staff.id), "name": staff.name},
                "body": body,
                "at": protocol.iso(now),
                "_to": "staff",
            },
        )

    async def takeover(self, staff: StaffIdentity, conversation_id: uuid.UUID) -> None:
        """The supervisor becomes the chat's counsellor; seq simply continues."""
        target = f"conversation:{conversation_id}"
        await self.require_supervisor(staff, "takeover", target)
        async with self.db() as session, session.begin():
            conversation = await _conversation(session, conversation_id, lock=True)
            if conversation.status != "active":
                raise Refused(
                    "closed" if conversation.status == "ended" else "conflict",
                    "only an active chat can be taken over",
                )
            previous = conversation.assigned_user_id
            if previous == staff.id:
                raise Refused("conflict", "this chat is already yours")
            # A transfer waiting for a colleague's answer is void now: nobody may accept a
            # chat that has become the supervisor's, and its note was for the colleague.
            withdrawn = void_transfer(conversation, "takeover")
            conversation.assigned_user_id = staff.id
            conversation.assigned_at = utcnow()
            audit.record(
                session,
                action="takeover",
                actor_user_id=staff.id,
                target=target,
                from_user_id=str(previous) if previous else None,
            )
        await tell_withdrawn(self.hub, withdrawn)
        if previous is not None:
            await self.hub.publish(
                conv_channel(conversation_id),
                {
                    "type": "released",
                    "conversation_id": str(conversation_id),
                    "reason": "takeover",
                    "by": {"id": str(staff.id), "name": staff.name},
                    "user_id": str(previous),
                    "_to": "staff",
                },
            )
            await self.conversations.publish_me(previous)
        await self._hand_to(staff.id, staff.name, conversation)

    async def assign(
        self, staff: StaffIdentity, conversation_id: uuid.UUID, to_user_id: uuid.UUID
    ) -> None:
        """Give a waiting child to a named counsellor who is available and has room, as a
        transfer would; supervisors assigning a chat to themselves are judged as a `take`,
        by capacity only."""
        target = f"conversation:{conversation_id}"
        await self.require_supervisor(staff, "assign", target)
        async with self.db() as session, session.begin():
            counsellor = (
                await session.execute(
                    select(StaffUser).where(col(StaffUser.id) == to_user_id).with_for_update()
                )
            ).scalar_one_or_none()
            if counsellor is None or not counsellor.active:
                raise Refused("not_found", "no such counsellor")
            if to_user_id != staff.id:
                await transfers.check_can_receive(session, counsellor)
            else:
                await require_room(session, counsellor, own=True)
            assigned = (
                await session.execute(
                    update(Conversation)
                    .where(
                        col(Conversation.id) == conversation_id,
                        col(Conversation.status) == "queued",
                    )
                    .values(status="active", assigned_user_id=to_user_id, assigned_at=utcnow())
                    .returning(Conversation)
                )
            ).scalar_one_or_none()
            if assigned is None:
                existing = await session.get(Conversation, conversation_id)
                if existing is None:
                    raise Refused("not_found", f"no conversation {str(conversation_id)!r}")
                raise Refused(
                    "closed" if existing.status == "ended" else "conflict",
                    "this chat is no longer waiting",
                )
            withdrawn = void_transfer(assigned, "requeued", keep_handover=True)
            audit.record(
                session,
                action="assign",
                actor_user_id=staff.id,
                target=target,
                to_user_id=str(to_user_id),
            )
        await tell_withdrawn(self.hub, withdrawn)
        await self._hand_to(to_user_id, counsellor.display_name, assigned)
        await transfers.tell_handover(self.db, self.hub, assigned)

    async def block(
        self, staff: StaffIdentity, conversation_id: uuid.UUID, *, hours: int | None, reason: str
    ) -> Block:
        """End an abusive conversation and refuse new chats from that browser session (and,
        on the nodes that saw it, from its address, in memory only) for a while."""
        target = f"conversation:{conversation_id}"
        await self.require_supervisor(staff, "block", target)
        hours = hours if hours is not None else self.settings.block_default_hours
        if not 1 <= hours <= self.settings.block_max_hours:
            raise Refused("bad_request", f"hours must be 1 to {self.settings.block_max_hours}")
        if not reason.strip() or len(reason) > REASON_LIMIT:
            raise Refused("bad_request", f"give a reason of 1 to {REASON_LIMIT} characters")
        now = utcnow()
        async with self.db() as session, session.begin():
            conversation = await _conversation(session, conversation_id, lock=True)
            block = Block(
                child_token_hash=conversation.child_token_hash,
                conversation_id=conversation_id,
                reason=reason.strip(),
                created_by=staff.id,
                created_at=now,
                expires_at=now + timedelta(hours=hours),
            )
            session.add(block)
            ended_now = conversation.status != "ended"
            withdrawn = None
            if ended_now:
                conversation.status = "ended"
                conversation.ended_at = now
                conversation.end_reason = "blocked"
                withdrawn = void_transfer(conversation, "ended")
            audit.record(
                session, action="block", actor_user_id=staff.id, target=target, hours=hours
            )
        await self.hub.publish(
            BLOCKS,
            {
                "type": "_block",
                "block_id": str(block.id),
                "conversation_id": str(conversation_id),
                "until": block.expires_at.isoformat(),
            },
        )
        if ended_now:
            await self.conversations.announce_end(conversation, withdrawn)
        return block

    async def lift(self, staff: StaffIdentity, block_id: uuid.UUID) -> None:
        await self.require_supervisor(staff, "unblock", f"block:{block_id}")
        async with self.db() as session, session.begin():
            lifted = (
                await session.execute(
                    update(Block)
                    .where(col(Block.id) == block_id, col(Block.lifted_at).is_(None))
                    .values(lifted_at=utcnow(), lifted_by=staff.id)
                    .returning(col(Block.id))
                )
            ).scalar_one_or_none()
            if lifted is None:
                raise Refused("not_found", "no such active block")
            audit.record(
                session, action="unblock", actor_user_id=staff.id, target=f"block:{block_id}"
            )
        await self.hub.publish(BLOCKS, {"type": "_unblock", "block_id": str(block_id)})

    async def active_blocks(self) -> list[Block]:
        async with self.db() as session:
            result = await session.execute(
                select(Block)
                .where(col(Block.lifted_at).is_(None), col(Block.expires_at) > utcnow())
                .order_by(col(Block.created_at).desc())
            )
            return list(result.scalars())

    # --- alerts ------------------------------------------------------------------------------

    async def ack_alert(self, staff: StaffIdentity, alert_id: uuid.UUID) -> None:
        await self.require_supervisor(staff, "acknowledge alerts", f"alert:{alert_id}")
        async with self.db() as session, session.begin():
            alert = (
                await session.execute(
                    update(Alert)
                    .where(col(Alert.id) == alert_id, col(Alert.acked_at).is_(None))
                    .values(acked_by=staff.id, acked_at=utcnow())
                    .returning(Alert)
                )
            ).scalar_one_or_none()
            if alert is None:
                raise Refused("not_found", "no such open alert")
            audit.record(
                session, action="alert.ack", actor_user_id=staff.id, target=f"alert:{alert_id}"
            )
        await self.hub.publish(alerts.SUPERVISORS, alerts.alert_frame(alert))

    async def sweep_alerts(self) -> None:
        """Open alerts for long waits and children left unanswered (idempotent)."""
        now = utcnow()
        waited = now - timedelta(seconds=self.settings.wait_alert_s)
        unanswered = now - timedelta(seconds=self.settings.unanswered_alert_s)
        events: list[Event] = []
        async with self.db() as session, session.begin():
            long_waits = (
                await session.execute(
                    select(col(Conversation.id)).where(
                        col(Conversation.status) == "queued",
                        col(Conversation.mode) == "chat",
                        col(Conversation.queued_at) < waited,
                    )
                )
            ).scalars()
            for conversation_id in list(long_waits):
                event = await alerts.open_alert(session, "long_wait", conversation_id)
                if event is not None:
                    events.append(event)
            silent = (
                await session.execute(
                    select(col(Conversation.id)).where(
                        col(Conversation.status) == "active",
                        col(Conversation.last_child_message_at) < unanswered,
                        (col(Conversation.last_staff_message_at).is_(None))
                        | (
                            col(Conversation.last_staff_message_at)
                            < col(Conversation.last_child_message_at)
                        ),
                    )
                )
            ).scalars()
            for conversation_id in list(silent):
                event = await alerts.open_alert(session, "unanswered", conversation_id)
                if event is not None:
                    events.append(event)
        for event in events:
            await self.hub.publish(alerts.SUPERVISORS, event)

    # --- helpers ----------------------------------------------------------------------------

    async def _hand_to(self, user_id: uuid.UUID, name: str, conversation: Conversation) -> None:
        await self.hub.publish(user_channel(user_id), assigned_frame(conversation))
        await self.conversations.publish_me(user_id)
        await self.hub.publish(
            conv_channel(conversation.id),
            {
                "type": "state",
                "conversation_id": str(conversation.id),
                "status": "active",
                "counsellor": {"name": name},
                "_to": "child",
            },
        )
        await self.hub.publish(FLOOR, QUEUE_CHANGED)


async def _conversation(
    session: AsyncSession, conversation_id: uuid.UUID, *, lock: bool = False
) -> Conversation:
    statement = select(Conversation).where(col(Conversation.id) == conversation_id)
    if lock:
        statement = statement.with_for_update()
    conversation = (await session.execute(statement)).scalar_one_or_none()
    if conversation is None:
        raise Refused("not_found", f"no conversation {str(conversation_id)!r}")
    return conversation
