"""The floor as this node shows it: the queue with positions and wait estimates, staff
snapshots, and the periodic sweeps that enforce grace periods and keep presence fresh.

Sweeps are idempotent conditional updates, safe when several nodes run them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import accounts, alerts, protocol, retention, switchboard
from chat_server.accounts import StaffIdentity
from chat_server.brokers import Event
from chat_server.connection import Connection
from chat_server.conversations import (
    QUEUE_CHANGED,
    Conversations,
    Withdrawn,
    tell_withdrawn,
    void_transfer,
)
from chat_server.floor_view import floor_view
from chat_server.hub import FLOOR, Hub, coalesce, conv_channel
from chat_server.settings import Settings, parse_hours
from chat_server.supervision import Supervision
from chat_server.transfers import Transfers, priority_at_least
from db.models import Conversation, StaffUser, UTCDateTime, utcnow

log = logging.getLogger(__name__)

HANDLE_TIME_SAMPLE = 50
# The mean handling time of the last chats barely moves; read it at most this often.
HANDLE_TIME_TTL_S = 60.0
# Conversations whose liveness one heartbeat transaction refreshes.
HEARTBEAT_CHUNK = 250
# A child whose own first `state` has not come within this time gets the queue's anyway.
INTRODUCTION_GRACE_S = 2.0
# The queue length and staffing behind a joining child's availability are read at most
# this often, and afresh once this node hears (`floor`) that they changed: a mass reconnect
# of thousands of phones costs a read a second, not two queries per `hello`. A change shows
# this late only when its `floor` event is lost (pub/sub may drop); a counsellor whose
# console just died counts anyway until the staff grace period; and opening hours are
# checked at every answer, so "closed" is never late.
AVAILABILITY_TTL_S = 1.0

# What a waiting child's place is made of, read from the queue index.
_PLACE_COLUMNS = (
    col(Conversation.id),
    col(Conversation.priority),
    col(Conversation.queued_at),
    col(Conversation.mode),
)
# What consoles show of each waiting child besides.
_ITEM_COLUMNS = (
    col(Conversation.created_at),
    col(Conversation.lang),
    col(Conversation.pre_chat),
    col(Conversation.last_seq),
    col(Conversation.risk_level),
    col(Conversation.child_left_at),
    col(Conversation.child_seen_at),
)


@dataclass(frozen=True, slots=True)
class Staffing:
    """Who can answer now and how long a chat takes: what every wait estimate needs."""

    on_duty: list[switchboard.OnDuty]
    handle_time_s: float

    @property
    def counsellors_online(self) -> int:
        return len(self.on_duty)


@dataclass(frozen=True, slots=True)
class Joining:
    """What a joining child's availability is made of, besides the opening hours."""

    queue_length: int
    staffing: Staffing
    read_at: float  # loop time when the read began, so its age is never understated


@dataclass(frozen=True, slots=True)
class QueueView:
    places: dict[uuid.UUID, tuple[int, str]]  # position, mode
    items: list[Event]  # as consoles show them; empty in a view of places only
    staffing: Staffing


class Floor:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        hub: Hub,
        conversations: Conversations,
        settings: Settings,
        transfers: Transfers,
        supervision: Supervision,
    ) -> None:
        self.db = db
        self.hub = hub
        self.conversations = conversations
        self.settings = settings
        self.transfers = transfers
        self.supervision = supervision
        self.refresh = coalesce(self._push_queue, interval=settings.queue_refresh_interval_s)
        self.refresh_floor = coalesce(self._push_floor)
        self._hours = parse_hours(settings.opening_hours)
        self._zone = ZoneInfo(settings.timezone)
        # The queue `state` each waiting child's connection holds, so that only a change
        # is sent; None after an event from the services (taken, requeued) replaced it.
        # A connection not here yet is being sent its own first state by `child_state`.
        self._shown: weakref.WeakKeyDictionary[Connection, Event | None] = (
            weakref.WeakKeyDictionary()
        )
        # When each such connection was first found waiting for that first state.
        self._introducing: weakref.WeakKeyDictionary[Connection, float] = (
            weakref.WeakKeyDictionary()
        )
        self._handle_time: tuple[float, float] | None = None  # seconds, read at (loop time)
        # Children whose page shows another status than the database did at the last
        # heartbeat, with that status: a second heartbeat that finds the same repairs it.
        self._out_of_step: weakref.WeakKeyDictionary[Connection, str] = weakref.WeakKeyDictionary()
        # The last `Joining` read, shared by every `hello` until it ages out or the floor
        # changes; the read under way, which callers meanwhile wait for instead of each
        # running their own; and a count of changes heard, so that a read begun before
        # one is handed to its waiters but not kept.
        self._joining: Joining | None = None
        self._joining_read: asyncio.Task[Joining] | None = None
        self._floor_changes = 0
        hub.listen(FLOOR, self._floor_changed)
        hub.intercept(self._note_event)

    # --- the queue ----------------------------------------------------------------------

    async def queue_view(self, *, items: bool = True) -> QueueView:
        """Every waiting child's place; with `items`, also what consoles show of each."""
        online_after = utcnow() - timedelta(seconds=self.settings.heartbeat_interval_s * 2.5)
        columns = _PLACE_COLUMNS + (_ITEM_COLUMNS if items else ())
        async with self.db() as session:
            rows = (
                await session.execute(select(*columns).where(col(Conversation.status) == "queued"))
            ).all()
            staffing = await self._staffing(session)
        by_id = {row.id: row for row in rows}
        order = switchboard.queue_order(
            switchboard.Waiting(row.id, row.priority, row.queued_at) for row in rows
        )
        places = {
            w.conversation_id: (n, by_id[w.conversation_id].mode) for n, w in enumerate(order, 1)
        }
        shown = (
            [_queue_item(by_id[w.conversation_id], n, online_after) for n, w in enumerate(order, 1)]
            if items
            else []
        )
        return QueueView(places, shown, staffing)

    def availability(
        self, staffing: Staffing, position: int, *, open_now: bool | None = None
    ) -> Event:
        """Can a child at `position` expect an answer soon?"""
        return switchboard.availability(
            open_now=self._open_now() if open_now is None else open_now,
            counsellors_online=staffing.counsellors_online,
            estimated_wait_s=switchboard.estimate_wait_s(
                position, staffing.on_duty, staffing.handle_time_s
            ),
            threshold_s=self.settings.wait_threshold_s,
        )

    async def availability_now(self) -> Event:
        """What a child joining now can expect."""
        joining = await self._joining_now()
        return self.availability(joining.staffing, joining.queue_length + 1)

    async def _joining_now(self) -> Joining:
        """The queue's length and the staffing, from a read at most `AVAILABILITY_TTL_S`
        old, which concurrent callers share."""
        loop = asyncio.get_running_loop()
        joining = self._joining
        if joining is None or loop.time() - joining.read_at >= AVAILABILITY_TTL_S:
            if self._joining_read is None or self._joining_read.done():
                self._joining_read = loop.create_task(self._read_joining())
            # Shielded: a child that hangs up mid-read must not cancel it for the others.
            joining = await asyncio.shield(self._joining_read)
        return joining

    async def _read_joining(self) -> Joining:
        changes = self._floor_changes
        read_at = asyncio.get_running_loop().time()
        async with self.db() as session:
            length = (
                await session.execute(
                    select(func.count())
                    .select_from(Conversation)
                    .where(col(Conversation.status) == "queued")
                )
            ).scalar_one()
            staffing = await self._staffing(session)
        joining = Joining(int(length), staffing, read_at)
        if changes == self._floor_changes:
            self._joining = joining
        return joining

    def _floor_changed(self, _event: Event) -> None:
        """The queue or staffing changed (on any node): recompute positions, and answer
        the next `hello` from a fresh read."""
        self._joining = None
        self._floor_changes += 1
        self.refresh()

    async def child_state(self, conversation: Conversation) -> Event:
        """The `state` frame for a child: status, and place in the queue while waiting."""
        state: Event = {"type": "state", "status": conversation.status, "_view": True}
        if conversation.mode != "chat":
            state["mode"] = conversation.mode
        if conversation.status == "queued":
            async with self.db() as session:
                position = await _position(session, conversation)
            # Shared with every child joining or coming back meanwhile (a node restart
            # brings them all at once); the next queue refresh reads afresh.
            staffing = (await self._joining_now()).staffing
            state = self._waiting_state(position, conversation.mode, staffing)
            self._introduce(conversation.id, state)
        elif conversation.status == "active" and conversation.assigned_user_id is not None:
            async with self.db() as session:
                user = await session.get(StaffUser, conversation.assigned_user_id)
            if user is not None:
                state["counsellor"] = {"name": user.display_name}
        return state

    async def snapshot(self, staff: StaffIdentity, chats: Sequence[Conversation]) -> Event:
        """The console's first frame; `chats` are the staff member's, read after the
        console joined their channels, so no event about them can fall in between."""
        view = await self.queue_view()
        online_after = utcnow() - timedelta(seconds=self.settings.heartbeat_interval_s * 2.5)
        return {
            "type": "snapshot",
            "me": await self.conversations.me(staff.id),
            "queue": view.items,
            "chats": [
                {
                    "conversation_id": str(c.id),
                    "status": c.status,
                    "priority": c.priority,
                    "lang": c.lang,
                    "pre_chat": c.pre_chat,
                    "last_seq": c.last_seq,
                    "child_read_seq": c.child_read_seq,
                    "staff_read_seq": c.staff_read_seq,
                    "created_at": protocol.iso(c.created_at),
                    "assigned_at": protocol.iso(c.assigned_at) if c.assigned_at else None,
                    "child_online": _child_online(c, online_after),
                }
                for c in chats
            ],
        }

    async def floor_view(self, view: QueueView | None = None) -> Event:
        view = view or await self.queue_view()
        online_after = utcnow() - timedelta(seconds=self.settings.heartbeat_interval_s * 2.5)
        async with self.db() as session:
            return await floor_view(session, view.items, online_after=online_after)

    async def _push_queue(self) -> None:
        staff = self.hub.connections("staff")
        waiting = self._local_waiting_children()
        if not staff and not waiting:
            return
        # Consoles show the whole queue; children need only their places.
        view = await self.queue_view(items=bool(staff))
        if staff:
            frame = {"type": "queue", "items": view.items}
            for connection in staff:
                connection.push(frame)
        self._push_places(view, waiting)
        if staff:
            await self._push_floor(view)

    def _push_places(self, view: QueueView, waiting: dict[uuid.UUID, list[Connection]]) -> None:
        """Send each waiting child its place, if it moved."""
        now = asyncio.get_running_loop().time()
        open_now = self._open_now()
        introducing = False
        for conversation_id, connections in waiting.items():
            place = view.places.get(conversation_id)
            if place is None:
                continue  # taken or ended meanwhile: its own event says so
            state = self._waiting_state(*place, view.staffing, open_now=open_now)
            for connection in connections:
                if connection not in self._shown:
                    # Just joined: its own first state, maybe newer than this, is on its way.
                    since = self._introducing.setdefault(connection, now)
                    if now - since < INTRODUCTION_GRACE_S:
                        introducing = True
                        continue
                if self._shown.get(connection) != state:
                    connection.push(state)
                    self._shown[connection] = state
        if introducing:
            self.refresh()  # look again once they have it

    def _introduce(self, conversation_id: uuid.UUID, state: Event) -> None:
        """The child's own first state goes out now, after anything a refresh that did not
        wait for it sent: later refreshes send only changes from it."""
        for connection in self.hub.members(conv_channel(conversation_id)):
            if connection.kind != "child":
                continue
            overtaken = self._introducing.pop(connection, None) is not None
            if overtaken or connection not in self._shown:
                self._shown[connection] = state

    def _note_event(self, connection: Connection, _channel: str, event: Event) -> None:
        """A status from the services (taken, requeued, ended) replaces the child's view."""
        if (
            connection.kind == "child"
            and event["type"] in ("state", "ended")
            and not event.get("_view")
            and event.get("_to") in (None, "child")
        ):
            self._shown[connection] = None

    async def _push_floor(self, view: QueueView | None = None) -> None:
        supervisors = self.hub.members(alerts.SUPERVISORS)
        if supervisors:
            floor = await self.floor_view(view)
            for connection in supervisors:
                connection.push(floor)

    def _open_now(self) -> bool:
        return switchboard.is_open(utcnow(), self._hours, self._zone)

    def _waiting_state(
        self, position: int, mode: str, staffing: Staffing, *, open_now: bool | None = None
    ) -> Event:
        """The `state` of a waiting child at `position`."""
        state: Event = {"type": "state", "status": "queued", "_view": True}
        if mode != "chat":
            state["mode"] = mode
        state |= {
            "position": position,
            "counsellors_online": staffing.counsellors_online,
            "availability": self.availability(staffing, position, open_now=open_now),
        }
        estimate = switchboard.estimate_wait_s(position, staffing.on_duty, staffing.handle_time_s)
        if estimate is not None:
            state["estimated_wait_s"] = estimate
        return state

    def _local_waiting_children(self) -> dict[uuid.UUID, list[Connection]]:
        waiting: dict[uuid.UUID, list[Connection]] = {}
        for conversation_id in self.hub.local_children():
            children = [
                c for c in self.hub.members(conv_channel(conversation_id)) if c.kind == "child"
            ]
            if children:
                waiting[conversation_id] = children
        return waiting

    async def _staffing(self, session: AsyncSession) -> Staffing:
        on_duty = await _on_duty(session)
        now = asyncio.get_running_loop().time()
        if self._handle_time is None or now - self._handle_time[1] > HANDLE_TIME_TTL_S:
            handle_time = await _handle_time(session, self.settings.default_handle_time_s)
            self._handle_time = (handle_time, now)
        return Staffing(on_duty, self._handle_time[0])

    # --- sweeps -------------------------------------------------------------------------

    async def run_sweeps(self) -> None:
        """Forever: keep presence fresh and enforce grace periods, every few seconds."""
        try:
            await self._sweep_forever()
        finally:
            # Stopping the node: no refresh may run on a closed database.
            self.refresh.cancel()
            self.refresh_floor.cancel()
            if self._joining_read is not None:
                self._joining_read.cancel()

    async def _sweep_forever(self) -> None:
        last_heartbeat = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() - last_heartbeat >= self.settings.heartbeat_interval_s:
                    await self.heartbeat()
                    last_heartbeat = loop.time()
                    # Online marks and reply waits move with time: refresh the floor.
                    self.refresh_floor()
                await self.sweep()
                await self.supervision.sweep_alerts()
                await self.transfers.expire(self.settings.transfer_offer_timeout_s)
                # Returns at once unless a day has passed since the last purge.
                await retention.sweep(self.db, self.settings)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("sweep failed; retrying next round", exc_info=True)
            await asyncio.sleep(self.settings.sweep_interval_s)

    async def heartbeat(self) -> None:
        now = utcnow()
        await accounts.touch(self.db, self.hub.local_staff(), now)
        children = sorted(self.hub.local_children())
        # A few hundred rows per transaction: a node with 10,000 phones would otherwise
        # hold every one of their conversations locked at once, and each message to
        # them would wait for the whole update.
        for start in range(0, len(children), HEARTBEAT_CHUNK):
            chunk = children[start : start + HEARTBEAT_CHUNK]
            # Rows locked in id order, as the message writer locks them: a multi-row
            # UPDATE in whatever order the planner picks could deadlock with a batch
            # (PostgreSQL would break it only after deadlock_timeout, a second).
            in_order = (
                select(col(Conversation.id))
                .where(col(Conversation.id).in_(chunk))
                .order_by(col(Conversation.id))
                .with_for_update()
            )
            async with self.db() as session, session.begin():
                await session.execute(
                    update(Conversation)
                    .where(col(Conversation.id).in_(in_order.scalar_subquery()))
                    .values(child_seen_at=now, child_left_at=None)
                )
        await self._push_heads()

    async def _push_heads(self) -> None:
        """Tell local clients where each of their conversations stands in the database.

        The broker may drop an event; if it was the last message of a burst, no later
        message would reveal the gap. A writer that is behind its head fills in from
        the database, so a dropped event costs at most one heartbeat of latency.

        A dropped status event (taken, requeued, ended) would leave a child's page on
        the wrong screen, "waiting" while a counsellor writes. A child whose page shows
        another status than the database on two heartbeats in a row (one could be an
        event still on its way) is sent the status read from the database.
        """
        local = self.hub.local_conversations()
        if not local:
            return
        async with self.db() as session:
            rows = (
                await session.execute(
                    select(
                        col(Conversation.id), col(Conversation.last_seq), col(Conversation.status)
                    ).where(col(Conversation.id).in_(local))
                )
            ).all()
        repair: list[tuple[uuid.UUID, Connection]] = []
        for conversation_id, last_seq, status in rows:
            head = {"type": "_head", "conversation_id": str(conversation_id), "seq": last_seq}
            for connection in self.hub.members(conv_channel(conversation_id)):
                connection.push(head)
                if connection.kind != "child" or connection.status in (None, status):
                    self._out_of_step.pop(connection, None)
                elif self._out_of_step.get(connection) == status:
                    repair.append((conversation_id, connection))
                else:
                    self._out_of_step[connection] = status
        for conversation_id, connection in repair:
            await self._repair_status(conversation_id, connection)

    async def _repair_status(self, conversation_id: uuid.UUID, connection: Connection) -> None:
        async with self.db() as session:
            conversation = await session.get(Conversation, conversation_id)
        if conversation is None:
            return
        log.info("a child's page missed a status event; sent %s again", conversation.status)
        self._out_of_step.pop(connection, None)
        if conversation.status == "ended":
            connection.push({"type": "ended", "reason": conversation.end_reason})
            return
        state = await self.child_state(conversation)
        # The database's word, not a view: the connection must not drop it as overtaken.
        state.pop("_view", None)
        connection.push(state)

    async def sweep(self) -> None:
        now = utcnow()
        settings = self.settings
        staff_gone = now - timedelta(seconds=settings.staff_grace_s)
        child_gone = now - timedelta(seconds=settings.child_queue_grace_s)
        idle = now - timedelta(seconds=settings.inactivity_close_s)
        message_idle = now - timedelta(seconds=settings.left_message_close_s)
        async with self.db() as session, session.begin():
            # Counsellors whose consoles have all been gone past the grace period.
            lost_staff = list(
                (
                    await session.execute(
                        update(StaffUser)
                        .where(
                            col(StaffUser.status) != "offline",
                            or_(
                                col(StaffUser.last_seen_at).is_(None),
                                col(StaffUser.last_seen_at) < staff_gone,
                            ),
                        )
                        .values(status="offline", status_since=now)
                        .returning(col(StaffUser.id))
                    )
                ).scalars()
            )
            # Their children go back to the front of the queue rather than wait in limbo.
            requeued = list(
                (
                    await session.execute(
                        update(Conversation)
                        .where(
                            col(Conversation.status) == "active",
                            col(Conversation.assigned_user_id).in_(
                                select(col(StaffUser.id)).where(
                                    col(StaffUser.status) == "offline",
                                    or_(
                                        col(StaffUser.last_seen_at).is_(None),
                                        col(StaffUser.last_seen_at) < staff_gone,
                                    ),
                                )
                            ),
                        )
                        .values(
                            status="queued",
                            assigned_user_id=None,
                            priority=priority_at_least(session, switchboard.PRIORITY_REQUEUED),
                        )
                        .returning(Conversation)
                    )
                ).scalars()
            )
            # An offer from the lost counsellor, or a note someone already handed over,
            # must not outlive the chat leaving them.
            withdrawn: list[Withdrawn | None] = [void_transfer(c, "requeued") for c in requeued]
            ended = list(
                (
                    await session.execute(
                        update(Conversation)
                        .where(
                            or_(
                                and_(
                                    col(Conversation.status) == "queued",
                                    # A left message waits for a counsellor, child or not.
                                    col(Conversation.mode) == "chat",
                                    or_(
                                        col(Conversation.child_left_at) < child_gone,
                                        col(Conversation.child_seen_at) < child_gone,
                                    ),
                                ),
                                and_(
                                    col(Conversation.status) == "active",
                                    func.coalesce(
                                        col(Conversation.last_message_at),
                                        col(Conversation.assigned_at),
                                    )
                                    < case(
                                        (col(Conversation.mode) == "message", _at(message_idle)),
                                        else_=_at(idle),
                                    ),
                                ),
                            )
                        )
                        .values(
                            status="ended",
                            ended_at=now,
                            end_reason=case(
                                (col(Conversation.status) == "queued", "abandoned"),
                                else_="inactive",
                            ),
                        )
                        .returning(Conversation)
                    )
                ).scalars()
            )
            voided = {c.id: void_transfer(c, "ended") for c in ended}
        for conversation in ended:
            await self.conversations.announce_end(conversation, voided[conversation.id])
        await tell_withdrawn(self.hub, *withdrawn)
        for conversation_id in (c.id for c in requeued):
            await self.hub.publish(
                conv_channel(conversation_id),
                {
                    "type": "state",
                    "conversation_id": str(conversation_id),
                    "status": "queued",
                    "_to": "child",
                },
            )
            await self.hub.publish(
                conv_channel(conversation_id),
                {
                    "type": "released",
                    "conversation_id": str(conversation_id),
                    "reason": "counsellor_lost",
                    "_to": "staff",
                },
            )
        if lost_staff or requeued:
            log.info("sweep: %d staff offline, %d chats requeued", len(lost_staff), len(requeued))
            await self.hub.publish(FLOOR, QUEUE_CHANGED)
        for user_id in lost_staff:
            with contextlib.suppress(Exception):
                await self.conversations.publish_me(user_id)


def _at(moment: datetime) -> Any:
    """A timestamp as a typed SQL literal, stored the way the columns store theirs."""
    return literal(moment, UTCDateTime)


def _child_online(conversation: Any, online_after: datetime) -> bool:
    """Whether the child (a conversation, or a row with its presence columns) is here."""
    return conversation.child_left_at is None and conversation.child_seen_at >= online_after


def _queue_item(row: Any, position: int, online_after: datetime) -> Event:
    return {
        "conversation_id": str(row.id),
        "waiting_since": protocol.iso(row.created_at),
        "priority": row.priority,
        "lang": row.lang,
        "pre_chat": row.pre_chat,
        "position": position,
        "last_seq": row.last_seq,
        "mode": row.mode,
        "risk_level": row.risk_level,
        "child_online": _child_online(row, online_after),
    }


async def _position(session: AsyncSession, conversation: Conversation) -> int:
    """A waiting child's place in the queue (see `switchboard.queue_order`): one count of
    those ahead, on the queue's index."""
    p, at = conversation.priority, conversation.queued_at
    ahead = or_(
        col(Conversation.priority) > p,
        and_(
            col(Conversation.priority) == p,
            or_(
                col(Conversation.queued_at) < at,
                and_(col(Conversation.queued_at) == at, col(Conversation.id) < conversation.id),
            ),
        ),
    )
    count = await session.execute(
        select(func.count())
        .select_from(Conversation)
        .where(col(Conversation.status) == "queued", ahead)
    )
    return int(count.scalar_one()) + 1


async def _on_duty(session: AsyncSession) -> list[switchboard.OnDuty]:
    load = (
        select(func.count())
        .select_from(Conversation)
        .where(
            col(Conversation.assigned_user_id) == col(StaffUser.id),
            col(Conversation.status) == "active",
        )
        .scalar_subquery()
    )
    rows = await session.execute(
        select(col(StaffUser.max_chats), load).where(
            col(StaffUser.status) == "available",
            col(StaffUser.active).is_(True),
        )
    )
    return [switchboard.OnDuty(capacity=cap, load=int(n)) for cap, n in rows]


async def _handle_time(session: AsyncSession, default_s: int) -> float:
    """Mean handling time of the latest finished chats; the default until there are some."""
    recent = (
        select(col(Conversation.assigned_at), col(Conversation.ended_at))
        .where(
            col(Conversation.status) == "ended",
            col(Conversation.assigned_at).is_not(None),
            col(Conversation.ended_at).is_not(None),
        )
        .order_by(col(Conversation.ended_at).desc())
        .limit(HANDLE_TIME_SAMPLE)
    )
    rows = (await session.execute(recent)).all()
    if len(rows) < 5:
        return float(default_s)
    total = 0.0
    for assigned, ended in rows:
        if assigned is None or ended is None:  # the query leaves such chats out
            raise ValueError(f"a finished chat without its times: {assigned!r}, {ended!r}")
        total += (ended - assigned).total_seconds()
    return max(60.0, total / len(rows))
