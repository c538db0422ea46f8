"""Shared fixtures: a real database of each kind, a real server on a free port, real clients.

PostgreSQL comes from ALO116_TEST_DATABASE_URL or 127.0.0.1:5432 (database `test`, trust
auth); each run gets a fresh database of its own. Without PostgreSQL a laptop run skips
those tests loudly; with CI=true it fails instead.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import httpx
import pytest
import uvicorn
import websockets
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.engine import make_url

from chat_server import accounts
from chat_server.app import create_app
from chat_server.settings import Settings
from db.engine import create_engine, session_factory
from db.migrate import upgrade
from tests.clients import Client, connect_child, connect_staff

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_URL = os.environ.get(
    "ALO116_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
TABLES = (
    "messages",
    "audit_events",
    "staff_sessions",
    "conversations",
    "staff_users",
    "login_throttle",
)
# Every table; TRUNCATE ... CASCADE empties those that refer to these too.
PASSWORD = "correct horse battery"


REDIS_URL = os.environ.get("ALO116_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis(url: str = REDIS_URL) -> None:
    """Skip (or, in CI, fail) when the shared Redis does not answer."""

    async def ping() -> None:
        client = Redis.from_url(url, socket_connect_timeout=1)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except (RedisError, OSError) as exc:
        message = f"Redis unreachable at {url}: {exc!r}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def redis_url() -> str:
    """The shared Redis, for tests of several nodes."""
    require_redis()
    return REDIS_URL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- databases -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per run; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


def _pg_url(database: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=database).render_as_string(hide_password=False)


async def _pg_admin(sql: str) -> None:
    url = make_url(PG_ADMIN_URL)
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    name = f"alo116_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc!r}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    url = _pg_url(name)
    upgrade(url)
    yield url
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each kind: the same tests run on both."""
    if request.param == "sqlite":
        path = tmp_path / "alo116.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgres_database")
    asyncio.run(_truncate(url))
    yield url


@pytest.fixture
def pg_url(postgres_database: str) -> str:
    """An emptied PostgreSQL database, for tests of several nodes (SQLite has one)."""
    asyncio.run(_truncate(postgres_database))
    return postgres_database


async def _truncate(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    finally:
        await engine.dispose()


def test_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "demo": True,
        "secret_key": "test-secret-" + "x" * 32,
        "sweep_interval_s": 0.2,
        "heartbeat_interval_s": 0.5,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


# --- a live server in this test's event loop ---------------------------------------------


@dataclass
class LiveServer:
    url: str
    settings: Settings
    server: uvicorn.Server
    task: asyncio.Task[None]
    clients: list[Client] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    async def staff(
        self, role: str = "counsellor", *, name: str | None = None, max_chats: int = 3
    ) -> tuple[accounts.StaffIdentity, str]:
        """A new staff account; returns it with its session cookie."""
        username = f"{role[:4]}{secrets.token_hex(3)}"
        engine = create_engine(self.settings.database_url)
        try:
            staff = await accounts.create_user(
                session_factory(engine),
                username=username,
                password=PASSWORD,
                role=role,
                display_name=name or username.title(),
                max_chats=max_chats,
            )
        finally:
            await engine.dispose()
        async with httpx.AsyncClient(base_url=self.url) as http:
            answer = await http.post(
                "/api/login", json={"username": username, "password": PASSWORD}
            )
            assert answer.status_code == 200, answer.text
            cookie = answer.cookies[accounts.SESSION_COOKIE]
        return staff, cookie

    async def record(self, staff: Client, conversation_id: str, **fields: Any) -> dict[str, Any]:
        """Fill in the chat's contact record through the API, as the console does."""
        assert staff.cookie is not None
        async with httpx.AsyncClient(
            base_url=self.url, cookies={accounts.SESSION_COOKIE: staff.cookie}
        ) as http:
            answer = await http.put(
                f"/api/records/{conversation_id}",
                json={"contact_type": "counselling", **fields},
            )
            assert answer.status_code == 200, answer.text
            record: dict[str, Any] = answer.json()
            return record

    async def record_of(self, staff: Client, conversation_id: str) -> dict[str, Any]:
        assert staff.cookie is not None
        async with httpx.AsyncClient(
            base_url=self.url, cookies={accounts.SESSION_COOKIE: staff.cookie}
        ) as http:
            answer = await http.get(f"/api/records/{conversation_id}")
            assert answer.status_code == 200, answer.text
            record: dict[str, Any] = answer.json()
            return record

    async def child(self, **hello: Any) -> Client:
        client = await connect_child(self.ws_url, **hello)
        self.clients.append(client)
        return client

    async def counsellor(
        self, *, max_chats: int = 3, name: str | None = None, available: bool = True
    ) -> Client:
        staff, cookie = await self.staff("counsellor", max_chats=max_chats, name=name)
        client = await connect_staff(self.ws_url, cookie)
        client.identity = staff
        client.cookie = cookie
        self.clients.append(client)
        await client.expect("snapshot")
        if available:
            await client.send(type="status", value="available")
            await client.expect("me", status="available")
        return client

    async def taken_chat(self, name: str | None = None) -> tuple[Client, Client, str]:
        """A child who started a chat and a counsellor who took it: child, counsellor, id."""
        child = await self.child()
        await child.send(type="start")
        counsellor = await self.counsellor(name=name)
        await counsellor.send(type="take")
        cid: str = (await counsellor.expect("assigned"))["conversation_id"]
        return child, counsellor, cid

    async def ws_connection(self) -> Client:
        """A child socket that has not said hello yet."""
        client = Client(await websockets.connect(f"{self.ws_url}/ws/child", compression=None))
        self.clients.append(client)
        return client

    async def staff_client(self, cookie: str) -> Client:
        client = await connect_staff(self.ws_url, cookie)
        client.cookie = cookie
        self.clients.append(client)
        return client


async def start_server(settings: Settings) -> LiveServer:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        ws="chat_server.ws_protocol:LeanWebSocketsSansIOProtocol",
        ws_max_size=settings.max_frame_bytes,
        ws_per_message_deflate=False,
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    server, task, port = await serve_uvicorn(config)
    return LiveServer(f"http://127.0.0.1:{port}", settings, server, task)


async def serve_uvicorn(config: uvicorn.Config) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """Serve in this event loop on the port the system picked; returns once started."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port: int = server.servers[0].sockets[0].getsockname()[1]
    return server, task, port


async def stop_server(live: LiveServer) -> None:
    for client in live.clients:
        await client.close()
    live.server.should_exit = True
    await asyncio.wait_for(live.task, timeout=10)


@pytest.fixture
async def live(database_url: str) -> AsyncIterator[LiveServer]:
    server = await start_server(test_settings(database_url))
    try:
        yield server
    finally:
        await stop_server(server)


MakeLive = Callable[..., Awaitable[LiveServer]]


@pytest.fixture
async def make_live(database_url: str) -> AsyncIterator[MakeLive]:
    """Live servers with overridden settings (e.g. short grace periods)."""
    servers: list[LiveServer] = []

    async def make(**overrides: Any) -> LiveServer:
        server = await start_server(test_settings(database_url, **overrides))
        servers.append(server)
        return server

    yield make
    for server in servers:
        await stop_server(server)


# --- a server in its own process (kill -9 tests, browsers) ---------------------------------


@dataclass
class ServerProcess:
    url: str
    env: dict[str, str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chat_server.cli", "serve", "--port", str(self.port)],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()  # never leave a half-started server behind
        raise RuntimeError("server did not become healthy in 60 s")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        self.log.unlink(missing_ok=True)
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def create_user(self, username: str, role: str, name: str, password: str = PASSWORD) -> None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "chat_server.cli",
                "create-user",
                username,
                "--role",
                role,
                "--name",
                name,
            ],
            input=password.encode() + b"\n",
            env=self.env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )


def server_process(database_url: str, **env: str) -> ServerProcess:
    port = free_port()
    environment = {
        **os.environ,
        "ALO116_DATABASE_URL": database_url,
        "ALO116_SECRET_KEY": "test-secret-" + secrets.token_hex(24),
        "ALO116_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ALO116_LOG_LEVEL": "warning",
        # Outside demo mode two-step login is required for supervisors and admins; the
        # browser tests log them in with a password (two-step login has its own tests).
        "ALO116_TWO_FACTOR_REQUIRED": "false",
        # One browser site serves a whole module of chats from 127.0.0.1.
        "ALO116_NEW_CHATS_PER_ADDRESS": "100000",
        **env,
    }
    return ServerProcess(f"http://127.0.0.1:{port}", environment, port)


@pytest.fixture
def app_process(tmp_path: Path, sqlite_template: Path) -> Iterator[ServerProcess]:
    """The real `alo116 serve` on a fresh SQLite file, for browsers and crash tests."""
    path = tmp_path / "app.db"
    shutil.copy(sqlite_template, path)
    process = server_process(f"sqlite+aiosqlite:///{path}")
    process.start()
    yield process
    process.stop()


def new_id() -> str:
    return str(uuid.uuid4())
