"""Staff passwords: argon2id hashes, rehashed when the parameters change, and a policy
that refuses short and common passwords.

The parameters are RFC 9106's second recommended argon2id profile (t=3, m=64 MiB,
p=4): about 50-100 ms on a server core, costly to guess offline at scale. Raising them
here is enough: each account's hash is upgraded at its next successful login.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from chat_server.errors import Refused

MIN_LENGTH = 10
MAX_LENGTH = 256
COMMON_FILE = Path(__file__).resolve().parent.parent / "db" / "data" / "common_passwords.v1.txt"

HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4, type=Type.ID)
# Verified against when the username is unknown, so both failures take the same time.
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, password)


async def verify(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash (unknown user) the same work is done."""
    if len(password) > MAX_LENGTH:
        password = password[:MAX_LENGTH]  # still costs a full verification
    try:
        return await asyncio.to_thread(HASHER.verify, password_hash or _DUMMY_HASH, password) and (
            password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def check(password: str, *, username: str = "", display_name: str = "") -> None:
    """Refuse a new password that is short, long beyond reason, or easy to guess."""
    if len(password) < MIN_LENGTH:
        raise Refused(
            "bad_request",
            f"the password must have at least {MIN_LENGTH} characters",
            field="password",
        )
    if len(password) > MAX_LENGTH:
        raise Refused(
            "bad_request",
            f"the password may have at most {MAX_LENGTH} characters",
            field="password",
        )
    if is_common(password) or _is_personal(password, username, display_name):
        raise Refused(
            "bad_request",
            "this password is too easy to guess; choose a longer phrase of unrelated words",
            field="password",
        )


def is_common(password: str) -> bool:
    """In the list as typed, or once the usual decorations are stripped: case, and digits
    and symbols at the ends ("Password2024!"); or made of one or two characters only."""
    common = common_passwords()
    lowered = password.lower()
    core = _DECORATION.sub("", lowered)
    return lowered in common or core in common or len(set(lowered)) <= 2


def _is_personal(password: str, username: str, display_name: str) -> bool:
    lowered = _DECORATION.sub("", password.lower())
    names = {n.lower() for n in (username, display_name, *display_name.split()) if len(n) >= 3}
    return any(lowered == n or lowered == n * 2 for n in names)


_DECORATION = re.compile(r"^[\W\d_]+|[\W\d_]+$")
