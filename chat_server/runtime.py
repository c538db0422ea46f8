"""The services one node runs, built from settings and torn down in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from chat_server.brokers import Broker
from chat_server.brokers.memory import MemoryBroker
from chat_server.conversations import Conversations
from chat_server.floor import Floor
from chat_server.hub import Hub
from chat_server.metrics import Metrics
from chat_server.ratelimit import Limits
from chat_server.return_codes import GuessLimiter
from chat_server.risk_terms import DEFAULT_TERMS, RiskTerms
from chat_server.settings import Settings
from chat_server.supervision import Supervision
from chat_server.transfers import Transfers
from db.engine import create_engine, session_factory

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    hub: Hub
    conversations: Conversations
    floor: Floor
    transfers: Transfers
    supervision: Supervision
    metrics: Metrics
    # Wrong return codes per address: this node's memory only, never stored.
    guesses: GuessLimiter
    # In-memory rate limits of this node (new chats per address, staff API writes,
    # failed logins per address); addresses are never stored.
    limits: Limits
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def check_broker(self) -> None:
        await self.hub.broker.ping()

    async def check_database(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))


def make_broker(settings: Settings) -> Broker:
    if settings.redis_url:
        from chat_server.brokers.redis import RedisBroker

        return RedisBroker(settings.redis_url)
    return MemoryBroker()


async def start_services(settings: Settings, *, sweeps: bool = True) -> Services:
    engine = create_engine(settings.database_url)
    db = session_factory(engine)
    hub = Hub(make_broker(settings))
    terms_file = Path(settings.risk_terms_file) if settings.risk_terms_file else DEFAULT_TERMS
    conversations = Conversations(
        db, hub, secret=settings.secret_key, risk_terms=RiskTerms.from_file(terms_file)
    )
    transfers = Transfers(db, hub, conversations)
    supervision = Supervision(db, hub, conversations, settings)
    floor = Floor(db, hub, conversations, settings, transfers, supervision)
    await hub.start()
    conversations.messages.start()
    guesses = GuessLimiter(
        attempts=settings.return_code_attempts, window_s=settings.return_code_window_s
    )
    metrics = Metrics(engine=engine, db=db, broker=hub.broker)
    conversations.messages.batch_sizes = metrics.message_batches.observe

    services = Services(
        settings,
        engine,
        db,
        hub,
        conversations,
        floor,
        transfers,
        supervision,
        metrics,
        guesses,
        limits=Limits.of(settings),
    )
    if sweeps:
        services.tasks.append(asyncio.create_task(floor.run_sweeps(), name="sweeps"))
    return services


async def stop_services(services: Services) -> None:
    for task in services.tasks:
        task.cancel()
    for task in services.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # What senders handed in is stored (and they are answered) before anything closes.
    await _store_what_is_left(services)
    await services.hub.broker.close()
    await services.engine.dispose()


async def _store_what_is_left(services: Services, timeout_s: float = 10.0) -> None:
    try:
        await asyncio.wait_for(services.conversations.messages.close(), timeout_s)
    except TimeoutError:
        log.warning("messages still being stored after %.0f s; giving up", timeout_s)


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.state.services
    return services


def origin_allowed(connection: HTTPConnection, services: Services) -> bool:
    """Browsers always send Origin; it must be this site or a configured helpline origin.

    Tools without an Origin header (not browsers) cannot carry a victim's cookies.
    """
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    origin = origin.rstrip("/")
    host = connection.headers.get("host", "")
    own = {f"http://{host}", f"https://{host}", services.settings.public_url.rstrip("/")}
    return origin in own or origin in services.settings.allowed_origins
