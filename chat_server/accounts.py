"""Staff accounts and revocable server-side sessions.

A session is a random cookie whose SHA-256 alone is stored. It ends at its absolute
lifetime, after an idle time, at logout, and when its owner logs out everywhere,
changes password or is deactivated. Ending a session also closes the staff sockets
opened with it, on every node: they follow the session's channel on the hub.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import audit, passwords
from chat_server.brokers import Event
from chat_server.errors import Refused
from chat_server.hub import Hub
from chat_server.settings import Settings
from db.models import StaffSession, StaffUser, utcnow

log = logging.getLogger(__name__)

SESSION_COOKIE = "alo116_session"
ROLES = ("counsellor", "supervisor", "admin")
SUPERVISING_ROLES = ("supervisor", "admin")
MIN_PASSWORD_LENGTH = passwords.MIN_LENGTH
# Published on a session's channel when it ends; reaches no client (`_to`), the staff
# socket's hub hook closes the connection with 4401.
SESSION_ENDED = "session_ended"
# How often a session's last use is written while it is in use.
_TOUCH_EVERY = timedelta(seconds=60)

Step = Literal["ok", "second_factor", "setup_second_factor"]


@dataclass(frozen=True, slots=True)
class StaffIdentity:
    """Who is on the other end of a staff request, as the edges need it."""

    id: uuid.UUID
    username: str
    name: str
    role: str
    max_chats: int
    # The session this identity came from, if any (to close its sockets when it ends).
    session_id: uuid.UUID | None = None

    @property
    def supervises(self) -> bool:
        return self.role in SUPERVISING_ROLES

    @classmethod
    def of(cls, user: StaffUser, session_id: uuid.UUID | None = None) -> StaffIdentity:
        return cls(user.id, user.username, user.display_name, user.role, user.max_chats, session_id)


@dataclass(frozen=True, slots=True)
class SessionState:
    """A live session and what it opens: everything ("ok"), or only a second-factor step."""

    staff: StaffIdentity
    session_id: uuid.UUID
    step: Step
    # Whether the user has a second factor set up (for the account page).
    two_factor: bool


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_channel(session_id: uuid.UUID) -> str:
    return f"session:{session_id}"


def second_factor_required(settings: Settings, role: str) -> bool:
    return settings.two_factor_enforced and role in SUPERVISING_ROLES


async def hash_password(password: str) -> str:
    return await passwords.hash_password(password)


def check_new_password(password: str, *, username: str = "", display_name: str = "") -> None:
    passwords.check(password, username=username, display_name=display_name)


# --- users ---------------------------------------------------------------------------------


async def create_user(
    db: async_sessionmaker[AsyncSession],
    *,
    username: str,
    password: str,
    role: str,
    display_name: str | None = None,
    max_chats: int = 3,
    actor: StaffIdentity | None = None,
) -> StaffIdentity:
    if role not in ROLES:
        raise Refused("bad_request", f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not 1 <= max_chats <= 20:
        raise Refused("bad_request", f"max chats must be 1 to 20, not {max_chats!r}")
    name = username.strip().lower()
    if not 1 <= len(name) <= 64:
        raise Refused("bad_request", "a username has 1 to 64 characters")
    check_new_password(password, username=name, display_name=display_name or "")
    now = utcnow()
    user = StaffUser(
        username=name,
        display_name=(display_name or username).strip(),
        role=role,
        password_hash=await hash_password(password),
        max_chats=max_chats,
        password_changed_at=now,
    )
    try:
        async with db() as session, session.begin():
            session.add(user)
            audit.record(
                session,
                action="user.create",
                actor_user_id=actor.id if actor else None,
                target=f"user:{user.id}",
                role=role,
            )
    except IntegrityError:
        raise Refused("conflict", f"the username {user.username!r} is taken") from None
    return StaffIdentity.of(user)


async def user_by_name(session: AsyncSession, username: str) -> StaffUser | None:
    result = await session.execute(
        select(StaffUser).where(col(StaffUser.username) == username.strip().lower())
    )
    return result.scalar_one_or_none()


async def set_active(
    db: async_sessionmaker[AsyncSession],
    hub: Hub,
    actor: StaffIdentity,
    user_id: uuid.UUID,
    *,
    active: bool,
) -> None:
    """Deactivate (every session ends, sockets close) or reactivate a staff account."""
    if user_id == actor.id and not active:
        raise Refused("conflict", "you cannot deactivate your own account")
    async with db() as session, session.begin():
        user = await session.get(StaffUser, user_id)
        if user is None:
            raise Refused("not_found", f"no staff member {str(user_id)!r}")
        user.active = active
        user.deactivated_at = None if active else utcnow()
        if not active:
            user.status = "offline"
        ended = [] if active else await revoke_others(session, user_id)
        audit.record(
            session,
            action="user.reactivate" if active else "user.deactivate",
            actor_user_id=actor.id,
            target=f"user:{user_id}",
            sessions_ended=len(ended),
        )
    await announce_ended(hub, ended)


async def change_password(
    db: async_sessionmaker[AsyncSession],
    hub: Hub,
    staff: StaffIdentity,
    *,
    new_password: str,
) -> None:
    """Set a new password (the caller has checked the current one); every other session
    of the account ends, the one in use stays."""
    check_new_password(new_password, username=staff.username, display_name=staff.name)
    async with db() as session:
        user = await session.get(StaffUser, staff.id)
    if user is None or not user.active:
        raise Refused("forbidden", "this account is not active")
    if await passwords.verify(user.password_hash, new_password):
        raise Refused(
            "bad_request", "the new password must differ from the old one", field="password"
        )
    new_hash = await hash_password(new_password)
    async with db() as session, session.begin():
        user = await session.get(StaffUser, staff.id)
        if user is None or not user.active:
            raise Refused("forbidden", "this account is not active")
        user.password_hash = new_hash
        user.password_changed_at = utcnow()
        ended = await revoke_others(session, staff.id, keep=staff.session_id)
        audit.record(
            session,
            action="auth.password_changed",
            actor_user_id=staff.id,
            target=f"user:{staff.id}",
            sessions_ended=len(ended),
        )
    await announce_ended(hub, ended)


async def touch(
    db: async_sessionmaker[AsyncSession], user_ids: set[uuid.UUID], at: datetime
) -> None:
    if user_ids:
        async with db() as session, session.begin():
            await session.execute(
                update(StaffUser).where(col(StaffUser.id).in_(user_ids)).values(last_seen_at=at)
            )


async def set_password_or_create(
    db: async_sessionmaker[AsyncSession],
    *,
    username: str,
    password: str,
    role: str,
    display_name: str,
) -> None:
    """For the demo: the account exists afterwards with exactly this password."""
    async with db() as session, session.begin():
        user = await user_by_name(session, username)
        if user is not None:
            user.password_hash = await hash_password(password)
            user.password_changed_at = utcnow()
            user.active = True
            return
    await create_user(
        db, username=username, password=password, role=role, display_name=display_name
    )


# --- sessions ------------------------------------------------------------------------------


def start_session(
    session: AsyncSession,
    settings: Settings,
    user: StaffUser,
    *,
    pending_second_factor: bool = False,
) -> tuple[str, StaffSession]:
    """Add a new session for `user` to the transaction; returns its cookie value."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    lifetime = (
        settings.second_factor_timeout_s if pending_second_factor else settings.session_lifetime_s
    )
    row = StaffSession(
        token_hash=token_hash(token),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=lifetime),
        pending_second_factor=pending_second_factor,
    )
    session.add(row)
    return token, row


def _alive(row: StaffSession, user: StaffUser, settings: Settings, now: datetime) -> bool:
    idle_limit = row.last_seen_at + timedelta(seconds=settings.session_idle_s)
    return row.revoked_at is None and row.expires_at > now and idle_limit > now and user.active


async def session_state(
    db: async_sessionmaker[AsyncSession],
    settings: Settings,
    token: str | None,
    *,
    touch_session: bool = True,
) -> SessionState | None:
    """The live session behind a cookie, and what it opens; None if it is not alive."""
    if not token or len(token) > 128:
        return None
    now = utcnow()
    async with db() as session:
        row = (
            await session.execute(
                select(StaffSession, StaffUser)
                .join(StaffUser, col(StaffUser.id) == col(StaffSession.user_id))
                .where(col(StaffSession.token_hash) == token_hash(token))
            )
        ).first()
    if row is None:
        return None
    staff_session, user = row
    if not _alive(staff_session, user, settings, now):
        return None
    if touch_session and now - staff_session.last_seen_at > _TOUCH_EVERY:
        await _touch_session(db, staff_session.id, now)
    step: Step = "ok"
    if staff_session.pending_second_factor:
        step = "second_factor"
    elif user.totp_secret is None and second_factor_required(settings, user.role):
        step = "setup_second_factor"
    return SessionState(
        StaffIdentity.of(user, staff_session.id),
        staff_session.id,
        step,
        two_factor=user.totp_secret is not None,
    )


async def session_identity(
    db: async_sessionmaker[AsyncSession], settings: Settings, token: str | None
) -> StaffIdentity | None:
    """The staff member behind a session cookie, if the session is alive and complete."""
    state = await session_state(db, settings, token)
    return state.staff if state is not None and state.step == "ok" else None


async def session_alive(
    db: async_sessionmaker[AsyncSession], settings: Settings, session_id: uuid.UUID
) -> bool:
    now = utcnow()
    async with db() as session:
        row = (
            await session.execute(
                select(StaffSession, StaffUser)
                .join(StaffUser, col(StaffUser.id) == col(StaffSession.user_id))
                .where(col(StaffSession.id) == session_id)
            )
        ).first()
    return row is not None and _alive(row[0], row[1], settings, now)


async def _touch_session(
    db: async_sessionmaker[AsyncSession], session_id: uuid.UUID, now: datetime
) -> None:
    async with db() as session, session.begin():
        await session.execute(
            update(StaffSession).where(col(StaffSession.id) == session_id).values(last_seen_at=now)
        )


async def watch_session(
    db: async_sessionmaker[AsyncSession],
    settings: Settings,
    session_id: uuid.UUID,
    on_end: Callable[[], None],
) -> None:
    """For the life of a staff socket: an open console counts as use of its session (so
    a quiet night shift is not logged out), and a session that ended without a word on
    the hub (expiry, a lost event) still closes the socket within one interval."""
    while True:
        await asyncio.sleep(settings.session_check_interval_s)
        try:
            alive = await session_alive(db, settings, session_id)
            if alive:
                await _touch_session(db, session_id, utcnow())
        except Exception:
            log.info("could not check a staff session; trying again", exc_info=True)
            continue
        if not alive:
            on_end()
            return


async def log_out(
    db: async_sessionmaker[AsyncSession], token: str | None, hub: Hub | None = None
) -> None:
    if not token:
        return
    async with db() as session, session.begin():
        result = await session.execute(
            update(StaffSession)
            .where(
                col(StaffSession.token_hash) == token_hash(token),
                col(StaffSession.revoked_at).is_(None),
            )
            .values(revoked_at=utcnow())
            .returning(col(StaffSession.id), col(StaffSession.user_id))
        )
        ended = result.first()
        if ended is not None:
            audit.record(session, action="auth.logout", actor_user_id=ended.user_id)
    if ended is not None and hub is not None:
        await announce_ended(hub, [ended.id])


async def end_pending(session: AsyncSession, session_id: uuid.UUID) -> None:
    """A second-factor step is over: its half session ends (a full one replaces it)."""
    await session.execute(
        update(StaffSession).where(col(StaffSession.id) == session_id).values(revoked_at=utcnow())
    )


async def log_out_everywhere(
    db: async_sessionmaker[AsyncSession],
    hub: Hub,
    user_id: uuid.UUID,
    *,
    actor: StaffIdentity,
) -> int:
    """End every session of a staff member (their own request, or an admin's)."""
    async with db() as session, session.begin():
        ended = await revoke_others(session, user_id)
        audit.record(
            session,
            action="auth.logout_everywhere",
            actor_user_id=actor.id,
            target=f"user:{user_id}",
            sessions_ended=len(ended),
        )
    await announce_ended(hub, ended)
    return len(ended)


async def revoke_others(
    session: AsyncSession, user_id: uuid.UUID, *, keep: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """End the user's sessions (but `keep`) in this transaction; announce them after it."""
    conditions = [col(StaffSession.user_id) == user_id, col(StaffSession.revoked_at).is_(None)]
    if keep is not None:
        conditions.append(col(StaffSession.id) != keep)
    result = await session.execute(
        update(StaffSession)
        .where(*conditions)
        .values(revoked_at=utcnow())
        .returning(col(StaffSession.id))
    )
    return list(result.scalars())


async def announce_ended(hub: Hub, session_ids: list[uuid.UUID]) -> None:
    """After commit: every node closes the sockets opened with these sessions."""
    for session_id in session_ids:
        event: Event = {"type": SESSION_ENDED, "_to": "nobody"}
        await hub.publish(session_channel(session_id), event)


async def sessions_of(
    db: async_sessionmaker[AsyncSession], settings: Settings, user_id: uuid.UUID
) -> list[StaffSession]:
    """The live sessions of a staff member, newest first (for the account page)."""
    now = utcnow()
    async with db() as session:
        rows = (
            await session.execute(
                select(StaffSession, StaffUser)
                .join(StaffUser, col(StaffUser.id) == col(StaffSession.user_id))
                .where(col(StaffSession.user_id) == user_id, col(StaffSession.revoked_at).is_(None))
                .order_by(col(StaffSession.created_at).desc())
            )
        ).all()
    return [row for row, user in rows if _alive(row, user, settings, now)]
