"""Group commit: one writer per node stores every message, many per transaction.

A `send` hands its message to the writer and waits. The writer takes everything that
queued up while its previous transaction was committing (so an idle node commits a lone
message at once and a busy one hundreds at a time) and stores the batch in one
transaction of four statements, whatever its size:

1. lock the batch's conversations (`SELECT … FOR UPDATE`, in id order: no deadlocks
   between nodes), reading their status, counsellor and `last_seq`;
2. look up the batch's `client_id`s already stored (a resend answers with its first seq);
3. bump each conversation's `last_seq` by the number of its new messages;
4. insert the new messages.

Only after COMMIT does a sender get its answer and do the messages fan out; a batch that
fails answers every sender with the error (the edge says `unavailable`, nothing was
stored) and the client resends under the same `client_id`. A broken connection (the
database restarted) is replaced and the batch retried once: the duplicate check makes a
retry safe even if the lost COMMIT had in fact landed.

Core statements on one long-lived connection: no ORM unit of work, no pool checkout and
no pre-ping per message. See docs/performance.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chat_server.errors import Refused
from db.models import Conversation, Message, UTCDateTime, utcnow

log = logging.getLogger(__name__)

# Enough to amortise a transaction, small enough that one batch never holds the
# conversations' locks for long.
MAX_BATCH = 256


@dataclass(frozen=True, slots=True)
class Posted:
    seq: int
    at: datetime
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Stored:
    """A message as committed, for fan-out."""

    conversation_id: uuid.UUID
    seq: int
    sender: str
    body: str
    client_id: str
    at: datetime
    # The conversation was still waiting in the queue when the message came.
    queued: bool
    author_user_id: uuid.UUID | None = None


@dataclass(slots=True)
class _Pending:
    conversation_id: uuid.UUID
    sender: str  # child | counsellor
    staff_id: uuid.UUID | None
    client_id: str
    body: str
    future: asyncio.Future[Posted] = field(repr=False)


class Unavailable(ConnectionError):
    """The writer is closed (the node is shutting down): nothing was stored."""


OnStored = Callable[[Sequence[Stored]], Awaitable[None]]

_c = Conversation.__table__.c  # type: ignore[attr-defined]
_m = Message.__table__.c  # type: ignore[attr-defined]

_BUMP = (
    sa.update(Conversation.__table__)  # type: ignore[arg-type]
    .where(_c.id == sa.bindparam("b_id"))
    .values(
        last_seq=sa.bindparam("b_seq"),
        last_message_at=sa.bindparam("b_at", type_=UTCDateTime),
        last_child_message_at=sa.func.coalesce(
            sa.bindparam("b_child_at", type_=UTCDateTime), _c.last_child_message_at
        ),
        last_staff_message_at=sa.func.coalesce(
            sa.bindparam("b_staff_at", type_=UTCDateTime), _c.last_staff_message_at
        ),
    )
)
_INSERT = sa.insert(Message.__table__)  # type: ignore[arg-type]


class MessageLog:
    def __init__(self, engine: AsyncEngine, on_stored: OnStored, *, max_batch: int = MAX_BATCH):
        self._engine = engine
        self._on_stored = on_stored
        self._max_batch = max_batch
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._connection: AsyncConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Observed by metrics: how many messages each transaction carried.
        self.batch_sizes: Callable[[int], None] = lambda _size: None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="message-log")

    async def post(
        self,
        conversation_id: uuid.UUID,
        *,
        sender: str,
        client_id: str,
        body: str,
        staff_id: uuid.UUID | None = None,
    ) -> Posted:
        """Store a message under its conversation's next seq, once per client_id; returns
        after the commit. Raises Refused (ended, not yours) or a database error."""
        if self._closing or self._task is None:
            raise Unavailable("the node is shutting down")
        future: asyncio.Future[Posted] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(conversation_id, sender, staff_id, client_id, body, future))
        self._wake.set()
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Store what was handed in, refuse what comes after, release the connection."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    await self._flush(batch)
                except Exception as error:  # the writer must outlive a bug
                    log.exception("the message writer failed on a batch")
                    _fail(batch, error)
            if self._closing:
                return

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            outcomes, stored = await self._store_retrying(batch)
        except IntegrityError:
            # A unique constraint caught what the locks should have kept out (a message
            # written outside this writer): store one by one, each failing on its own.
            if len(batch) == 1:
                _fail(batch, DuplicateRace())
                return
            for one in batch:
                await self._flush([one])
            return
        except Exception as error:  # every sender must hear of it
            log.warning("storing %d messages failed", len(batch), exc_info=True)
            _fail(batch, error)
            return
        self.batch_sizes(len(stored))
        # Fan out before answering: a sender's next frame can never overtake its message.
        if stored:
            try:
                await self._on_stored(stored)
            except Exception:  # committed is committed; receivers catch up
                log.warning("publishing %d stored messages failed", len(stored), exc_info=True)
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.future.done():
                continue
            if isinstance(outcome, Refused):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)

    async def _store_retrying(
        self, batch: list[_Pending]
    ) -> tuple[list[Posted | Refused], list[Stored]]:
        for attempt in (1, 2):
            connection = await self._connect()
            try:
                return await self._store(connection, batch)
            except IntegrityError:
                raise
            except (DBAPIError, OSError):
                # The connection may be dead (a database restart): never reuse it.
                await self._discard()
                if attempt == 2:
                    raise
                log.info("retrying %d messages on a new database connection", len(batch))
        raise AssertionError("unreachable")

    async def _connect(self) -> AsyncConnection:
        if self._connection is None:
            self._connection = await self._engine.connect()
        return self._connection

    async def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()

    async def _store(
        self, connection: AsyncConnection, batch: list[_Pending]
    ) -> tuple[list[Posted | Refused], list[Stored]]:
        now = utcnow()
        ids = sorted({p.conversation_id for p in batch})
        async with connection.begin():
            locked = await connection.execute(
                sa.select(_c.id, _c.status, _c.assigned_user_id, _c.last_seq)
                .where(_c.id.in_(ids))
                .order_by(_c.id)
                .with_for_update()
            )
            conversations = {
                row.id: _Head(row.status, row.assigned_user_id, row.last_seq) for row in locked
            }
            earlier = await connection.execute(
                sa.select(_m.conversation_id, _m.sender, _m.client_id, _m.seq, _m.created_at).where(
                    _m.conversation_id.in_(ids),
                    _m.client_id.in_(sorted({p.client_id for p in batch})),
                )
            )
            seen: dict[tuple[uuid.UUID, str, str], Posted] = {
                (row.conversation_id, row.sender, row.client_id): Posted(
                    row.seq, row.created_at, duplicate=True
                )
                for row in earlier
            }
            outcomes: list[Posted | Refused] = []
            stored: list[Stored] = []
            for pending in batch:
                key = (pending.conversation_id, pending.sender, pending.client_id)
                if key in seen:
                    outcomes.append(seen[key])
                    continue
                head = conversations.get(pending.conversation_id)
                refusal = _refusal(pending, head)
                if refusal is not None or head is None:
                    outcomes.append(refusal or Refused("not_found", "no such conversation"))
                    continue
                head.last_seq += 1
                head.touched_by.add(pending.sender)
                stored.append(
                    Stored(
                        conversation_id=pending.conversation_id,
                        seq=head.last_seq,
                        sender=pending.sender,
                        body=pending.body,
                        client_id=pending.client_id,
                        at=now,
                        queued=head.status == "queued",
                        author_user_id=pending.staff_id,
                    )
                )
                outcomes.append(Posted(head.last_seq, now, duplicate=False))
                seen[key] = Posted(head.last_seq, now, duplicate=True)
            if stored:
                await connection.execute(
                    _BUMP,
                    [
                        {
                            "b_id": conversation_id,
                            "b_seq": head.last_seq,
                            "b_at": now,
                            "b_child_at": now if "child" in head.touched_by else None,
                            "b_staff_at": now if "counsellor" in head.touched_by else None,
                        }
                        for conversation_id, head in conversations.items()
                        if head.touched_by
                    ],
                )
                await connection.execute(
                    _INSERT,
                    [
                        {
                            "id": uuid.uuid4(),
                            "conversation_id": s.conversation_id,
                            "seq": s.seq,
                            "sender": s.sender,
                            "author_user_id": s.author_user_id,
                            "body": s.body,
                            "client_id": s.client_id,
                            "created_at": now,
                        }
                        for s in stored
                    ],
                )
        return outcomes, stored


@dataclass(slots=True)
class _Head:
    status: str
    assigned_user_id: uuid.UUID | None
    last_seq: int
    touched_by: set[str] = field(default_factory=set)


class DuplicateRace(ConnectionError):
    """A resend raced past the duplicate check: the client resends and gets its seq."""


def _refusal(pending: _Pending, head: _Head | None) -> Refused | None:
    if head is None:
        return Refused("not_found", f"no conversation {str(pending.conversation_id)!r}")
    if head.status == "ended":
        return Refused("closed", "this conversation has ended")
    if pending.staff_id is None:
        return None
    if head.assigned_user_id != pending.staff_id:
        return Refused("forbidden", "this chat is not assigned to you")
    if head.status != "active":
        return Refused("conflict", f"this conversation is {head.status}")
    return None


def _fail(batch: list[_Pending], error: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(error)
