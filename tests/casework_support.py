"""Small helpers for the casework tests: an HTTP client per staff member, a chat taken by
a counsellor through the real sockets, and rows seeded straight into the database."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx

from chat_server.accounts import SESSION_COOKIE, StaffIdentity, token_hash
from db.engine import create_engine, session_factory
from db.models import StaffSession, StaffUser, utcnow
from tests.clients import Client, connect_staff
from tests.conftest import LiveServer


@asynccontextmanager
async def http(live: LiveServer, cookie: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    cookies = {SESSION_COOKIE: cookie} if cookie else {}
    async with httpx.AsyncClient(base_url=live.url, cookies=cookies, timeout=10) as client:
        yield client


async def quick_staff(
    live: LiveServer, role: str, name: str | None = None
) -> tuple[StaffIdentity, str]:
    """A staff member with a live session, written straight to the database: the login
    itself is tested elsewhere, and argon2 costs half a second per account."""
    username = f"{role[:4]}{secrets.token_hex(4)}"
    user = StaffUser(
        username=username, display_name=name or username.title(), role=role, password_hash="!"
    )
    token = secrets.token_urlsafe(32)
    now = utcnow()
    async with database(live) as db, db() as session, session.begin():
        session.add(user)
        await session.flush()
        session.add(
            StaffSession(
                token_hash=token_hash(token),
                user_id=user.id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
    return StaffIdentity.of(user), token


async def staff_http(
    live: LiveServer, role: str, stack: Any, name: str | None = None
) -> tuple[StaffIdentity, httpx.AsyncClient, str]:
    """A new staff member of `role`, logged in: identity, client and session cookie."""
    identity, cookie = await quick_staff(live, role, name)
    client = await stack.enter_async_context(http(live, cookie))
    return identity, client, cookie


async def on_duty(live: LiveServer, role: str = "counsellor", name: str | None = None) -> Client:
    """A staff member connected to /ws/staff and available to take chats."""
    identity, cookie = await quick_staff(live, role, name)
    client = await connect_staff(live.ws_url, cookie)
    client.identity, client.cookie = identity, cookie
    live.clients.append(client)
    await client.expect("snapshot")
    await client.send(type="status", value="available")
    await client.expect("me", status="available")
    return client


async def chat(
    live: LiveServer, counsellor: Client, pre_chat: dict[str, Any] | None = None
) -> tuple[Client, str]:
    """A child starts a chat and `counsellor` takes it: the child and the conversation id."""
    child = await live.child(lang="sq")
    await child.send(type="start", **({"pre_chat": pre_chat} if pre_chat else {}))
    await child.expect("state", status="queued")
    await counsellor.send(type="take")
    assigned = await counsellor.expect("assigned")
    return child, str(assigned["conversation_id"])


@asynccontextmanager
async def database(live: LiveServer) -> AsyncIterator[Any]:
    engine = create_engine(live.settings.database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)
