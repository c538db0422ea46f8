"""One client connection: a bounded outbound queue drained by its own writer task.

Fan-out only ever calls `push`, which never waits: one slow phone cannot stall anyone
else. A connection whose queue overflows is closed and the client resumes by `last_seq`.
The writer also keeps, per conversation, the last `seq` it sent, so every `msg` reaches
the client once and in order: duplicates are dropped and gaps are filled from the database.

Most sockets are idle most of the time (10,000 children waiting for nothing in
particular), so an idle connection holds no queue and no task: the writer task starts
when a frame is queued and ends when the queue is empty (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from chat_server.brokers import Event

log = logging.getLogger(__name__)

Kind = Literal["child", "staff"]
SendText = Callable[[str], Awaitable[None]]
CloseSocket = Callable[[int, str], Awaitable[None]]
FetchAfter = Callable[[uuid.UUID, int], Awaitable[Sequence[Event]]]

# Close codes: 1013 "try again later" tells the client to reconnect and resume.
CLOSE_OVERFLOW = 1013
# How long closing may wait on a client that reads nothing (its buffers are full).
CLOSE_TIMEOUT_S = 2.0
# The message its reading task is cancelled with once the connection gave the client up.
ABORTED = "connection given up"
# The most messages one `fetch_after` returns; fewer means it reached the newest.
REPLAY_BATCH = 500


class Connection:
    # Slots: one of these per open socket, and an idle one should cost as little as can be.
    __slots__ = (
        "__weakref__",
        "_close",
        "_closed",
        "_cursors",
        "_fetch_after",
        "_held",
        "_pending",
        "_queue_size",
        "_send_text",
        "_started",
        "_writer",
        "address",
        "kind",
        "reader",
        "status",
        "user_id",
        "watching",
    )

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
        self.kind: Kind = kind
        self.user_id = user_id
        # A child's network address, in memory only, to honour a block on this node.
        self.address = address
        self._send_text = send_text
        self._close = close
        self._fetch_after = fetch_after
        self._queue_size = queue_size
        # Frames waiting for the writer; None while there are none (an empty deque alone
        # is most of a kilobyte, times every idle socket).
        self._pending: deque[Event] | None = None
        # Highest seq sent per conversation; absent means "not tracking yet" (the client
        # has not said what it holds), and messages then pass through as they come.
        self._cursors: dict[uuid.UUID, int] = {}
        # The writer runs only while frames are pending, and only once started.
        self._writer: asyncio.Task[None] | None = None
        self._started = False
        # Closed or closing: nothing more is queued.
        self._closed = False
        # The child's status as last sent, to drop queue views that an event overtook.
        self.status: str | None = None
        # Chats whose live messages wait for the client to say what it holds (`hold`):
        # the first seq held back, or 0 while none has come. None while there are none.
        self._held: dict[uuid.UUID, int] | None = None
        # The task reading the client's frames, stopped if the connection gives up.
        self.reader: asyncio.Task[object] | None = None
        # Chats this console follows as a silent monitor, not as their counsellor.
        self.watching: set[uuid.UUID] = set()

    def start(self, first: Event | None = None) -> None:
        """Start writing; `first`, if given, goes out before anything queued so far."""
        self._started = True
        if first is not None:
            if self._pending is None:
                self._pending = deque()
            # Not counted against the bound: it is the one frame the client waits for.
            self._pending.appendleft(first)
        self._wake()

    def push(self, frame: Event) -> None:
        """Queue a frame for this client; never waits. Overflow closes the connection."""
        if self._closed:
            return
        if self.kind == "child" and frame["type"] in ("state", "ended") and self._stale(frame):
            return
        shaped = self._shape(frame)
        if shaped is None:
            return
        pending = self._pending
        if pending is None:
            pending = self._pending = deque()
        elif len(pending) >= self._queue_size:
            log.warning("outbound queue full, closing %s connection", self.kind)
            self._abort(CLOSE_OVERFLOW, "too slow; reconnect and resume")
            return
        pending.append(shaped)
        self._wake()

    def _wake(self) -> None:
        """Start the writer if it is due and not running."""
        if self._started and self._writer is None and self._pending:
            self._writer = asyncio.get_running_loop().create_task(
                self._write_pending(), name=f"writer-{self.kind}"
            )

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
        if self._held:
            self._held.pop(conversation_id, None)

    def hold(self, conversation_id: uuid.UUID) -> None:
        """Hold the chat's live messages back until the client says what it holds
        (`replay`), so that it gets each one once and in order; `release` gives up
        waiting and streams from the first message held."""
        if self._held is None:
            self._held = {}
        self._held[conversation_id] = 0

    def release(self) -> None:
        if self._held:
            self.push({"type": "_release"})

    async def stop(self) -> None:
        """Flush what is queued (for at most two seconds) and end the writer."""
        self._closed = True
        writer = self._writer
        if writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(writer), timeout=2)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()

    def _abort(self, code: int, reason: str) -> None:
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
        asyncio.get_running_loop().create_task(self._close_quietly(code, reason))

    async def _close_quietly(self, code: int, reason: str) -> None:
        """Close, then stop reading: a client that reads nothing never lets the close
        frame out nor answers it, and its socket's cleanup must not wait for it."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._close(code, reason), CLOSE_TIMEOUT_S)
        reader = self.reader
        if reader is not None and not reader.done():
            reader.cancel(ABORTED)

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

    async def _write_pending(self) -> None:
        """Send what is pending, in order, then end: the next `push` starts a new writer.
        Between the last check of the queue and the end there is no `await`, so a frame
        pushed meanwhile cannot be left behind with no writer."""
        pending = self._pending
        assert pending is not None
        try:
            while pending:
                frame = pending.popleft()
                kind = frame["type"]
                if kind == "_replay":
                    await self._replay(uuid.UUID(frame["_conv"]), frame["after"])
                elif kind == "msg":
                    await self._deliver_msg(frame)
                elif kind == "_head":
                    await self._catch_up(uuid.UUID(frame["_conv"]), frame["seq"])
                elif kind == "_release":
                    await self._release_held()
                else:
                    await self._send(frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The socket is gone or the database is unreachable for a gap fill: end
            # this connection; the client reconnects and resumes by last_seq.
            log.info("writer for %s connection ended", self.kind, exc_info=True)
            self._abort(1011, "server error; reconnect and resume")
        else:
            self._pending = None
        finally:
            self._writer = None

    async def _deliver_msg(self, frame: Event) -> None:
        conversation_id = uuid.UUID(frame["_conv"])
        seq: int = frame["seq"]
        if self._held and conversation_id in self._held:
            # The database has it; the client gets it by the replay its resume asks for.
            self._held[conversation_id] = self._held[conversation_id] or seq
            return
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
        """The database is at `head`: if this client is behind (a lost event), fill in;
        unless what it lacks is already queued (a busy chat is always a little behind)."""
        cursor = self._cursors.get(conversation_id)
        if cursor is None or head <= cursor:
            return
        conversation = str(conversation_id)
        queued = {
            f["seq"]
            for f in self._pending or ()
            if f["type"] == "msg" and f["_conv"] == conversation
        }
        if not queued.issuperset(range(cursor + 1, head + 1)):
            await self._replay(conversation_id, cursor)

    async def _release_held(self) -> None:
        """No word from the client: stream each held chat from its first held message,
        in order, and fill gaps from then on."""
        held, self._held = self._held or {}, None
        for conversation_id, first in held.items():
            if first:
                await self._replay(conversation_id, first - 1)

    async def _replay(self, conversation_id: uuid.UUID, after_seq: int) -> None:
        if self._held:
            self._held.pop(conversation_id, None)
        self._cursors[conversation_id] = after_seq
        while True:
            frames = await self._fetch_after(conversation_id, self._cursors[conversation_id])
            for frame in frames:
                shaped = self._shape(frame)
                if shaped is not None:
                    await self._send(shaped)
                self._cursors[conversation_id] = frame["seq"]
            if len(frames) < REPLAY_BATCH:
                # The newest, as of the query: whatever came since is queued or on its
                # way, and goes out in order from the cursor.
                return

    async def _send(self, frame: Event) -> None:
        wire = {k: v for k, v in frame.items() if not k.startswith("_")}
        await self._send_text(json.dumps(wire, ensure_ascii=False, separators=(",", ":")))
