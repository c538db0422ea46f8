"""Group commit (chat_server/message_log.py) on both databases: many messages per
transaction, each sender answered on its own, nothing answered before it is stored."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select
from sqlmodel import col

from chat_server.errors import Refused
from chat_server.message_log import MessageLog, Posted, Stored, Unavailable
from db.engine import create_engine, session_factory
from db.models import Conversation, Message, StaffUser, utcnow


@dataclass
class World:
    log: MessageLog
    fanned: list[Stored] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    active: uuid.UUID = field(default_factory=uuid.uuid4)
    queued: uuid.UUID = field(default_factory=uuid.uuid4)
    ended: uuid.UUID = field(default_factory=uuid.uuid4)
    counsellor: uuid.UUID = field(default_factory=uuid.uuid4)
    colleague: uuid.UUID = field(default_factory=uuid.uuid4)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    engine = create_engine(database_url)
    fanned: list[Stored] = []

    async def fan_out(stored: Sequence[Stored]) -> None:
        fanned.extend(stored)

    log = MessageLog(engine, fan_out)
    w = World(log, fanned)
    log.batch_sizes = w.batches.append
    async with session_factory(engine)() as session, session.begin():
        for user_id, name in ((w.counsellor, "ana"), (w.colleague, "besnik")):
            session.add(
                StaffUser(
                    id=user_id,
                    username=name,
                    display_name=name,
                    role="counsellor",
                    password_hash="x",
                )
            )
        await session.flush()
        for conversation_id, status in (
            (w.active, "active"),
            (w.queued, "queued"),
            (w.ended, "ended"),
        ):
            session.add(
                Conversation(
                    id=conversation_id,
                    child_token_hash=uuid.uuid4().hex,
                    status=status,
                    assigned_user_id=w.counsellor if status == "active" else None,
                    queued_at=utcnow(),
                )
            )
    log.start()
    yield w
    await log.close()
    await engine.dispose()


async def stored_rows(database_url: str, conversation_id: uuid.UUID) -> list[Message]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            result = await session.execute(
                select(Message)
                .where(col(Message.conversation_id) == conversation_id)
                .order_by(col(Message.seq))
            )
            return list(result.scalars())
    finally:
        await engine.dispose()


async def test_concurrent_posts_share_transactions_and_get_gap_free_seqs(
    world: World, database_url: str
) -> None:
    child = [
        world.log.post(world.active, sender="child", client_id=f"c{k}", body=f"child {k}")
        for k in range(120)
    ]
    adult = [
        world.log.post(
            world.active,
            sender="counsellor",
            staff_id=world.counsellor,
            client_id=f"k{k}",
            body=f"counsellor {k}",
        )
        for k in range(80)
    ]
    waiting = [
        world.log.post(world.queued, sender="child", client_id=f"w{k}", body=f"waiting {k}")
        for k in range(30)
    ]
    answers = await asyncio.gather(*child, *adult, *waiting)

    assert sorted(a.seq for a in answers[:200]) == list(range(1, 201))
    assert sorted(a.seq for a in answers[200:]) == list(range(1, 31))
    assert not any(a.duplicate for a in answers)
    # One sender's messages keep the order they were handed in.
    assert [a.seq for a in answers[:120]] == sorted(a.seq for a in answers[:120])
    assert len(world.batches) < 230, "messages were committed together, not one by one"
    assert sum(world.batches) == 230

    rows = await stored_rows(database_url, world.active)
    assert [r.seq for r in rows] == list(range(1, 201))
    by_client = {r.client_id: r for r in rows}
    assert by_client["k3"].author_user_id == world.counsellor
    assert by_client["c3"].author_user_id is None
    assert by_client["c7"].body == "child 7"
    assert {(s.conversation_id, s.seq) for s in world.fanned} == {
        *((world.active, n) for n in range(1, 201)),
        *((world.queued, n) for n in range(1, 31)),
    }
    assert all(s.queued for s in world.fanned if s.conversation_id == world.queued)

    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            active = await session.get(Conversation, world.active)
            assert active is not None
            assert active.last_seq == 200
            assert active.last_child_message_at is not None
            assert active.last_staff_message_at is not None
    finally:
        await engine.dispose()


async def test_each_sender_in_a_batch_gets_its_own_answer(world: World, database_url: str) -> None:
    first = await world.log.post(world.active, sender="child", client_id="once", body="hello")
    answers = await asyncio.gather(
        world.log.post(world.active, sender="child", client_id="once", body="hello"),
        world.log.post(world.active, sender="child", client_id="twice", body="a"),
        world.log.post(world.active, sender="child", client_id="twice", body="a"),
        world.log.post(world.ended, sender="child", client_id="late", body="b"),
        world.log.post(
            world.active, sender="counsellor", staff_id=world.colleague, client_id="x", body="c"
        ),
        world.log.post(
            world.queued, sender="counsellor", staff_id=world.counsellor, client_id="y", body="d"
        ),
        world.log.post(uuid.uuid4(), sender="child", client_id="nowhere", body="e"),
        world.log.post(
            world.active, sender="counsellor", staff_id=world.counsellor, client_id="once", body="f"
        ),
        return_exceptions=True,
    )
    resent, twice, twice_again, late, not_theirs, not_taken, nowhere, same_id = answers

    assert resent == Posted(first.seq, first.at, duplicate=True)
    assert isinstance(twice, Posted) and not twice.duplicate and twice.seq == 2
    assert isinstance(twice_again, Posted) and twice_again.duplicate and twice_again.seq == 2
    assert isinstance(late, Refused) and late.code == "closed"
    assert isinstance(not_theirs, Refused) and not_theirs.code == "forbidden"
    assert isinstance(not_taken, Refused) and not_taken.code == "forbidden"
    assert isinstance(nowhere, Refused) and nowhere.code == "not_found"
    # The counsellor's own client_id space is not the child's.
    assert isinstance(same_id, Posted) and not same_id.duplicate and same_id.seq == 3

    rows = await stored_rows(database_url, world.active)
    assert [(r.seq, r.sender, r.client_id) for r in rows] == [
        (1, "child", "once"),
        (2, "child", "twice"),
        (3, "counsellor", "once"),
    ]
    assert await stored_rows(database_url, world.ended) == []


async def test_refusals_in_a_batch_without_resends(world: World, database_url: str) -> None:
    """The usual batch (no resend) is one statement on PostgreSQL: its refusals and
    seqs must be those of the rule in Python."""
    answers = await asyncio.gather(
        world.log.post(world.active, sender="child", client_id="a", body="1"),
        world.log.post(world.ended, sender="child", client_id="b", body="2"),
        world.log.post(
            world.active, sender="counsellor", staff_id=world.colleague, client_id="c", body="3"
        ),
        world.log.post(world.queued, sender="child", client_id="d", body="4"),
        world.log.post(
            world.queued, sender="counsellor", staff_id=world.counsellor, client_id="e", body="5"
        ),
        world.log.post(uuid.uuid4(), sender="child", client_id="f", body="6"),
        world.log.post(
            world.active, sender="counsellor", staff_id=world.counsellor, client_id="g", body="7"
        ),
        world.log.post(world.active, sender="child", client_id="h", body="8"),
        return_exceptions=True,
    )
    first, late, not_theirs, waiting, not_taken, nowhere, reply, second = answers
    assert [a.seq for a in (first, reply, second) if isinstance(a, Posted)] == [1, 2, 3]
    assert isinstance(waiting, Posted) and waiting.seq == 1
    assert isinstance(late, Refused) and late.code == "closed"
    assert isinstance(not_theirs, Refused) and not_theirs.code == "forbidden"
    assert isinstance(not_taken, Refused) and not_taken.code == "forbidden"
    assert isinstance(nowhere, Refused) and nowhere.code == "not_found"
    rows = await stored_rows(database_url, world.active)
    assert [(r.seq, r.client_id, r.body) for r in rows] == [
        (1, "a", "1"),
        (2, "g", "7"),
        (3, "h", "8"),
    ]
    assert [r.author_user_id for r in rows] == [None, world.counsellor, None]
    assert await stored_rows(database_url, world.ended) == []
    assert {(s.conversation_id, s.seq, s.queued) for s in world.fanned} == {
        (world.active, 1, False),
        (world.active, 2, False),
        (world.active, 3, False),
        (world.queued, 1, True),
    }


async def test_two_nodes_writing_one_conversation_keep_seqs_gap_free(
    world: World, database_url: str
) -> None:
    """Batches of two nodes lock the same row: the later one numbers after the earlier
    one's commit, whichever wins."""
    engine = create_engine(database_url)
    other = MessageLog(engine, lambda _stored: asyncio.sleep(0))
    other.start()
    try:
        answers = await asyncio.gather(
            *(
                (world.log if k % 2 else other).post(
                    world.active, sender="child", client_id=f"n{k}", body=str(k)
                )
                for k in range(300)
            )
        )
    finally:
        await other.close()
        await engine.dispose()
    assert sorted(a.seq for a in answers) == list(range(1, 301))
    rows = await stored_rows(database_url, world.active)
    assert [r.seq for r in rows] == list(range(1, 301))
    assert Counter(r.client_id for r in rows) == Counter(f"n{k}" for k in range(300))


async def test_a_closed_writer_stores_what_it_holds_and_refuses_the_rest(world: World) -> None:
    handed_in = [
        asyncio.ensure_future(
            world.log.post(world.active, sender="child", client_id=f"c{k}", body="x")
        )
        for k in range(20)
    ]
    await asyncio.sleep(0)  # handed in before the close begins
    await world.log.close()
    assert sorted(p.seq for p in await asyncio.gather(*handed_in)) == list(range(1, 21))
    with pytest.raises(Unavailable):
        await world.log.post(world.active, sender="child", client_id="after", body="x")
