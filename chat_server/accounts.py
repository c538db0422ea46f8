"""Staff accounts, argon2id passwords and revocable server-side sessions."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat_server import audit
from chat_server.errors import Refused
from chat_server.settings import Settings
from db.models import StaffSession, StaffUser, utcnow

SESSION_COOKIE = "alo116_session"
ROLES = ("counsellor", "supervisor", "admin")
SUPERVISING_ROLES = ("supervisor", "admin")
MIN_PASSWORD_LENGTH = 10

# argon2-cffi's defaults are RFC 9106's low-memory argon2id profile (t=3, m=64 MiB, p=4).
_hasher = PasswordHasher()
# Verified against when the username is unknown, so both failures take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class StaffIdentity:
    """Who is on the other end of a staff request, as the edges need it."""

    id: uuid.UUID
    username: str
    name: str
    role: str
    max_chats: int

    @property
    def supervises(self) -> bool:
        return self.role in SUPERVISING_ROLES

    @classmethod
    def of(cls, user: StaffUser) -> StaffIdentity:
        return cls(user.id, user.username, user.display_name, user.role, user.max_chats)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def _verify(password_hash: str, password: str) -> bool:
    try:
        return await asyncio.to_thread(_hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Refused(
            "bad_request", f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
        )


async def create_user(
    db: async_sessionmaker[AsyncSession],
    *,
    username: str,
    password: str,
    role: str,
    display_name: str | None = None,
    max_chats: int = 3,
) -> StaffIdentity:
    if role not in ROLES:
        raise Refused("bad_request", f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not 1 <= max_chats <= 20:
        raise Refused("bad_request", f"max chats must be 1 to 20, not {max_chats!r}")
    check_new_password(password)
    user = StaffUser(
        username=username.strip().lower(),
        display_name=(display_name or username).strip(),
        role=role,
        password_hash=await hash_password(password),
        max_chats=max_chats,
    )
    try:
        async with db() as session, session.begin():
            session.add(user)
            audit.record(session, action="user.create", target=f"user:{user.id}", role=role)
    except IntegrityError:
        raise Refused("conflict", f"the username {user.username!r} is taken") from None
    return StaffIdentity.of(user)


async def log_in(
    db: async_sessionmaker[AsyncSession], settings: Settings, *, username: str, password: str
) -> tuple[StaffIdentity, str] | None:
    """A new session token for valid credentials; None whatever was wrong."""
    async with db() as session:
        user = await _user_by_name(session, username)
    valid = await _verify(user.password_hash if user else _DUMMY_HASH, password)
    async with db() as session, session.begin():
        if user is None or not valid or not user.active:
            audit.record(
                session,
                action="auth.login_failed",
                actor_user_id=user.id if user else None,
                target=f"user:{user.id}" if user else None,
            )
            return None
        token = secrets.token_urlsafe(32)
        now = utcnow()
        session.add(
            StaffSession(
                token_hash=token_hash(token),
                user_id=user.id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(seconds=settings.session_lifetime_s),
            )
        )
        audit.record(session, action="auth.login", actor_user_id=user.id, target=f"user:{user.id}")
    return StaffIdentity.of(user), token


async def session_identity(
    db: async_sessionmaker[AsyncSession], settings: Settings, token: str | None
) -> StaffIdentity | None:
    """The staff member behind a session cookie, if the session is alive."""
    if not token or len(token) > 128:
        return None
    now = utcnow()
    async with db() as session:
        row = (
            await session.execute(
                select(StaffSession, StaffUser)
                .join(StaffUser, StaffUser.id == StaffSession.user_id)
                .where(StaffSession.token_hash == token_hash(token))
            )
        ).first()
    if row is None:
        return None
    staff_session, user = row
    idle_limit = staff_session.last_seen_at + timedelta(seconds=settings.session_idle_s)
    if (
        staff_session.revoked_at is not None
        or staff_session.expires_at <= now
        or idle_limit <= now
        or not user.active
    ):
        return None
    if now - staff_session.last_seen_at > timedelta(seconds=60):
        async with db() as session, session.begin():
            await session.execute(
                update(StaffSession)
                .where(StaffSession.id == staff_session.id)
                .values(last_seen_at=now)
            )
    return StaffIdentity.of(user)


async def log_out(db: async_sessionmaker[AsyncSession], token: str | None) -> None:
    if not token:
        return
    async with db() as session, session.begin():
        result = await session.execute(
            update(StaffSession)
            .where(StaffSession.token_hash == token_hash(token), StaffSession.revoked_at.is_(None))  # type: ignore[union-attr]
            .values(revoked_at=utcnow())
            .returning(StaffSession.user_id)
        )
        user_id = result.scalar_one_or_none()
        if user_id is not None:
            audit.record(session, action="auth.logout", actor_user_id=user_id)


async def touch(
    db: async_sessionmaker[AsyncSession], user_ids: set[uuid.UUID], at: datetime
) -> None:
    if user_ids:
        async with db() as session, session.begin():
            await session.execute(
                update(StaffUser).where(StaffUser.id.in_(user_ids)).values(last_seen_at=at)  # type: ignore[attr-defined]
            )


async def _user_by_name(session: AsyncSession, username: str) -> StaffUser | None:
    result = await session.execute(
        select(StaffUser).where(StaffUser.username == username.strip().lower())
    )
    return result.scalar_one_or_none()


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
        user = await _user_by_name(session, username)
        if user is not None:
            user.password_hash = await hash_password(password)
            user.active = True
            return
    await create_user(
        db, username=username, password=password, role=role, display_name=display_name
    )
