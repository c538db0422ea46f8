"""The WebSocket edges: read a frame, hand it to the services, queue the answer.

Nothing here decides policy; it shuttles between the wire and the services and cleans
up in `finally`. Frames over the size limit never get here: the server closes with 1009.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket, WebSocketDisconnect

from chat_server import accounts, protocol
from chat_server.accounts import StaffIdentity
from chat_server.brokers import Event
from chat_server.connection import Connection
from chat_server.errors import Refused
from chat_server.hub import conv_channel, user_channel
from chat_server.runtime import Services, origin_allowed, services_of
from chat_server.switchboard import TokenBucket
from db.models import Conversation

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403

# A database that is briefly down: the client is told to retry, nothing was stored.
UNAVAILABLE = (OperationalError, DBAPIError, OSError, TimeoutError)


@dataclass
class _Limits:
    sends: TokenBucket
    frames: TokenBucket = field(
        default_factory=lambda: TokenBucket.full(rate=20, burst=60, now=time.monotonic())
    )


async def _serve(
    websocket: WebSocket,
    connection: Connection,
    handle: Callable[[Any], Awaitable[None]],
    parse: Callable[[str], Any],
    limits: _Limits,
) -> None:
    """Read frames until the client goes; each bad frame gets an error, never a close."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            connection.push(protocol.error("bad_request", "send text frames of JSON, not binary"))
            continue
        context = protocol.error_context(text)
        if not limits.frames.allow(time.monotonic()):
            connection.push(protocol.error("rate_limited", "too many frames; slow down", **context))
            continue
        try:
            await handle(parse(text))
        except Refused as refusal:
            connection.push(
                protocol.error(refusal.code, refusal.message, **(context | refusal.context))
            )
        except UNAVAILABLE:
            log.warning(
                "database unavailable while handling %s", context.get("in_reply_to"), exc_info=True
            )
            connection.push(
                protocol.error(
                    "unavailable",
                    "the service is briefly unavailable; nothing was stored, try again",
                    **context,
                )
            )


def _address(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else "unknown"


# --- the child -------------------------------------------------------------------------


class ChildSession:
    """One child's socket: no account, just the random token the page keeps."""

    def __init__(self, services: Services, connection: Connection, address: str) -> None:
        self.services = services
        self.connection = connection
        # Only to limit guessing of return codes, in memory; never stored or logged.
        self.address = address
        self.token: str | None = None
        self.lang = services.settings.default_lang
        self.conversation_id: uuid.UUID | None = None
        settings = services.settings
        self.limits = _Limits(
            sends=TokenBucket.full(
                rate=settings.child_messages_per_second,
                burst=settings.child_message_burst,
                now=time.monotonic(),
            )
        )

    async def handle(self, message: protocol.ChildMessage) -> None:
        conversations = self.services.conversations
        if isinstance(message, protocol.Hello):
            await self._hello(message)
            return
        if self.token is None:
            raise Refused("bad_request", "say hello first")
        if isinstance(message, protocol.Start):
            if self.conversation_id is not None:
                raise Refused("conflict", "this conversation has already started")
            conversation = await conversations.start(
                self.token, lang=self.lang, pre_chat=message.pre_chat, mode=message.mode
            )
            await self._follow(conversation.id)
            self.connection.push(await self.services.floor.child_state(conversation))
            return
        conversation_id = self._conversation()
        if isinstance(message, protocol.Send):
            if not self.limits.sends.allow(time.monotonic()):
                raise Refused("rate_limited", "too many messages; wait a moment")
            posted = await conversations.post(
                conversation_id, client_id=message.client_id, body=message.body
            )
            self.connection.push(
                protocol.ack_frame(
                    conversation_id=conversation_id,
                    client_id=message.client_id,
                    seq=posted.seq,
                    at=posted.at,
                )
            )
        elif isinstance(message, protocol.Typing):
            await conversations.typing(conversation_id, sender="child", on=message.on)
        elif isinstance(message, protocol.Read):
            await conversations.mark_read(conversation_id, message.seq)
        elif isinstance(message, protocol.End):
            await conversations.end(conversation_id, reason="child_ended")
        elif isinstance(message, protocol.ReturnCodeRequest):
            code = await conversations.issue_return_code(conversation_id)
            self.connection.push({"type": "return_code", "code": code})
        elif isinstance(message, protocol.Feedback):
            await conversations.feedback(
                conversation_id, rating=message.rating, helped=message.helped
            )

    def _conversation(self) -> uuid.UUID:
        if self.conversation_id is None:
            raise Refused("conflict", "no conversation yet; send start first")
        return self.conversation_id

    async def _hello(self, hello: protocol.Hello) -> None:
        if self.token is not None:
            raise Refused("conflict", "hello was already said on this connection")
        conversations = self.services.conversations
        if hello.return_code is not None:
            conversation, token = await self._come_back(hello.return_code), None
        else:
            conversation = await conversations.by_token(hello.token) if hello.token else None
            token = hello.token
        self.lang = hello.lang or self.services.settings.default_lang
        # Tokens are only ever made here: an unknown one is replaced, never adopted.
        self.token = token if conversation is not None and token else secrets.token_urlsafe(32)
        if conversation is not None and hello.return_code is not None:
            conversation = await conversations.come_back(hello.return_code, self.token)
        availability = await self.services.floor.availability_now()
        if conversation is None:
            self.connection.push(
                {
                    "type": "welcome",
                    "token": self.token,
                    "status": "new",
                    "last_seq": 0,
                    "availability": availability,
                }
            )
            return
        self.connection.push(
            {
                "type": "welcome",
                "token": self.token,
                "status": conversation.status,
                "last_seq": conversation.last_seq,
                "availability": availability,
            }
        )
        # A new device holds nothing: a return code replays the whole conversation.
        after = 0 if hello.return_code is not None else hello.last_seq or 0
        await self._follow(conversation.id, after_seq=after)
        if conversation.status == "ended":
            self.connection.push({"type": "ended", "reason": conversation.end_reason})
        else:
            self.connection.push(await self.services.floor.child_state(conversation))

    async def _come_back(self, code: str) -> Conversation:
        """Check a return code, refusing addresses that keep guessing wrong."""
        guesses = self.services.guesses
        if guesses.blocked(self.address):
            raise Refused("rate_limited", "too many wrong codes; try again in a few minutes")
        conversation = await self.services.conversations.by_return_code(code)
        if conversation is None:
            guesses.failed(self.address)
            raise Refused("not_found", "that code is not right")
        return conversation

    async def _follow(self, conversation_id: uuid.UUID, *, after_seq: int = 0) -> None:
        """Replay what the child lacks, then follow live: the replay is queued before the
        join, so a message arriving in between is sent once, by whichever comes first."""
        self.conversation_id = conversation_id
        self.connection.replay(conversation_id, after_seq)
        await self.services.hub.join(self.connection, conv_channel(conversation_id))
        await self.services.conversations.child_present(conversation_id, online=True)

    async def leave(self) -> None:
        if self.conversation_id is None:
            return
        others = [
            c
            for c in self.services.hub.members(conv_channel(self.conversation_id))
            if c.kind == "child" and c is not self.connection
        ]
        if not others:
            await self.services.conversations.child_present(self.conversation_id, online=False)


async def child_socket(websocket: WebSocket) -> None:
    services = services_of(websocket)
    if not origin_allowed(websocket, services):
        await websocket.close(CLOSE_FORBIDDEN_ORIGIN)
        return
    await websocket.accept()
    settings = services.settings
    connection = Connection(
        kind="child",
        send_text=websocket.send_text,
        close=lambda code, reason: websocket.close(code, reason),
        fetch_after=services.conversations.fetch_after,
        queue_size=settings.outbound_queue_size,
    )
    connection.start()
    session = ChildSession(services, connection, _address(websocket))
    try:
        await _serve(
            websocket,
            connection,
            session.handle,
            lambda text: protocol.parse_child(text, max_body_chars=settings.max_body_chars),
            session.limits,
        )
    except WebSocketDisconnect:
        pass
    finally:
        await services.hub.leave_all(connection)
        try:
            await session.leave()
        except UNAVAILABLE:
            log.info("could not record the child leaving; the sweep will", exc_info=True)
        await connection.stop()


# --- staff -------------------------------------------------------------------------------


class StaffSession:
    def __init__(self, services: Services, connection: Connection, staff: StaffIdentity) -> None:
        self.services = services
        self.connection = connection
        self.staff = staff
        settings = services.settings
        self.limits = _Limits(
            sends=TokenBucket.full(
                rate=settings.staff_messages_per_second,
                burst=settings.staff_message_burst,
                now=time.monotonic(),
            )
        )

    async def open(self) -> None:
        """Follow the staff member's channels, then start the writer with the snapshot,
        so the snapshot is the first frame and nothing published meanwhile is lost."""
        hub = self.services.hub
        await hub.join(self.connection, user_channel(self.staff.id))
        for conversation in await self.services.conversations.chats_of(self.staff.id):
            await hub.join(self.connection, conv_channel(conversation.id))
        self.connection.start(first=await self.services.floor.snapshot(self.staff))

    def follows(self, conversation_id: uuid.UUID) -> bool:
        return self.connection in self.services.hub.members(conv_channel(conversation_id))

    async def handle(self, message: protocol.StaffMessage) -> None:
        conversations = self.services.conversations
        staff = self.staff
        if isinstance(message, protocol.Status):
            await conversations.set_status(staff, message.value)
        elif isinstance(message, protocol.Take):
            await conversations.take(staff, message.conversation_id)
        elif isinstance(message, protocol.StaffSend):
            cid = message.conversation_id
            if not self.limits.sends.allow(time.monotonic()):
                raise Refused("rate_limited", "too many messages; wait a moment")
            posted = await conversations.post(
                cid, client_id=message.client_id, body=message.body, staff=staff
            )
            self.connection.push(
                protocol.ack_frame(
                    conversation_id=cid, client_id=message.client_id, seq=posted.seq, at=posted.at
                )
            )
        elif isinstance(message, protocol.StaffTyping):
            if not self.follows(message.conversation_id):
                raise Refused("forbidden", "this chat is not assigned to you")
            await conversations.typing(message.conversation_id, sender="counsellor", on=message.on)
        elif isinstance(message, protocol.StaffRead):
            await conversations.check_assigned(staff, message.conversation_id)
            await conversations.mark_read(message.conversation_id, message.seq, staff=staff)
        elif isinstance(message, protocol.Resume):
            cid = message.conversation_id
            await conversations.check_assigned(staff, cid)
            self.connection.replay(cid, message.last_seq)
            if not self.follows(cid):
                await self.services.hub.join(self.connection, conv_channel(cid))
        elif isinstance(message, protocol.StaffEnd):
            await self._end(message)
        elif isinstance(message, protocol.Risk):
            await conversations.apply_risk(message.conversation_id, message.level, staff=staff)
        elif isinstance(message, protocol.Transfer):
            await self.services.transfers.offer(
                staff, message.conversation_id, message.to_user_id, message.note
            )
        elif isinstance(message, protocol.TransferAccept):
            await self.services.transfers.accept(staff, message.conversation_id)
        elif isinstance(message, protocol.TransferDecline):
            await self.services.transfers.decline(staff, message.conversation_id)
        else:
            raise Refused("bad_request", f"{message.type!r} is not handled yet")

    async def _end(self, message: protocol.StaffEnd) -> None:
        """End a chat, with an optional last word to the child stored before the end."""
        conversations = self.services.conversations
        cid = message.conversation_id
        await conversations.check_assigned(self.staff, cid)
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
        if kind == "assigned" and channel.startswith("user:"):
            cid = uuid.UUID(event["conversation_id"])
            asyncio.get_running_loop().create_task(_join_and_replay(services, connection, cid))
        elif kind in ("released", "ended") and channel.startswith("conv:"):
            if event.get("user_id") not in (None, str(connection.user_id)):
                return  # someone else's release (their colleague now follows this chat)
            cid = uuid.UUID(event["conversation_id"])
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
    try:
        await session.open()
        await _serve(
            websocket,
            connection,
            session.handle,
            lambda text: protocol.parse_staff(text, max_body_chars=settings.max_body_chars),
            session.limits,
        )
    except WebSocketDisconnect:
        pass
    finally:
        await services.hub.leave_all(connection)
        await connection.stop()
