"""What a child is told on `hello` about who can answer: honest, yet cheap when thousands
of phones reconnect at once (one shared read a second, not two queries each)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, update
from sqlmodel import col

from chat_server import accounts, floor
from chat_server.conversations import QUEUE_CHANGED
from chat_server.floor import AVAILABILITY_TTL_S, Floor, Joining
from chat_server.hub import FLOOR
from chat_server.runtime import Services, start_services, stop_services
from db.models import StaffUser
from tests import conftest
from tests.conftest import PASSWORD, MakeLive

CROWD = 40


@contextlib.asynccontextmanager
async def node(database_url: str, **overrides: Any) -> AsyncIterator[Services]:
    """One node's services on this test's loop, without sweeps that would query too."""
    services = await start_services(conftest.test_settings(database_url, **overrides), sweeps=False)
    try:
        yield services
    finally:
        await stop_services(services)


@contextlib.contextmanager
def statements(services: Services) -> Iterator[list[str]]:
    """Every SQL statement the node runs meanwhile."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.append(sql)

    engine = services.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def floor_changed(services: Services) -> None:
    """What the services announce after a queue or staffing change, delivered."""
    await services.hub.publish(FLOOR, QUEUE_CHANGED)
    await asyncio.sleep(0.05)


async def counsellor(services: Services, status: str) -> accounts.StaffIdentity:
    staff = await accounts.create_user(
        services.db,
        username=f"coun{secrets.token_hex(3)}",
        password=PASSWORD,
        role="counsellor",
        display_name="Counsellor",
        max_chats=3,
    )
    await set_status_quietly(services, staff.id, status)
    return staff


async def set_status_quietly(services: Services, user_id: uuid.UUID, status: str) -> None:
    """A status change this node hears nothing of, as when its `floor` event is lost."""
    async with services.db() as session, session.begin():
        await session.execute(
            update(StaffUser).where(col(StaffUser.id) == user_id).values(status=status)
        )


async def test_concurrent_joins_share_one_read(database_url: str) -> None:
    async with node(database_url) as services:
        await services.floor.availability_now()  # the handling time is read once a minute
        await floor_changed(services)
        with statements(services) as one:
            alone = await services.floor.availability_now()
        assert one, "a hello after a floor change reads afresh"
        await floor_changed(services)
        with statements(services) as crowd:
            answers = await asyncio.gather(
                *(services.floor.availability_now() for _ in range(CROWD))
            )
        assert len(crowd) == len(one), crowd
        assert answers == [alone] * CROWD


async def test_a_change_the_node_missed_shows_once_the_answer_ages_out(
    database_url: str,
) -> None:
    async with node(database_url) as services:
        staff = await counsellor(services, "available")
        assert await services.floor.availability_now() == {"open": True, "counsellors_online": 1}
        await set_status_quietly(services, staff.id, "offline")
        await asyncio.sleep(AVAILABILITY_TTL_S + 0.05)
        assert await services.floor.availability_now() == {
            "open": False,
            "counsellors_online": 0,
            "reason": "nobody_online",
        }


async def test_closing_time_is_told_at_once_though_the_numbers_are_shared(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    local = now.astimezone(ZoneInfo("Europe/Tirane"))
    hours = f"{local - timedelta(hours=1):%H:%M}-{local + timedelta(hours=1):%H:%M}"
    async with node(database_url, opening_hours=hours) as services:
        await counsellor(services, "available")
        assert (await services.floor.availability_now())["open"] is True
        monkeypatch.setattr(floor, "utcnow", lambda: now + timedelta(hours=3))
        with statements(services) as seen:
            closed = await services.floor.availability_now()
        assert seen == [], "the queue and staffing were still fresh"
        assert closed == {"open": False, "counsellors_online": 1, "reason": "closed"}


async def test_a_counsellor_going_away_is_told_to_the_next_child_at_once(
    make_live: MakeLive,
) -> None:
    live = await make_live()
    staff = await live.counsellor()
    first = await live.child()
    assert first.of_type("welcome")[0]["availability"]["open"] is True
    await staff.send(type="status", value="break")
    await staff.expect("me", status="break")
    second = await live.child()
    assert second.of_type("welcome")[0]["availability"] == {
        "open": False,
        "counsellors_online": 0,
        "reason": "nobody_online",
    }


async def test_a_crowd_of_hellos_costs_one_read_a_second(
    make_live: MakeLive, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = 0
    read_joining = Floor._read_joining

    async def counted(self: Floor) -> Joining:
        nonlocal reads
        reads += 1
        return await read_joining(self)

    monkeypatch.setattr(Floor, "_read_joining", counted)
    live = await make_live()
    loop = asyncio.get_running_loop()
    started = loop.time()
    children = await asyncio.gather(*(live.child() for _ in range(CROWD)))
    elapsed = loop.time() - started
    assert reads <= 1 + int(elapsed / AVAILABILITY_TTL_S), (reads, elapsed)
    for child in children:
        assert child.of_type("welcome")[0]["availability"]["reason"] == "nobody_online"
