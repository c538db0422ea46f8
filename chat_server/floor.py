"""The floor as this node shows it: the queue with positions and wait estimates, staff
snapshots, and the periodic sweeps that enforce grace periods and keep presence fresh.

Sweeps are idempotent conditional updates, safe when several nodes run them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat_server import accounts, alerts, protocol, retention, switchboard
from chat_server.accounts import StaffIdentity
from chat_server.brokers import Event
from chat_server.conversations import QUEUE_CHANGED, Conversations
from chat_server.floor_view import floor_view
from chat_server.hub import FLOOR, Hub, coalesce, conv_channel
from chat_server.settings import Settings, parse_hours
from chat_server.supervision import Supervision
from chat_server.transfers import Transfers, priority_at_least
from db.models import Conversation, StaffUser, UTCDateTime, utcnow

log = logging.getLogger(__name__)

HANDLE_TIME_SAMPLE = 50


@dataclass(frozen=True, slots=True)
class QueueView:
    items: list[Event]
    estimates: dict[uuid.UUID, tuple[int, int | None]]  # position, estimated wait
    modes: dict[uuid.UUID, str]
    counsellors_online: int
    on_duty: list[switchboard.OnDuty]
    handle_time_s: float


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
        self.refresh = coalesce(self._push_queue)
        self.refresh_floor = coalesce(self._push_floor)
        self._hours = parse_hours(settings.opening_hours)
        self._zone = ZoneInfo(settings.timezone)
        hub.listen(FLOOR, lambda _event: self.refresh())

    async def queue_view(self) -> QueueView:
        now = utcnow()
        online_after = now - timedelta(seconds=self.settings.heartbeat_interval_s * 2.5)
        async with self.db() as session:
            queued = list(
                (
                    await session.execute(
                        select(Conversation).where(Conversation.status == "queued")
                    )
                ).scalars()
            )
            on_duty = await _on_duty(session)
            handle_time = await _handle_time(session, self.settings.default_handle_time_s)
        by_id = {c.id: c for c in queued}
        order = switchboard.queue_order(
            switchboard.Waiting(c.id, c.priority, c.queued_at) for c in queued
        )
        items: list[Event] = []
        estimates: dict[uuid.UUID, tuple[int, int | None]] = {}
        for position, waiting in enumerate(order, start=1):
            c = by_id[waiting.conversation_id]
            estimate = switchboard.estimate_wait_s(position, on_duty, handle_time)
            estimates[c.id] = (position, estimate)
            items.append(
                {
                    "conversation_id": str(c.id),
                    "waiting_since": protocol.iso(c.created_at),
                    "priority": c.priority,
                    "lang": c.lang,
                    "pre_chat": c.pre_chat,
                    "position": position,
                    "last_seq": c.last_seq,
                    "mode": c.mode,
                    "risk_level": c.risk_level,
                    "child_online": _child_online(c, online_after),
                }
            )
        return QueueView(
            items,
            estimates,
            {c.id: c.mode for c in queued},
            len(on_duty),
            on_duty=on_duty,
            handle_time_s=handle_time,
        )

    def availability(self, view: QueueView, position: int | None = None) -> Event:
        """Can a child at `position` (default: joining now) expect an answer soon?"""
        settings = self.settings
        place = position if position is not None else len(view.items) + 1
        return switchboard.availability(
            open_now=switchboard.is_open(utcnow(), self._hours, self._zone),
            counsellors_online=view.counsellors_online,
            estimated_wait_s=switchboard.estimate_wait_s(place, view.on_duty, view.handle_time_s),
            threshold_s=settings.wait_threshold_s,
        )

    async def availability_now(self) -> Event:
        return self.availability(await self.queue_view())

    async def child_state(self, conversation: Conversation) -> Event:
        """The `state` frame for a child: status, and place in the queue while waiting."""
        state: Event = {"type": "state", "status": conversation.status, "_view": True}
        if conversation.mode != "chat":
            state["mode"] = conversation.mode
        if conversation.status == "queued":
            view = await self.queue_view()
            state |= self._waiting_state(view, conversation.id) or {}
        elif conversation.status == "active" and conversation.assigned_user_id is not None:
            async with self.db() as session:
                user = await session.get(StaffUser, conversation.assigned_user_id)
            if user is not None:
                state["counsellor"] = {"name": user.display_name}
        return state

    async def snapshot(self, staff: StaffIdentity) -> Event:
        view = await self.queue_view()
        chats = await self.conversations.chats_of(staff.id)
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
        view = await self.queue_view()
        frame = {"type": "queue", "items": view.items}
        for connection in staff:
            connection.push(frame)
        for conversation_id, connections in waiting.items():
            state = self._waiting_state(view, conversation_id)
            if state is None:
                continue  # taken or ended meanwhile: its own event says so
            for connection in connections:
                connection.push(state)
        await self._push_floor(view)

    async def _push_floor(self, view: QueueView | None = None) -> None:
        supervisors = self.hub.members(alerts.SUPERVISORS)
        if supervisors:
            floor = await self.floor_view(view)
            for connection in supervisors:
                connection.push(floor)

    def _waiting_state(self, view: QueueView, conversation_id: uuid.UUID) -> Event | None:
        """The `state` of a waiting child, or None if it is not in the queue."""
        place = view.estimates.get(conversation_id)
        if place is None:
            return None
        position, estimate = place
        state: Event = {"type": "state", "status": "queued", "_view": True}
        if view.modes[conversation_id] != "chat":
            state["mode"] = view.modes[conversation_id]
        state |= {
            "position": position,
            "counsellors_online": view.counsellors_online,
            "availability": self.availability(view, position),
        }
        if estimate is not None:
            state["estimated_wait_s"] = estimate
        return state

    def _local_waiting_children(self) -> dict[uuid.UUID, list[Any]]:
        waiting: dict[uuid.UUID, list[Any]] = {}
        for conversation_id in self.hub.local_children():
            children = [
                c for c in self.hub.members(conv_channel(conversation_id)) if c.kind == "child"
            ]
            if children:
                waiting[conversation_id] = children
        return waiting

    # --- sweeps -------------------------------------------------------------------------

    async def run_sweeps(self) -> None:
        """Forever: keep presence fresh and enforce grace periods, every few seconds."""
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
        children = self.hub.local_children()
        if children:
            async with self.db() as session, session.begin():
                await session.execute(
                    update(Conversation)
                    .where(Conversation.id.in_(children))  # type: ignore[attr-defined]
                    .values(child_seen_at=now, child_left_at=None)
                )
        await self._push_heads()

    async def _push_heads(self) -> None:
        """Tell local clients where each of their conversations stands in the database.

        The broker may drop an event; if it was the last message of a burst, no later
        message would reveal the gap. A writer that is behind its head fills in from
        the database, so a dropped event costs at most one heartbeat of latency.
        """
        local = self.hub.local_conversations()
        if not local:
            return
        async with self.db() as session:
            rows = await session.execute(
                select(Conversation.id, Conversation.last_seq).where(
                    Conversation.id.in_(local)  # type: ignore[attr-defined]
                )
            )
        for conversation_id, last_seq in rows:
            head = {"type": "_head", "conversation_id": str(conversation_id), "seq": last_seq}
            for connection in self.hub.members(conv_channel(conversation_id)):
                connection.push(head)

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
                            StaffUser.status != "offline",
                            or_(
                                StaffUser.last_seen_at.is_(None),  # type: ignore[union-attr]
                                StaffUser.last_seen_at < staff_gone,  # type: ignore[operator]
                            ),
                        )
                        .values(status="offline", status_since=now)
                        .returning(StaffUser.id)
                    )
                ).scalars()
            )
            # Their children go back to the front of the queue rather than wait in limbo.
            requeued = list(
                (
                    await session.execute(
                        update(Conversation)
                        .where(
                            Conversation.status == "active",
                            Conversation.assigned_user_id.in_(  # type: ignore[union-attr]
                                select(StaffUser.id).where(
                                    StaffUser.status == "offline",
                                    or_(
                                        StaffUser.last_seen_at.is_(None),  # type: ignore[union-attr]
                                        StaffUser.last_seen_at < staff_gone,  # type: ignore[operator]
                                    ),
                                )
                            ),
                        )
                        .values(
                            status="queued",
                            assigned_user_id=None,
                            priority=priority_at_least(session, switchboard.PRIORITY_REQUEUED),
                        )
                        .returning(Conversation.id)
                    )
                ).scalars()
            )
            ended = list(
                (
                    await session.execute(
                        update(Conversation)
                        .where(
                            or_(
                                and_(
                                    Conversation.status == "queued",
                                    # A left message waits for a counsellor, child or not.
                                    Conversation.mode == "chat",
                                    or_(
                                        Conversation.child_left_at < child_gone,  # type: ignore[operator]
                                        Conversation.child_seen_at < child_gone,
                                    ),
                                ),
                                and_(
                                    Conversation.status == "active",
                                    func.coalesce(
                                        Conversation.last_message_at, Conversation.assigned_at
                                    )
                                    < case(
                                        (Conversation.mode == "message", _at(message_idle)),
                                        else_=_at(idle),
                                    ),
                                ),
                            )
                        )
                        .values(
                            status="ended",
                            ended_at=now,
                            end_reason=case(
                                (Conversation.status == "queued", "abandoned"), else_="inactive"
                            ),
                        )
                        .returning(Conversation)
                    )
                ).scalars()
            )
        for conversation in ended:
            await self.conversations.announce_end(conversation)
        for conversation_id in requeued:
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


def _child_online(conversation: Conversation, online_after: Any) -> bool:
    return conversation.child_left_at is None and conversation.child_seen_at >= online_after


async def _on_duty(session: AsyncSession) -> list[switchboard.OnDuty]:
    load = (
        select(func.count())
        .select_from(Conversation)
        .where(Conversation.assigned_user_id == StaffUser.id, Conversation.status == "active")
        .scalar_subquery()
    )
    rows = await session.execute(
        select(StaffUser.max_chats, load).where(
            StaffUser.status == "available",
            StaffUser.active.is_(True),  # type: ignore[attr-defined]
        )
    )
    return [switchboard.OnDuty(capacity=cap, load=int(n)) for cap, n in rows]


async def _handle_time(session: AsyncSession, default_s: int) -> float:
    """Mean handling time of the latest finished chats; the default until there are some."""
    recent = (
        select(Conversation.assigned_at, Conversation.ended_at)
        .where(
            Conversation.status == "ended",
            Conversation.assigned_at.is_not(None),  # type: ignore[union-attr]
            Conversation.ended_at.is_not(None),  # type: ignore[union-attr]
        )
        .order_by(Conversation.ended_at.desc())  # type: ignore[union-attr]
        .limit(HANDLE_TIME_SAMPLE)
    )
    rows = (await session.execute(recent)).all()
    if len(rows) < 5:
        return float(default_s)
    total = sum((ended - assigned).total_seconds() for assigned, ended in rows)
    return max(60.0, total / len(rows))
