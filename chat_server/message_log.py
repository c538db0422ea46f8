"""Group commit: one writer per node stores every message, many per transaction.

A `send` hands its message to the writer and waits. The writer takes everything that
queued up meanwhile (so an idle node commits a lone message at once and a busy one
hundreds at a time) and stores the batch in one transaction, whatever its size:

1. lock the batch's conversations (`SELECT … FOR UPDATE`, in id order: no deadlocks
   between nodes or between batches), reading their status, counsellor and `last_seq`;
2. bump each conversation's `last_seq` by the number of its new messages;
3. insert the new messages.

On PostgreSQL the three are one statement (`_PG_STORE`), so a batch costs one round trip
and its commit; on SQLite they are three statements on the one writer. A resend (a
`client_id` already stored) is rare: the unique constraint refuses the insert, and the
batch is stored again in a transaction that looks the batch's `client_id`s up first, so
a resend is answered with its first seq. On PostgreSQL up to four batches are in flight
at once (a message need not wait for the batch before it to commit; batches that share a
conversation queue on its row lock).

Only after COMMIT does a sender get its answer and do the messages fan out; a batch that
fails answers every sender with the error (the edge says `unavailable`, nothing was
stored) and the client resends under the same `client_id`. A broken connection (the
database restarted) is replaced and the batch retried once: the duplicate check makes a
retry safe even if the lost COMMIT had in fact landed.

Statements on long-lived connections: no ORM unit of work, no pool checkout and no
pre-ping per message. See docs/performance.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import SQLModel

from chat_server.errors import Refused
from db.models import Conversation, Message, UTCDateTime, utcnow

log = logging.getLogger(__name__)

# Enough to amortise a transaction, small enough that one batch never holds the
# conversations' locks for long.
MAX_BATCH = 256
# Transactions in flight at once on PostgreSQL.
WRITERS = 4


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


def _table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a model, typed: SQLModel's classes do not declare `__table__`."""
    table = sa.inspect(model).local_table
    if not isinstance(table, sa.Table):
        raise TypeError(f"{model.__name__} is not mapped to one table: {table!r}")
    return table


_conversations = _table_of(Conversation)
_messages = _table_of(Message)
_c = _conversations.c
_m = _messages.c

_BUMP = (
    sa.update(_conversations)
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
_INSERT = sa.insert(_messages)


class MessageLog:
    def __init__(
        self,
        engine: AsyncEngine,
        on_stored: OnStored,
        *,
        max_batch: int = MAX_BATCH,
        writers: int | None = None,
    ) -> None:
        self._engine = engine
        self._on_stored = on_stored
        self._max_batch = max_batch
        # Transactions in flight at once. SQLite has one writer whatever we do; on
        # PostgreSQL a message need not wait for the batch before it to commit.
        self._writers = writers or (1 if engine.dialect.name == "sqlite" else WRITERS)
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._idle: list[AsyncConnection] = []
        self._flushing: set[asyncio.Task[None]] = set()
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
        """Store what was handed in, refuse what comes after, release the connections."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        while self._idle:
            with contextlib.suppress(Exception):
                await self._idle.pop().close()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and len(self._flushing) < self._writers:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                task = asyncio.create_task(self._flush_guarded(batch), name="message-batch")
                self._flushing.add(task)
                task.add_done_callback(self._flushed)
            if self._closing and not self._pending and not self._flushing:
                return

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        self._wake.set()  # a writer is free: take what queued meanwhile

    async def _flush_guarded(self, batch: list[_Pending]) -> None:
        try:
            await self._flush(batch)
        except Exception as error:  # the writer must outlive a bug
            log.exception("the message writer failed on a batch")
            _fail(batch, error)

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            outcomes, stored = await self._store_retrying(batch)
        except IntegrityError:
            # Two messages of one batch raced the same client_id in on two nodes: store
            # one by one, each answered on its own.
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
        """Optimistic first (a resend is rare: the unique constraint catches it), then
        with the duplicate check; once more on a new connection if this one broke."""
        check = False
        for attempt in (1, 2, 3):
            connection = self._idle.pop() if self._idle else await self._engine.connect()
            try:
                result = await self._store(connection, batch, check_resends=check)
            except IntegrityError:
                self._idle.append(connection)
                if check:
                    raise
                check = True
                continue
            except (DBAPIError, OSError):
                # The connection may be dead (a database restart): never reuse it.
                await _discard(connection)
                if attempt == 3:
                    raise
                log.info("retrying %d messages on a new database connection", len(batch))
                check = True  # the lost COMMIT may have landed
                continue
            self._idle.append(connection)
            return result
        raise AssertionError("unreachable: the third attempt returns or raises")

    async def _store(
        self, connection: AsyncConnection, batch: list[_Pending], *, check_resends: bool
    ) -> tuple[list[Posted | Refused], list[Stored]]:
        if connection.dialect.name == "postgresql":
            raw = await connection.get_raw_connection()
            return await _store_asyncpg(raw.driver_connection, batch, check_resends=check_resends)
        now = utcnow()
        ids = sorted({p.conversation_id for p in batch})
        async with connection.begin():
            locked = await connection.execute(
                sa.select(_c.id, _c.status, _c.assigned_user_id, _c.last_seq)
                .where(_c.id.in_(ids))
                .order_by(_c.id)
                .with_for_update()
            )
            heads = {
                row.id: _Head(row.status, row.assigned_user_id, row.last_seq) for row in locked
            }
            seen: dict[tuple[uuid.UUID, str, str], Posted] = {}
            if check_resends:
                earlier = await connection.execute(
                    sa.select(
                        _m.conversation_id, _m.sender, _m.client_id, _m.seq, _m.created_at
                    ).where(
                        _m.conversation_id.in_(ids),
                        _m.client_id.in_(sorted({p.client_id for p in batch})),
                    )
                )
                for row in earlier:
                    seen[(row.conversation_id, row.sender, row.client_id)] = Posted(
                        row.seq, row.created_at, duplicate=True
                    )
            outcomes, stored = _decide(batch, heads, seen, now)
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
                        for conversation_id, head in heads.items()
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


def _decide(
    batch: list[_Pending],
    heads: dict[uuid.UUID, _Head],
    seen: dict[tuple[uuid.UUID, str, str], Posted],
    now: datetime,
) -> tuple[list[Posted | Refused], list[Stored]]:
    """Each message's answer, and the new ones under their seqs (bumping `heads`)."""
    outcomes: list[Posted | Refused] = []
    stored: list[Stored] = []
    for pending in batch:
        key = (pending.conversation_id, pending.sender, pending.client_id)
        if key in seen:
            outcomes.append(seen[key])
            continue
        head = heads.get(pending.conversation_id)
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
    return outcomes, stored


# PostgreSQL. The usual batch (no resend in it) is ONE statement in autocommit: lock the
# conversations in id order, number the accepted messages, bump `last_seq`, insert, and
# answer each message with its seq (NULL: refused). One round trip and the commit, where
# BEGIN, three statements and COMMIT took five, each a wake-up of the node and of a
# PostgreSQL backend. Under READ COMMITTED the locking CTE returns each row's newest
# version (a batch that committed meanwhile), and the UPDATE then writes that row
# (EvalPlanQual), so seqs stay gap-free across concurrent batches and nodes. `_refusal`
# below is the same rule in Python: it names a refused message's error, and a batch on
# which the two disagree fails loudly rather than answering wrongly.
_PG_STORE = """
    WITH batch AS MATERIALIZED (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[])
            WITH ORDINALITY AS b(conversation_id, sender, staff_id, client_id, body, n)
    ), heads AS MATERIALIZED (
        SELECT id, status, assigned_user_id, last_seq FROM conversations
        WHERE id = ANY($6::uuid[]) ORDER BY id FOR UPDATE
    ), accepted AS MATERIALIZED (
        SELECT b.*, h.last_seq + row_number()
                OVER (PARTITION BY b.conversation_id ORDER BY b.n) AS seq
        FROM batch b JOIN heads h ON h.id = b.conversation_id
        WHERE h.status <> 'ended'
          AND (b.staff_id IS NULL OR (h.assigned_user_id = b.staff_id AND h.status = 'active'))
    ), bumped AS (
        UPDATE conversations AS c SET
            last_seq = a.seq,
            last_message_at = $7,
            last_child_message_at = CASE WHEN a.child THEN $7 ELSE c.last_child_message_at END,
            last_staff_message_at = CASE WHEN a.staff THEN $7 ELSE c.last_staff_message_at END
        FROM (
            SELECT conversation_id, max(seq) AS seq, bool_or(sender = 'child') AS child,
                   bool_or(sender = 'counsellor') AS staff
            FROM accepted GROUP BY conversation_id
        ) AS a
        WHERE c.id = a.conversation_id
    ), inserted AS (
        INSERT INTO messages
            (id, conversation_id, seq, sender, author_user_id, body, client_id, created_at)
        SELECT gen_random_uuid(), conversation_id, seq, sender, staff_id, body, client_id, $7
        FROM accepted
    )
    SELECT h.status, h.assigned_user_id, a.seq
    FROM batch b LEFT JOIN heads h ON h.id = b.conversation_id LEFT JOIN accepted a USING (n)
    ORDER BY b.n"""

# After a resend was refused by the constraint: the same in a transaction of three or
# four statements, the batch's client_ids looked up first (`_decide`).
_PG_LOCK = """
    SELECT id, status, assigned_user_id, last_seq FROM conversations
    WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"""
_PG_EARLIER = """
    SELECT conversation_id, sender, client_id, seq, created_at FROM messages
    WHERE conversation_id = ANY($1::uuid[]) AND client_id = ANY($2::text[])"""
_PG_BUMP = """
    UPDATE conversations AS c SET
        last_seq = v.seq,
        last_message_at = $5,
        last_child_message_at = CASE WHEN v.child THEN $5 ELSE c.last_child_message_at END,
        last_staff_message_at = CASE WHEN v.staff THEN $5 ELSE c.last_staff_message_at END
    FROM unnest($1::uuid[], $2::int[], $3::bool[], $4::bool[]) AS v(id, seq, child, staff)
    WHERE c.id = v.id"""
_PG_INSERT = """
    INSERT INTO messages
        (id, conversation_id, seq, sender, author_user_id, body, client_id, created_at)
    SELECT u.*, $8 FROM unnest(
        $1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::uuid[], $6::text[], $7::text[]
    ) AS u"""


async def _store_asyncpg(
    driver: Any, batch: list[_Pending], *, check_resends: bool
) -> tuple[list[Posted | Refused], list[Stored]]:
    import asyncpg  # type: ignore[import-untyped]  # only ever on PostgreSQL

    try:
        if check_resends:
            return await _store_asyncpg_checked(driver, batch)
        return await _store_asyncpg_one_statement(driver, batch)
    except asyncpg.UniqueViolationError as error:
        raise IntegrityError("a resend raced in", None, error) from error
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        # Anything else ends this connection's use; the caller retries on a new one.
        raise DBAPIError("storing messages failed", None, error) from error


async def _store_asyncpg_one_statement(
    driver: Any, batch: list[_Pending]
) -> tuple[list[Posted | Refused], list[Stored]]:
    if driver.is_in_transaction():
        # Then the statement would not commit, and its senders must not hear it stored:
        # fail the attempt, and the retry takes a new connection.
        error = RuntimeError("the writer's connection is inside a transaction")
        raise DBAPIError("storing messages failed", None, error)
    now = utcnow()
    rows = await driver.fetch(
        _PG_STORE,
        [p.conversation_id for p in batch],
        [p.sender for p in batch],
        [p.staff_id for p in batch],
        [p.client_id for p in batch],
        [p.body for p in batch],
        list({p.conversation_id for p in batch}),
        now,
    )
    outcomes: list[Posted | Refused] = []
    stored: list[Stored] = []
    for pending, row in zip(batch, rows, strict=True):
        status = row["status"]
        head = None if status is None else _Head(status, _uuid(row["assigned_user_id"]), last_seq=0)
        refusal = _refusal(pending, head)
        seq = row["seq"]
        if (seq is None) == (refusal is None):
            raise AssertionError(f"the store and _refusal disagree on a message: {refusal!r}")
        if refusal is not None:
            outcomes.append(refusal)
            continue
        stored.append(
            Stored(
                conversation_id=pending.conversation_id,
                seq=seq,
                sender=pending.sender,
                body=pending.body,
                client_id=pending.client_id,
                at=now,
                queued=status == "queued",
                author_user_id=pending.staff_id,
            )
        )
        outcomes.append(Posted(seq, now, duplicate=False))
    return outcomes, stored


async def _store_asyncpg_checked(
    driver: Any, batch: list[_Pending]
) -> tuple[list[Posted | Refused], list[Stored]]:
    now = utcnow()
    ids = sorted({p.conversation_id for p in batch})
    async with driver.transaction():
        heads = {
            _uuid(r["id"]): _Head(r["status"], _uuid(r["assigned_user_id"]), r["last_seq"])
            for r in await driver.fetch(_PG_LOCK, ids)
        }
        seen: dict[tuple[uuid.UUID, str, str], Posted] = {}
        client_ids = sorted({p.client_id for p in batch})
        for r in await driver.fetch(_PG_EARLIER, ids, client_ids):
            key = (_uuid(r["conversation_id"]), r["sender"], r["client_id"])
            seen[key] = Posted(r["seq"], r["created_at"], duplicate=True)
        outcomes, stored = _decide(batch, heads, seen, now)
        if stored:
            touched = [(cid, h) for cid, h in heads.items() if h.touched_by]
            await driver.execute(
                _PG_BUMP,
                [cid for cid, _ in touched],
                [h.last_seq for _, h in touched],
                ["child" in h.touched_by for _, h in touched],
                ["counsellor" in h.touched_by for _, h in touched],
                now,
            )
            await driver.execute(
                _PG_INSERT,
                [uuid.uuid4() for _ in stored],
                [s.conversation_id for s in stored],
                [s.seq for s in stored],
                [s.sender for s in stored],
                [s.author_user_id for s in stored],
                [s.body for s in stored],
                [s.client_id for s in stored],
                now,
            )
    return outcomes, stored


def _uuid(value: Any) -> Any:
    """asyncpg's own UUID as the standard one (they compare unequal)."""
    return None if value is None else uuid.UUID(bytes=value.bytes)


async def _discard(connection: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await connection.invalidate()
    with contextlib.suppress(Exception):
        await connection.close()


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
