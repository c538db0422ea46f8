"""The child's WebSocket edge: no account, just the random token the page keeps."""

from __future__ import annotations

import logging
import secrets
import time
import uuid

from starlette.websockets import WebSocket, WebSocketDisconnect

from chat_server import protocol
from chat_server.connection import Connection
from chat_server.errors import Refused
from chat_server.hub import conv_channel
from chat_server.runtime import Services, origin_allowed, services_of
from chat_server.sockets import (
    CLOSE_FORBIDDEN_ORIGIN,
    CLOSE_RESTARTING,
    UNAVAILABLE,
    Limits,
    address_of,
    serve,
)
from chat_server.switchboard import TokenBucket
from db.models import Conversation

log = logging.getLogger(__name__)


class ChildSession:
    """One child's socket: no account, just the random token the page keeps."""

    # One per open socket: slots keep an idle child's share of memory small.
    __slots__ = ("address", "connection", "conversation_id", "lang", "limits", "services", "token")

    def __init__(self, services: Services, connection: Connection, address: str) -> None:
        self.services = services
        self.connection = connection
        # Only to limit guessing of return codes, in memory; never stored or logged.
        self.address = address
        self.token: str | None = None
        self.lang = services.settings.default_lang
        self.conversation_id: uuid.UUID | None = None
        settings = services.settings
        self.limits = Limits(
            sends=TokenBucket.full(
                rate=settings.child_messages_per_second,
                burst=settings.child_message_burst,
                now=time.monotonic(),
            )
        )

    async def handle(self, message: protocol.ChildMessage) -> None:
        conversations = self.services.conversations
        if isinstance(message, protocol.Ping):
            self.connection.push({"type": "pong"})
            return
        if isinstance(message, protocol.Hello):
            await self._hello(message)
            return
        if self.token is None:
            raise Refused("bad_request", "say hello first")
        if isinstance(message, protocol.Start):
            if self.conversation_id is not None:
                raise Refused("conflict", "this conversation has already started")
            if self.services.supervision.address_blocks.blocked(self.address):
                raise Refused(
                    "forbidden", "new chats from here are paused for a while", reason="blocked"
                )
            if not self.services.limits.new_chats.allow(self.address):
                raise Refused("rate_limited", "too many new chats from here; wait a few minutes")
            conversation = await conversations.start(
                self.token, lang=self.lang, pre_chat=message.pre_chat, mode=message.mode
            )
            await self._follow(conversation.id)
            await self._push_state(conversation)
            return
        conversation_id = self._conversation()
        if isinstance(message, protocol.Send):
            if not self.limits.sends.allow(time.monotonic()):
                raise Refused("rate_limited", "too many messages; wait a moment")
            started = time.perf_counter()
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
            self.services.metrics.acked(
                "child", time.perf_counter() - started, duplicate=posted.duplicate
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
        conversation: Conversation | None
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
        await self._push_state(conversation)

    async def _push_state(self, conversation: Conversation) -> None:
        """The child's status, read again now that this socket follows the chat: a
        counsellor may have taken it (or it ended) between the first read and the join,
        and that event went to nobody here. One that comes after the join is sent as
        well, and the connection drops a view it has overtaken."""
        conversation = await self.services.conversations.get(conversation.id) or conversation
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
        close=websocket.close,
        fetch_after=services.conversations.fetch_after,
        queue_size=settings.outbound_queue_size,
        address=address_of(websocket),
    )
    connection.start()
    session = ChildSession(services, connection, address_of(websocket))
    with services.metrics.connection("child"):
        code: int | None = None
        try:
            code = await serve(
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
                # A node shutting down (1012) has not seen the child leave: the child is
                # reconnecting to another node, which says so. Saying "offline" here could
                # land after that. Had the child gone too, its seen time ages out as
                # after a crash.
                if code != CLOSE_RESTARTING:
                    await session.leave()
            except UNAVAILABLE:
                log.info("could not record the child leaving; the sweep will", exc_info=True)
            await connection.stop()
