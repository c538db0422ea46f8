"""One client connection: a bounded outbound queue drained by its own writer task.

Fan-out only ever calls `push`, which never waits: one slow phone cannot stall anyone
else. A connection whose queue overflows is closed and the client resumes by `last_seq`.
The writer also keeps, per conversation, the last `seq` it sent, so every `msg` reaches
the client once and in order: duplicates are dropped and gaps are filled from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from chat_server.brokers import Event

log = logging.getLogger(__name__)

Kind = Literal["child", "staff"]
SendText = Callable[[str], Awaitable[None]]
CloseSocket = Callable[[int, str], Awaitable[None]]
FetchAfter = Callable[[uuid.UUID, int], Awaitable[Sequence[Event]]]

# Close codes: 1013 "try again later" tells the client to reconnect and resume.
CLOSE_OVERFLOW = 1013

_STOP = object()


class Connection:
    def __init__(
        self,
        *,
        kind: Kind,
        send_text: SendText,
        close: CloseSocket,
        fetch_after: FetchAfter,
        queue_size: int,
        user_id: uuid.UUID | None = None,
        address: str | None = None,
    ) -> None:
        self.id = uuid.uuid4()
        self.kind: Kind = kind
        self.user_id = user_id
        # A child's network address, in memory only, to honour a block on this node.
        self.address = address
        self._send_text = send_text
        self._close = close
        self._fetch_after = fetch_after
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)
        # Highest seq sent per conversation; absent means "not tracking yet" (the client
        # has not said what it holds), and messages then pass through as they come.
        self._cursors: dict[uuid.UUID, int] = {}
        self._writer: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        # The child's status as last sent, to drop queue views that an event overtook.
        self.status: str | None = None
        # Chats this console follows as a silent monitor, not as their counsellor.
        self.watching: set[uuid.UUID] = set()

    def start(self, first: Event | None = None) -> None:
        """Start writing; `first`, if given, goes out before anything queued so far."""
        self._writer = asyncio.create_task(self._write_loop(first), name=f"writer-{self.kind}")

    def push(self, frame: Event) -> None:
        """Queue a frame for this client; never waits. Overflow closes the connection."""
        if self.closed.is_set():
            return
        if self.kind == "child" and frame["type"] in ("state", "ended") and self._stale(frame):
            return
        shaped = self._shape(frame)
        if shaped is None:
            return
        try:
            self._queue.put_nowait(shaped)
        except asyncio.QueueFull:
            log.warning("outbound queue full, closing %s connection", self.kind)
            self._abort(CLOSE_OVERFLOW, "too slow; reconnect and resume")

    def _stale(self, frame: Event) -> bool:
        """Whether a computed view of the child's status is older than an event already
        sent. Events from the services (taken, ended, requeued) are the truth and are
        pushed in order; views marked `_view` (queue positions) were read from the
        database earlier and lose to any event that came after that read."""
        status = "ended" if frame["type"] == "ended" else frame["status"]
        if frame.get("_view") and self.status not in (None, status):
            return True
        self.status = status
        return False

    def _watches(self, frame: Event) -> bool:
        conversation = frame.get("conversation_id")
        return conversation is not None and uuid.UUID(conversation) in self.watching

    def replay(self, conversation_id: uuid.UUID, after_seq: int) -> None:
        """Send every message of the conversation after `after_seq`, then follow it live."""
        self.push({"type": "_replay", "conversation_id": str(conversation_id), "after": after_seq})

    def forget(self, conversation_id: uuid.UUID) -> None:
        self._cursors.pop(conversation_id, None)

    async def stop(self) -> None:
        """Flush what is queued (bounded by the caller's timeout) and end the writer."""
        self.closed.set()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_STOP)
        if self._writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), timeout=2)
            except (TimeoutError, asyncio.CancelledError):
                self._writer.cancel()

    def _abort(self, code: int, reason: str) -> None:
        self.closed.set()
        if self._writer is not None:
            self._writer.cancel()
        asyncio.get_running_loop().create_task(self._close_quietly(code, reason))

    async def _close_quietly(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self._close(code, reason)

    def _shape(self, frame: Event) -> Event | None:
        """What this kind of client sees of an event, or None if it is not for it.

        Keys starting with "_" are internal and never reach the wire; `_conv` keeps the
        conversation for the writer's cursor even where the child's frame drops it.
        """
        audience = frame.get("_to")
        if audience is not None and audience != self.kind:
            return None
        kind = frame["type"]
        sender = frame.get("from")
        # Nobody needs their own typing indicator echoed back, nor a child their own read
        # receipt; a counsellor's other consoles use theirs to agree on what is unread.
        own = "child" if self.kind == "child" else "counsellor"
        echoed = kind == "typing" or (kind == "read" and self.kind == "child")
        # A monitor does see the counsellor typing: that is not their own.
        if sender == own and echoed and not (kind == "typing" and self._watches(frame)):
            return None
        shaped = {k: v for k, v in frame.items() if k != "_to"}
        if "conversation_id" in frame:
            shaped["_conv"] = frame["conversation_id"]
        if self.kind == "child":
            shaped.pop("conversation_id", None)
            if kind in ("typing", "read"):
                shaped.pop("from", None)
            elif kind == "msg":
                # Risk matches are for the counsellor's eyes only.
                shaped.pop("risk", None)
                if sender != "child":
                    shaped.pop("client_id", None)
        return shaped

    async def _write_loop(self, first: Event | None) -> None:
        try:
            if first is not None:
                await self._send(first)
            while True:
                frame = await self._queue.get()
                if frame is _STOP:
                    return
                kind = frame["type"]
                if kind == "_replay":
                    await self._replay(uuid.UUID(frame["_conv"]), frame["after"])
                elif kind == "msg":
                    await self._deliver_msg(frame)
                elif kind == "_head":
                    await self._catch_up(uuid.UUID(frame["_conv"]), frame["seq"])
                else:
                    await self._send(frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The socket is gone or the database is unreachable for a gap fill: end
            # this connection; the client reconnects and resumes by last_seq.
            log.info("writer for %s connection ended", self.kind, exc_info=True)
            self._abort(1011, "server error; reconnect and resume")

    async def _deliver_msg(self, frame: Event) -> None:
        conversation_id = uuid.UUID(frame["_conv"])
        seq: int = frame["seq"]
        cursor = self._cursors.get(conversation_id)
        if cursor is None:
            await self._send(frame)
        elif seq <= cursor:
            return
        elif seq == cursor + 1:
            await self._send(frame)
            self._cursors[conversation_id] = seq
        else:
            await self._replay(conversation_id, cursor)

    async def _catch_up(self, conversation_id: uuid.UUID, head: int) -> None:
        """The database is at `head`: if this client is behind (a lost event), fill in."""
        cursor = self._cursors.get(conversation_id)
        if cursor is not None and head > cursor:
            await self._replay(conversation_id, cursor)

    async def _replay(self, conversation_id: uuid.UUID, after_seq: int) -> None:
        self._cursors[conversation_id] = after_seq
        while True:
            frames = await self._fetch_after(conversation_id, self._cursors[conversation_id])
            if not frames:
                return
            for frame in frames:
                shaped = self._shape(frame)
                if shaped is not None:
                    await self._send(shaped)
                self._cursors[conversation_id] = frame["seq"]

    async def _send(self, frame: Event) -> None:
        wire = {k: v for k, v in frame.items() if not k.startswith("_")}
        await self._send_text(json.dumps(wire, ensure_ascii=False, separators=(",", ":")))
