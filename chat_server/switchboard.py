"""Routing policy: queue order, capacity, priority and the honest wait estimate.

Pure: callers pass in what the database says and the current time.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, tzinfo

# A child who says they are in danger is served before everyone who did not.
PRIORITY_NORMAL = 0
PRIORITY_IN_DANGER = 2
# Requeued chats (transfer back, counsellor lost) keep their place and jump normal ones.
PRIORITY_REQUEUED = 1

# Even with a free counsellor, picking up a chat takes a moment; never promise zero.
MIN_ESTIMATE_S = 30


@dataclass(frozen=True, slots=True)
class Waiting:
    conversation_id: uuid.UUID
    priority: int
    queued_at: datetime


@dataclass(frozen=True, slots=True)
class OnDuty:
    """A counsellor who is available, with their capacity and current load."""

    capacity: int
    load: int

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.load)


def queue_order(waiting: Iterable[Waiting]) -> list[Waiting]:
    """Higher priority first, then longest waiting; the id breaks exact ties stably."""
    return sorted(waiting, key=lambda w: (-w.priority, w.queued_at, w.conversation_id))


RISK_LEVELS = ("none", "low", "high", "imminent")
# A flagged risk never lowers a priority; imminent danger goes before everyone.
RISK_PRIORITY = {"none": PRIORITY_NORMAL, "low": PRIORITY_NORMAL, "high": 2, "imminent": 3}


def initial_priority(*, in_danger: bool | None) -> int:
    return PRIORITY_IN_DANGER if in_danger else PRIORITY_NORMAL


def priority_for_risk(current: int, level: str) -> int:
    if level not in RISK_PRIORITY:
        raise ValueError(f"risk level must be one of {RISK_LEVELS}, not {level!r}")
    return max(current, RISK_PRIORITY[level])


def has_capacity(*, capacity: int, load: int) -> bool:
    return load < capacity


def estimate_wait_s(position: int, on_duty: Sequence[OnDuty], handle_time_s: float) -> int | None:
    """Seconds until the child at `position` (1-based) is likely to be answered.

    None when nobody is on duty: an honest "we don't know" instead of a made-up number.
    Children ahead take the free slots first; after that one slot frees up every
    handle_time / total_capacity seconds on average.
    """
    if position < 1:
        raise ValueError(f"position must be 1 or more, not {position!r}")
    capacity = sum(d.capacity for d in on_duty)
    if capacity == 0:
        return None
    free = sum(d.free for d in on_duty)
    if position <= free:
        return MIN_ESTIMATE_S
    slots_to_wait_for = position - free
    seconds = slots_to_wait_for * handle_time_s / capacity
    # Round up to whole minutes: a child reads "about 4 minutes", not "217 seconds".
    return max(MIN_ESTIMATE_S, math.ceil(seconds / 60.0) * 60)


def is_open(now: datetime, hours: Sequence[tuple[time, time]], zone: tzinfo) -> bool:
    """Whether `now` falls in the opening hours; no hours means always open."""
    if not hours:
        return True
    local = now.astimezone(zone).time()
    for start, end in hours:
        if start <= end and start <= local < end:
            return True
        if start > end and (local >= start or local < end):
            return True
    return False


def availability(
    *, open_now: bool, counsellors_online: int, estimated_wait_s: int | None, threshold_s: int
) -> dict[str, object]:
    """What the child is told before and while waiting: can someone answer soon, and if
    not, why (the page then offers the phone line and leaving a message)."""
    if not open_now:
        reason: str | None = "closed"
    elif counsellors_online == 0:
        reason = "nobody_online"
    elif estimated_wait_s is not None and estimated_wait_s > threshold_s:
        reason = "busy"
    else:
        reason = None
    answer: dict[str, object] = {"open": reason is None, "counsellors_online": counsellors_online}
    if reason is not None:
        answer["reason"] = reason
    return answer


@dataclass(slots=True)
class TokenBucket:
    """Messages per second with a burst; the clock is passed in so tests need no sleep."""

    rate: float
    burst: int
    tokens: float
    updated: float

    @classmethod
    def full(cls, *, rate: float, burst: int, now: float) -> TokenBucket:
        return cls(rate=rate, burst=burst, tokens=float(burst), updated=now)

    def allow(self, now: float) -> bool:
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
