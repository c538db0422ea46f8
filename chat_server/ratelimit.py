"""Rate limits: in memory per address or staff member, and failed logins per username.

Addresses are held in this node's memory only, never stored or logged (children's
addresses least of all). Failed logins are counted in the database per keyed hash of
the username, known or not, so every node agrees and an unknown name is throttled
exactly like a real one: the answers tell an attacker nothing about which names exist.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from chat_server.return_codes import GuessLimiter
from chat_server.settings import Settings
from chat_server.switchboard import TokenBucket
from db.models import LoginThrottle


class KeyedBuckets:
    """A token bucket per key; bounded: the least recently seen keys are forgotten."""

    def __init__(self, *, rate: float, burst: int, max_keys: int = 50_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.full(
                rate=self.rate, burst=self.burst, now=now
            )
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.allow(now)


@dataclass
class Limits:
    """This node's in-memory limits (runtime.Services.limits)."""

    # New conversations per child address (a prank flood opens many).
    new_chats: KeyedBuckets
    # JSON API writes per staff member.
    staff_writes: KeyedBuckets
    # Failed logins per address.
    login_addresses: GuessLimiter

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            new_chats=KeyedBuckets(
                rate=settings.new_chats_per_address / settings.new_chats_window_s,
                burst=settings.new_chats_per_address,
            ),
            staff_writes=KeyedBuckets(
                rate=settings.staff_writes_per_minute / 60.0, burst=settings.staff_write_burst
            ),
            login_addresses=GuessLimiter(
                attempts=settings.login_address_failures,
                window_s=settings.login_address_window_s,
            ),
        )


# --- failed logins per username --------------------------------------------------------


def login_key(secret_key: str, username: str) -> str:
    name = username.strip().lower()[:256]
    return hmac.new(secret_key.encode(), b"login:" + name.encode(), hashlib.sha256).hexdigest()


def login_wait_s(
    settings: Settings,
    *,
    failures: int,
    last_failure_at: datetime,
    locked_until: datetime | None,
    now: datetime,
) -> int:
    """Seconds before another attempt for this name is even checked: none for the first
    few failures, then a delay doubling with each one, then a lock."""
    if locked_until is not None and locked_until > now:
        return math.ceil((locked_until - now).total_seconds())
    if failures < settings.login_delay_after:
        return 0
    delay = min(settings.login_max_delay_s, 2 ** (failures - settings.login_delay_after))
    ready = last_failure_at + timedelta(seconds=delay)
    return max(0, math.ceil((ready - now).total_seconds()))


async def login_attempt(session: AsyncSession, settings: Settings, key: str, now: datetime) -> int:
    """Seconds to wait if this name may not try now; else 0, with the attempt counted
    as a failure until it succeeds (so parallel guesses cannot slip past the count).

    The row is read for update: on PostgreSQL concurrent attempts queue on it; SQLite
    serialises write transactions from their BEGIN IMMEDIATE.
    """
    row = await session.get(LoginThrottle, key, with_for_update=True)
    if row is not None:
        wait = login_wait_s(
            settings,
            failures=row.failures,
            last_failure_at=row.last_failure_at,
            locked_until=row.locked_until,
            now=now,
        )
        if wait:
            return wait
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table: Table = LoginThrottle.__table__  # type: ignore[attr-defined]
    statement = (
        insert(table)
        .values(key=key, failures=1, last_failure_at=now)
        .on_conflict_do_update(
            index_elements=[table.c.key],
            set_={"failures": table.c.failures + 1, "last_failure_at": now},
        )
        .returning(table.c.failures)
    )
    failures = int((await session.execute(statement)).scalar_one())
    if failures >= settings.login_lock_after:
        await session.execute(
            update(table)
            .where(table.c.key == key)
            .values(locked_until=now + timedelta(seconds=settings.login_lock_s))
        )
    return 0


async def login_succeeded(session: AsyncSession, key: str) -> None:
    await session.execute(delete(LoginThrottle).where(col(LoginThrottle.key) == key))


async def forget_quiet_names(session: AsyncSession, now: datetime) -> int:
    """Names with no failure for a day start afresh (called by the daily sweep)."""
    result = await session.execute(
        delete(LoginThrottle).where(
            col(LoginThrottle.last_failure_at) < now - timedelta(days=1),
            (col(LoginThrottle.locked_until).is_(None)) | (col(LoginThrottle.locked_until) < now),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
