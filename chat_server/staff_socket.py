"""The staff WebSocket edge: consoles of counsellors and supervisors."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from chat_server import accounts, alerts, protocol, records, taxonomy, transfers
from chat_server.accounts import StaffIdentity
from chat_server.brokers import Event
from chat_server.connection import Connection
from chat_server.errors import Refused
from chat_server.hub import conv_channel, user_channel
from chat_server.runtime import Services, origin_allowed, services_of
from chat_server.sockets import (
    CLOSE_FORBIDDEN_ORIGIN,
    CLOSE_UNAUTHENTICATED,
    Limits,
    serve,
)
from chat_server.switchboard import TokenBucket
from db.models import Block, utcnow

log = logging.getLogger(__name__)


class StaffSession:
    def __init__(self, services: Services, connection: Connection, staff: StaffIdentity) -> None:
        self.services = services
        self.connection = connection
        self.staff = staff
        self.monitoring = connection.watching
        settings = services.settings
        self.limits = Limits(
            sends=TokenBucket.full(
                rate=settings.staff_messages_per_second,
                burst=settings.staff_message_burst,
                now=time.monotonic(),
            )
        )

    async def open(self) -> None:
        """Follow the staff member's channels, then start the writer with the snapshot,
        so the snapshot is the first frame and nothing published meanwhile is lost.
        Supervisors also follow the alerts and get the live floor."""
        hub = self.services.hub
        # Present from the first moment, not from the first heartbeat: a chat taken before
        # it must not look like the chat of a counsellor who vanished.
        await accounts.touch(self.services.db, {self.staff.id}, utcnow())
        await hub.join(self.connection, user_channel(self.staff.id))
        if self.staff.session_id is not None:
            # The session's end (logout, password change...) closes this socket.
            await hub.join(self.connection, accounts.session_channel(self.staff.session_id))
        for conversation in await self.services.conversations.chats_of(self.staff.id):
            # A console coming back says what it holds with `resume`; until then (for a
            # moment at most) the chat's messages wait, so each arrives once, in order.
            self.connection.hold(conversation.id)
            await hub.join(self.connection, conv_channel(conversation.id))
        if self.staff.supervises:
            await hub.join(self.connection, alerts.SUPERVISORS)
        self.connection.start(first=await self.snapshot())
        asyncio.get_running_loop().call_later(
            self.services.settings.resume_grace_s, self.connection.release
        )
        if self.staff.supervises:
            self.connection.push(await self.services.floor.floor_view())

    async def snapshot(self) -> Event:
        """The floor's snapshot, with what a console coming back would otherwise forget
        until the next event: each chat's risk level, its transfer waiting for an answer
        and the note it was handed over with, and the offers waiting for my answer."""
        mine = await self.services.conversations.chats_of(self.staff.id)
        snapshot = await self.services.floor.snapshot(self.staff, mine)
        standing, offers = await self.services.transfers.standing(self.staff.id, mine)
        for chat in snapshot["chats"]:
            chat.update(standing.get(chat["conversation_id"], {}))
        snapshot["offers"] = offers
        return snapshot

    def follows(self, conversation_id: uuid.UUID) -> bool:
        return self.connection in self.services.hub.members(conv_channel(conversation_id))

    def counsels(self, conversation_id: uuid.UUID) -> bool:
        """Following a chat as its counsellor, not as a silent monitor."""
        return self.follows(conversation_id) and conversation_id not in self.monitoring

    async def handle(self, message: protocol.StaffMessage) -> None:
        conversations = self.services.conversations
        staff = self.staff
        if isinstance(message, protocol.Ping):
            self.connection.push({"type": "pong"})
        elif isinstance(message, protocol.Status):
            await conversations.set_status(staff, message.value)
        elif isinstance(message, protocol.Take):
            taken = await conversations.take(staff, message.conversation_id)
            await transfers.tell_handover(self.services.db, self.services.hub, taken)
        elif isinstance(message, protocol.StaffSend):
            cid = message.conversation_id
            if not self.limits.sends.allow(time.monotonic()):
                raise Refused("rate_limited", "too many messages; wait a moment")
            started = time.perf_counter()
            posted = await conversations.post(
                cid, client_id=message.client_id, body=message.body, staff=staff
            )
            self.connection.push(
                protocol.ack_frame(
                    conversation_id=cid, client_id=message.client_id, seq=posted.seq, at=posted.at
                )
            )
            self.services.metrics.acked(
                "counsellor", time.perf_counter() - started, duplicate=posted.duplicate
            )
        elif isinstance(message, protocol.StaffTyping):
            if not self.counsels(message.conversation_id):
                raise Refused("forbidden", "this chat is not assigned to you")
            await conversations.typing(message.conversation_id, sender="counsellor", on=message.on)
        elif isinstance(message, protocol.StaffRead):
            await conversations.check_assigned(staff, message.conversation_id)
            await conversations.mark_read(message.conversation_id, message.seq, staff=staff)
        elif isinstance(message, protocol.Resume):
            cid = message.conversation_id
            if cid not in self.monitoring:
                await conversations.check_assigned(staff, cid)
            self.connection.replay(cid, message.last_seq)
            if not self.follows(cid):
                await self.services.hub.join(self.connection, conv_channel(cid))
        elif isinstance(message, protocol.StaffEnd):
            await self._end(message)
        elif isinstance(message, protocol.Risk):
            await conversations.apply_risk(message.conversation_id, message.level, staff=staff)
        elif isinstance(message, protocol.Tag):
            # The chat's categories, into its contact record (unknown codes are refused).
            db = self.services.db
            record, _risk = await records.update_for_conversation(
                db,
                await taxonomy.load(db),
                message.conversation_id,
                staff,
                {"categories": list(message.categories)},
            )
            self.connection.push(
                {
                    "type": "tagged",
                    "conversation_id": str(message.conversation_id),
                    "categories": record.categories,
                }
            )
        elif isinstance(message, protocol.Transfer):
            await self.services.transfers.offer(
                staff, message.conversation_id, message.to_user_id, message.note
            )
        elif isinstance(message, protocol.TransferAccept):
            await self.services.transfers.accept(staff, message.conversation_id)
        elif isinstance(message, protocol.TransferDecline):
            await self.services.transfers.decline(staff, message.conversation_id)
        else:
            await self._supervise(message)

    async def _supervise(self, message: protocol.StaffMessage) -> None:
        supervision = self.services.supervision
        staff = self.staff
        if isinstance(message, protocol.Monitor):
            await self._monitor(message.conversation_id, message.on)
        elif isinstance(message, protocol.WhisperMsg):
            await supervision.whisper(staff, message.conversation_id, message.body)
        elif isinstance(message, protocol.Takeover):
            await supervision.takeover(staff, message.conversation_id)
            self.monitoring.discard(message.conversation_id)
        elif isinstance(message, protocol.Assign):
            await supervision.assign(staff, message.conversation_id, message.to_user_id)
        elif isinstance(message, protocol.BlockMsg):
            block = await supervision.block(
                staff, message.conversation_id, hours=message.hours, reason=message.reason
            )
            self.connection.push({"type": "blocked", **block_json(block)})
        elif isinstance(message, protocol.Unblock):
            await supervision.lift(staff, message.block_id)
            self.connection.push({"type": "unblocked", "block_id": str(message.block_id)})
        elif isinstance(message, protocol.ListBlocks):
            await supervision.require_supervisor(staff, "list blocks", "blocks")
            blocks = await supervision.active_blocks()
            self.connection.push({"type": "blocks", "items": [block_json(b) for b in blocks]})
        elif isinstance(message, protocol.AlertAck):
            await supervision.ack_alert(staff, message.alert_id)
        else:
            raise Refused("bad_request", f"{message.type!r} is not handled")

    async def _monitor(self, conversation_id: uuid.UUID, on: bool) -> None:
        """Follow a chat silently: its history, then its messages, typing and end. The
        chat's own frames do not change; nothing is published to the child."""
        hub = self.services.hub
        last_seq = await self.services.supervision.monitor(self.staff, conversation_id, on)
        if on:
            self.connection.push(
                {
                    "type": "monitoring",
                    "conversation_id": str(conversation_id),
                    "last_seq": last_seq,
                }
            )
            if not self.follows(conversation_id):
                self.monitoring.add(conversation_id)
                self.connection.replay(conversation_id, 0)
                await hub.join(self.connection, conv_channel(conversation_id))
        elif conversation_id in self.monitoring:
            self.monitoring.discard(conversation_id)
            self.connection.forget(conversation_id)
            await hub.leave(self.connection, conv_channel(conversation_id))

    async def _end(self, message: protocol.StaffEnd) -> None:
        """End a chat, with an optional last word to the child stored before the end."""
        conversations = self.services.conversations
        cid = message.conversation_id
        await conversations.check_assigned(self.staff, cid)
        # The contact is recorded before it is closed: every contact is counted.
        await records.require_contact_type(self.services.db, cid)
        if message.closing_message is not None:
            posted = await conversations.post(
                cid,
                client_id=f"closing-{cid}",
                body=message.closing_message,
                staff=self.staff,
            )
            self.connection.push(
                protocol.ack_frame(
                    conversation_id=cid, client_id=f"closing-{cid}", seq=posted.seq, at=posted.at
                )
            )
        await conversations.end(cid, reason="counsellor_ended", staff=self.staff)


def _follow_assignments(services: Services) -> Callable[[Connection, str, Event], None]:
    """Staff consoles join a chat's channel when it becomes theirs and leave when it goes."""

    def hook(connection: Connection, channel: str, event: Event) -> None:
        if connection.kind != "staff":
            return
        kind = event["type"]
        if kind == accounts.SESSION_ENDED and channel.startswith("session:"):
            connection._abort(CLOSE_UNAUTHENTICATED, "your session has ended; log in again")
            return
        if kind == "assigned" and channel.startswith("user:"):
            cid = uuid.UUID(event["conversation_id"])
            asyncio.get_running_loop().create_task(_join_and_replay(services, connection, cid))
        elif kind in ("released", "ended") and channel.startswith("conv:"):
            if event.get("user_id") not in (None, str(connection.user_id)):
                return  # someone else's release (their colleague now follows this chat)
            cid = uuid.UUID(event["conversation_id"])
            if kind == "released" and cid in connection.watching:
                return  # a monitor keeps following whoever counsels the child now
            connection.watching.discard(cid)
            connection.forget(cid)
            asyncio.get_running_loop().create_task(
                services.hub.leave(connection, conv_channel(cid))
            )

    return hook


async def _join_and_replay(services: Services, connection: Connection, cid: uuid.UUID) -> None:
    connection.replay(cid, 0)
    await services.hub.join(connection, conv_channel(cid))


def install_hooks(services: Services) -> None:
    services.hub.intercept(_follow_assignments(services))


async def staff_socket(websocket: WebSocket) -> None:
    services = services_of(websocket)
    if not origin_allowed(websocket, services):
        await websocket.close(CLOSE_FORBIDDEN_ORIGIN)
        return
    staff = await accounts.session_identity(
        services.db, services.settings, websocket.cookies.get(accounts.SESSION_COOKIE)
    )
    await websocket.accept()
    if staff is None:
        await websocket.close(CLOSE_UNAUTHENTICATED, "log in first")
        return
    settings = services.settings
    connection = Connection(
        kind="staff",
        send_text=websocket.send_text,
        close=lambda code, reason: websocket.close(code, reason),
        fetch_after=services.conversations.fetch_after,
        queue_size=settings.outbound_queue_size,
        user_id=staff.id,
    )
    session = StaffSession(services, connection, staff)
    watch: asyncio.Task[None] | None = None
    if staff.session_id is not None:
        # Keeps the session in use while the console is open; closes it if it ends.
        watch = asyncio.create_task(
            accounts.watch_session(
                services.db,
                settings,
                staff.session_id,
                lambda: connection._abort(CLOSE_UNAUTHENTICATED, "your session has ended"),
            )
        )
    with services.metrics.connection("staff"):
        try:
            await session.open()
            await serve(
                websocket,
                connection,
                session.handle,
                lambda text: protocol.parse_staff(text, max_body_chars=settings.max_body_chars),
                session.limits,
            )
        except WebSocketDisconnect:
            pass
        finally:
            if watch is not None:
                watch.cancel()
            await services.hub.leave_all(connection)
            await connection.stop()


def block_json(block: Block) -> Event:
    return {
        "block_id": str(block.id),
        "conversation_id": str(block.conversation_id),
        "reason": block.reason,
        "created_at": protocol.iso(block.created_at),
        "expires_at": protocol.iso(block.expires_at),
    }
