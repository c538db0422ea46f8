"""Logging in, step by step: the password (throttled per name, the same answer whatever
was wrong), then the second factor if the account has one; and setting one up.

Every failed step is audited with its reason (visible to administrators, never to the
person trying). Both steps count against the same per-name throttle.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import accounts, audit, passwords, ratelimit, two_factor
from chat_server.accounts import SessionState, StaffIdentity
from chat_server.errors import Refused
from chat_server.hub import Hub
from chat_server.settings import Settings
from db.models import StaffRecoveryCode, StaffUser, utcnow

Outcome = Literal["ok", "second_factor", "setup_second_factor", "invalid", "throttled"]


@dataclass(frozen=True, slots=True)
class LoginResult:
    outcome: Outcome
    staff: StaffIdentity | None = None
    # The new session cookie, for the three successful outcomes.
    token: str | None = None
    retry_after_s: int = 0


@dataclass(frozen=True, slots=True)
class Setup:
    """What the set-up page shows: the secret as a QR code and as text."""

    secret: str
    uri: str
    qr: str


async def password_step(
    db: async_sessionmaker[AsyncSession], settings: Settings, *, username: str, password: str
) -> LoginResult:
    key = ratelimit.login_key(settings.secret_key, username)
    now = utcnow()
    async with db() as session, session.begin():
        user = await accounts.user_by_name(session, username)
        wait = await ratelimit.login_attempt(session, settings, key, now)
        if wait:
            _failed(session, user, "throttled")
            return LoginResult("throttled", retry_after_s=wait)
    valid = await passwords.verify(user.password_hash if user else None, password)
    if user is None or not valid or not user.active:
        async with db() as session, session.begin():
            reason = (
                "unknown_user" if user is None else "wrong_password" if not valid else "inactive"
            )
            _failed(session, user, reason)
        return LoginResult("invalid")
    rehashed = (
        await passwords.hash_password(password)
        if passwords.needs_rehash(user.password_hash)
        else None
    )
    async with db() as session, session.begin():
        await ratelimit.login_succeeded(session, key)
        user = await session.get(StaffUser, user.id)
        if user is None or not user.active:
            return LoginResult("invalid")
        if rehashed is not None:
            user.password_hash = rehashed
            audit.record(session, action="auth.password_rehashed", actor_user_id=user.id)
        pending = user.totp_secret is not None
        token, row = accounts.start_session(session, settings, user, pending_second_factor=pending)
        await session.flush()
        staff = StaffIdentity.of(user, row.id)
        if pending:
            audit.record(session, action="auth.password_ok", actor_user_id=user.id)
            return LoginResult("second_factor", staff, token)
        audit.record(session, action="auth.login", actor_user_id=user.id, target=f"user:{user.id}")
        if accounts.second_factor_required(settings, user.role):
            return LoginResult("setup_second_factor", staff, token)
        return LoginResult("ok", staff, token)


async def second_factor_step(
    db: async_sessionmaker[AsyncSession], settings: Settings, state: SessionState, code: str
) -> LoginResult:
    """A TOTP code or a recovery code for a session waiting for its second factor: on
    success that half session ends and a complete one (a new cookie) replaces it."""
    key = ratelimit.login_key(settings.secret_key, state.staff.username)
    now = utcnow()
    async with db() as session, session.begin():
        user = await session.get(StaffUser, state.staff.id)
        wait = await ratelimit.login_attempt(session, settings, key, now)
        if wait or user is None:
            _failed(session, user, "throttled", step="second_factor")
            return LoginResult("throttled", retry_after_s=wait)
        how = await _use_code(session, settings, user, code)
        if how is None:
            _failed(session, user, "wrong_code", step="second_factor")
            return LoginResult("invalid")
        await ratelimit.login_succeeded(session, key)
        await accounts.end_pending(session, state.session_id)
        token, row = accounts.start_session(session, settings, user)
        await session.flush()
        audit.record(
            session,
            action="auth.login",
            actor_user_id=user.id,
            target=f"user:{user.id}",
            second_factor=how,
        )
        return LoginResult("ok", StaffIdentity.of(user, row.id), token)


async def check_password(
    db: async_sessionmaker[AsyncSession], settings: Settings, staff: StaffIdentity, password: str
) -> bool:
    """Re-check the password of a logged-in staff member (before changing it or turning
    off the second factor), throttled like a login so a left-open console cannot be
    used to guess it."""
    key = ratelimit.login_key(settings.secret_key, staff.username)
    async with db() as session, session.begin():
        wait = await ratelimit.login_attempt(session, settings, key, utcnow())
        if wait:
            raise Refused("rate_limited", f"too many failed attempts; try again in {wait} s")
        user = await session.get(StaffUser, staff.id)
    if user is None:
        return False
    valid = await passwords.verify(user.password_hash, password)
    async with db() as session, session.begin():
        if valid:
            await ratelimit.login_succeeded(session, key)
        else:
            _failed(session, user, "wrong_password", step="reauthenticate")
    return valid


def _failed(session: AsyncSession, user: StaffUser | None, reason: str, **detail: str) -> None:
    audit.record(
        session,
        action="auth.login_failed",
        actor_user_id=user.id if user else None,
        target=f"user:{user.id}" if user else None,
        reason=reason,
        **detail,
    )


async def _use_code(
    session: AsyncSession, settings: Settings, user: StaffUser, code: str
) -> str | None:
    """'totp' or 'recovery' if the code is good (and now used up), else None."""
    if user.totp_secret is None:
        return None
    if two_factor.looks_like_recovery_code(code) and not code.strip().isdigit():
        result = await session.execute(
            update(StaffRecoveryCode)
            .where(
                col(StaffRecoveryCode.user_id) == user.id,
                col(StaffRecoveryCode.code_hash)
                == two_factor.recovery_hash(settings.secret_key, code),
                col(StaffRecoveryCode.used_at).is_(None),
            )
            .values(used_at=utcnow())
            .returning(col(StaffRecoveryCode.id))
        )
        return "recovery" if result.first() is not None else None
    try:
        secret = two_factor.unseal(settings.secret_key, user.totp_secret)
    except two_factor.SecretUnreadable:
        return None
    step = two_factor.matching_step(secret, code, after_step=user.totp_last_step)
    if step is None:
        return None
    # Conditional, so two requests with the same code cannot both win.
    result = await session.execute(
        update(StaffUser)
        .where(
            col(StaffUser.id) == user.id,
            (col(StaffUser.totp_last_step).is_(None)) | (col(StaffUser.totp_last_step) < step),
        )
        .values(totp_last_step=step)
        .returning(col(StaffUser.id))
    )
    return "totp" if result.first() is not None else None


# --- setting up and managing the second factor ---------------------------------------------


async def begin_setup(
    db: async_sessionmaker[AsyncSession], settings: Settings, staff: StaffIdentity
) -> Setup:
    """A new secret offered to the staff member's app, until a first code confirms it."""
    secret = two_factor.new_secret()
    async with db() as session, session.begin():
        user = await session.get(StaffUser, staff.id)
        if user is None:
            raise Refused("not_found", "no such staff member")
        if user.totp_secret is not None:
            raise Refused("conflict", "two-step login is already on for this account")
        user.totp_pending_secret = two_factor.seal(settings.secret_key, secret)
    uri = two_factor.provisioning_uri(secret, staff.username)
    return Setup(secret, uri, two_factor.qr_data_uri(uri))


async def pending_setup(
    db: async_sessionmaker[AsyncSession], settings: Settings, staff: StaffIdentity
) -> Setup | None:
    """The secret already offered (a reload of the set-up page shows the same one)."""
    async with db() as session:
        user = await session.get(StaffUser, staff.id)
    if user is None or user.totp_pending_secret is None or user.totp_secret is not None:
        return None
    try:
        secret = two_factor.unseal(settings.secret_key, user.totp_pending_secret)
    except two_factor.SecretUnreadable:
        return None
    uri = two_factor.provisioning_uri(secret, staff.username)
    return Setup(secret, uri, two_factor.qr_data_uri(uri))


async def finish_setup(
    db: async_sessionmaker[AsyncSession], settings: Settings, staff: StaffIdentity, code: str
) -> list[str]:
    """Turn the second factor on once a code from the app matches; returns the recovery
    codes, shown once and stored only as hashes."""
    async with db() as session, session.begin():
        user = await session.get(StaffUser, staff.id)
        if user is None or user.totp_pending_secret is None:
            raise Refused("conflict", "start the set-up again", field="code")
        secret = two_factor.unseal(settings.secret_key, user.totp_pending_secret)
        step = two_factor.matching_step(secret, code, after_step=None)
        if step is None:
            raise Refused("bad_request", "that code does not match; try the next one", field="code")
        user.totp_secret = user.totp_pending_secret
        user.totp_pending_secret = None
        user.totp_enabled_at = utcnow()
        user.totp_last_step = step
        codes = await _replace_recovery_codes(session, settings, user.id)
        audit.record(session, action="auth.2fa_enabled", actor_user_id=user.id)
    return codes


async def regenerate_recovery_codes(
    db: async_sessionmaker[AsyncSession], settings: Settings, staff: StaffIdentity, code: str
) -> list[str]:
    await _verify_code(db, settings, staff, code)
    async with db() as session, session.begin():
        codes = await _replace_recovery_codes(session, settings, staff.id)
        audit.record(session, action="auth.2fa_recovery_codes", actor_user_id=staff.id)
    return codes


async def turn_off(
    db: async_sessionmaker[AsyncSession],
    hub: Hub,
    settings: Settings,
    staff: StaffIdentity,
    code: str,
) -> None:
    """Turn the second factor off (not where the role requires it); other sessions end."""
    if accounts.second_factor_required(settings, staff.role):
        raise Refused("forbidden", "two-step login is required for your role")
    await _verify_code(db, settings, staff, code)
    async with db() as session, session.begin():
        await session.execute(
            update(StaffUser)
            .where(col(StaffUser.id) == staff.id)
            .values(totp_secret=None, totp_pending_secret=None, totp_enabled_at=None)
        )
        await session.execute(
            delete(StaffRecoveryCode).where(col(StaffRecoveryCode.user_id) == staff.id)
        )
        ended = await accounts.revoke_others(session, staff.id, keep=staff.session_id)
        audit.record(session, action="auth.2fa_disabled", actor_user_id=staff.id)
    await accounts.announce_ended(hub, ended)


async def recovery_codes_left(db: async_sessionmaker[AsyncSession], user_id: uuid.UUID) -> int:
    async with db() as session:
        count = await session.execute(
            select(func.count())
            .select_from(StaffRecoveryCode)
            .where(
                col(StaffRecoveryCode.user_id) == user_id, col(StaffRecoveryCode.used_at).is_(None)
            )
        )
        return int(count.scalar_one())


async def _verify_code(
    db: async_sessionmaker[AsyncSession], settings: Settings, staff: StaffIdentity, code: str
) -> None:
    """A fresh code before changing the second factor, throttled like a login."""
    key = ratelimit.login_key(settings.secret_key, staff.username)
    async with db() as session, session.begin():
        wait = await ratelimit.login_attempt(session, settings, key, utcnow())
        if wait:
            raise Refused("rate_limited", f"too many failed attempts; try again in {wait} s")
        user = await session.get(StaffUser, staff.id)
        if user is None or user.totp_secret is None:
            raise Refused("conflict", "two-step login is not on for this account")
        good = await _use_code(session, settings, user, code) is not None
        if good:
            await ratelimit.login_succeeded(session, key)
        else:
            _failed(session, user, "wrong_code", step="reauthenticate")
    if not good:
        raise Refused("bad_request", "that code does not match", field="code")


async def _replace_recovery_codes(
    session: AsyncSession, settings: Settings, user_id: uuid.UUID
) -> list[str]:
    await session.execute(
        delete(StaffRecoveryCode).where(col(StaffRecoveryCode.user_id) == user_id)
    )
    codes = two_factor.new_recovery_codes()
    for code in codes:
        session.add(
            StaffRecoveryCode(
                user_id=user_id, code_hash=two_factor.recovery_hash(settings.secret_key, code)
            )
        )
    return codes
