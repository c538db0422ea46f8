"""Routing policy: queue order, capacity, the wait estimate and the rate limiter.

Pure: no event loop, no database; times and clocks are passed in.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from chat_server import switchboard
from chat_server.switchboard import (
    MIN_ESTIMATE_S,
    PRIORITY_IN_DANGER,
    PRIORITY_NORMAL,
    PRIORITY_REQUEUED,
    OnDuty,
    TokenBucket,
    Waiting,
    estimate_wait_s,
    queue_order,
)

T0 = datetime(2025, 3, 1, 18, 0, tzinfo=UTC)


def waiting(n: int, *, priority: int = PRIORITY_NORMAL, minutes_ago: int = 0) -> Waiting:
    return Waiting(uuid.UUID(int=n), priority, T0 - timedelta(minutes=minutes_ago))


def ids(order: list[Waiting]) -> list[int]:
    return [w.conversation_id.int for w in order]


# --- queue order ------------------------------------------------------------------------------


def test_the_longest_waiting_child_is_served_first_among_equals() -> None:
    queue = [waiting(1, minutes_ago=2), waiting(2, minutes_ago=9), waiting(3, minutes_ago=5)]
    assert ids(queue_order(queue)) == [2, 3, 1]


def test_a_child_in_danger_is_served_before_everyone_who_waited_longer() -> None:
    queue = [
        waiting(1, minutes_ago=30),
        waiting(2, priority=PRIORITY_IN_DANGER, minutes_ago=0),
        waiting(3, minutes_ago=20),
    ]
    assert ids(queue_order(queue)) == [2, 1, 3]


def test_a_requeued_chat_comes_after_children_in_danger_and_before_everyone_else() -> None:
    queue = [
        waiting(1, minutes_ago=60),
        waiting(2, priority=PRIORITY_REQUEUED, minutes_ago=1),
        waiting(3, priority=PRIORITY_IN_DANGER, minutes_ago=0),
        waiting(4, priority=PRIORITY_IN_DANGER, minutes_ago=3),
    ]
    assert ids(queue_order(queue)) == [4, 3, 2, 1]


def test_exact_ties_are_broken_by_id_whatever_order_they_arrive_in() -> None:
    tied = [waiting(n, minutes_ago=4) for n in (3, 1, 2)]
    for arrival in itertools.permutations(tied):
        assert ids(queue_order(arrival)) == [1, 2, 3]


def test_queue_order_takes_any_iterable_and_returns_a_new_list() -> None:
    assert queue_order([]) == []
    queue = [waiting(1, minutes_ago=1), waiting(2, minutes_ago=2)]
    ordered = queue_order(w for w in queue)
    assert ids(ordered) == [2, 1]
    assert ids(queue) == [1, 2]


def test_priorities_rank_in_danger_above_requeued_above_normal() -> None:
    assert PRIORITY_IN_DANGER > PRIORITY_REQUEUED > PRIORITY_NORMAL


@pytest.mark.parametrize(
    ("in_danger", "priority"),
    [(True, PRIORITY_IN_DANGER), (False, PRIORITY_NORMAL), (None, PRIORITY_NORMAL)],
)
def test_only_a_child_who_says_they_are_in_danger_starts_with_priority(
    in_danger: bool | None, priority: int
) -> None:
    assert switchboard.initial_priority(in_danger=in_danger) == priority


# --- capacity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "load", "expected"),
    [(3, 0, True), (3, 2, True), (3, 3, False), (3, 4, False), (1, 0, True), (0, 0, False)],
)
def test_a_counsellor_has_capacity_only_while_under_their_maximum(
    capacity: int, load: int, expected: bool
) -> None:
    assert switchboard.has_capacity(capacity=capacity, load=load) is expected


@pytest.mark.parametrize(("capacity", "load", "free"), [(3, 0, 3), (3, 2, 1), (3, 3, 0), (2, 5, 0)])
def test_free_slots_never_go_below_zero(capacity: int, load: int, free: int) -> None:
    assert OnDuty(capacity=capacity, load=load).free == free


# --- the wait estimate ----------------------------------------------------------------------


def test_with_nobody_on_duty_the_estimate_is_an_honest_none() -> None:
    assert estimate_wait_s(1, [], 900) is None
    assert estimate_wait_s(5, [], 900) is None


def test_counsellors_with_no_capacity_count_as_nobody_on_duty() -> None:
    assert estimate_wait_s(1, [OnDuty(capacity=0, load=0)], 900) is None


def test_a_child_who_fits_a_free_slot_is_promised_the_minimum_not_zero() -> None:
    on_duty = [OnDuty(capacity=3, load=1), OnDuty(capacity=2, load=1)]  # three free slots
    for position in (1, 2, 3):
        assert estimate_wait_s(position, on_duty, 900) == MIN_ESTIMATE_S
    assert estimate_wait_s(4, on_duty, 900) == 180  # 1 slot * 900 s / 5 = 180 s


def test_beyond_the_free_slots_a_slot_frees_every_handle_time_over_capacity() -> None:
    full = [OnDuty(capacity=3, load=3)]  # one slot every 900 / 3 = 300 s
    assert [estimate_wait_s(p, full, 900) for p in (1, 2, 3)] == [300, 600, 900]


@pytest.mark.parametrize(
    ("position", "capacity", "handle_time_s", "expected"),
    [
        (1, 4, 900, 240),  # 225 s -> 4 minutes
        (1, 100, 60, 60),  # 0.6 s -> 1 minute
        (2, 3, 100, 120),  # 66.7 s -> 2 minutes
        (1, 1, 60, 60),  # exactly 1 minute stays 1 minute
        (1, 1, 60.5, 120),  # a fraction over rounds up
    ],
)
def test_the_estimate_rounds_up_to_whole_minutes(
    position: int, capacity: int, handle_time_s: float, expected: int
) -> None:
    on_duty = [OnDuty(capacity=capacity, load=capacity)]
    assert estimate_wait_s(position, on_duty, handle_time_s) == expected


def test_the_estimate_never_falls_below_the_minimum() -> None:
    assert estimate_wait_s(3, [OnDuty(capacity=2, load=2)], 0) == MIN_ESTIMATE_S


def test_the_estimate_never_shrinks_further_back_in_the_queue() -> None:
    on_duty = [OnDuty(capacity=3, load=2), OnDuty(capacity=4, load=4)]
    estimates = [estimate_wait_s(p, on_duty, 700) for p in range(1, 40)]
    known = [e for e in estimates if e is not None]
    assert len(known) == len(estimates)
    assert known == sorted(known)


@pytest.mark.parametrize("position", [0, -1])
def test_a_position_below_one_is_a_programming_error(position: int) -> None:
    with pytest.raises(ValueError, match=f"position must be 1 or more, not {position}"):
        estimate_wait_s(position, [OnDuty(capacity=1, load=0)], 900)


# --- the token bucket -------------------------------------------------------------------------


def test_a_full_bucket_allows_a_burst_then_refuses() -> None:
    bucket = TokenBucket.full(rate=3, burst=10, now=100.0)
    assert [bucket.allow(100.0) for _ in range(11)] == [True] * 10 + [False]


def test_the_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket.full(rate=3, burst=10, now=0.0)
    for _ in range(10):
        bucket.allow(0.0)
    assert [bucket.allow(1.0) for _ in range(4)] == [True, True, True, False]
    assert [bucket.allow(2.0) for _ in range(4)] == [True, True, True, False]


def test_a_partial_refill_is_kept_across_a_refusal() -> None:
    bucket = TokenBucket.full(rate=2, burst=1, now=0.0)
    assert bucket.allow(0.0) is True
    assert bucket.allow(0.25) is False  # half a token
    assert bucket.allow(0.5) is True  # the other half arrives


def test_a_long_pause_refills_no_more_than_the_burst() -> None:
    bucket = TokenBucket.full(rate=20, burst=60, now=0.0)
    for _ in range(60):
        bucket.allow(0.0)
    allowed = sum(bucket.allow(3600.0) for _ in range(100))
    assert allowed == 60
