"""What one node tells Prometheus: connections, the queue, messages, ack latency, errors.

Each app builds its own registry, so two nodes in one test process never share a number
and nothing is registered at import time. Numbers only: no ids, no names, no text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import event, func, select
from starlette.requests import Request
from starlette.responses import Response

from db.models import Conversation, utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import ExceptionContext
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

# Around the targets: p99 of 20 ms at 1,000 msg/s and of 100 ms at 3,000 msg/s.
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
KINDS = ("child", "staff")


class Metrics:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        db: async_sessionmaker[AsyncSession],
        broker: object,
    ) -> None:
        self._db = db
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "alo116_connections", "Open WebSocket connections", ["kind"], registry=r
        )
        for kind in KINDS:
            self.connections.labels(kind)
        self.queue_length = Gauge(
            "alo116_queue_length", "Children waiting for a counsellor", registry=r
        )
        self.longest_wait = Gauge(
            "alo116_queue_longest_wait_seconds",
            "How long the child who has waited longest has been waiting",
            registry=r,
        )
        self.messages = Counter(
            "alo116_messages",
            "Messages stored (repeats of a client_id excluded)",
            ["sender"],
            registry=r,
        )
        for sender in ("child", "counsellor"):
            self.messages.labels(sender)
        self.ack_latency = Histogram(
            "alo116_ack_latency_seconds",
            "From a send frame being read to its ack being queued for the sender",
            ["sender"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.message_batches = Histogram(
            "alo116_message_batch_size",
            "Messages stored per transaction by the group-commit writer",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.database_errors = Counter(
            "alo116_database_errors",
            "Database statements or connections that failed",
            registry=r,
        )
        # Every failed statement or connection of this node's engine, wherever it was.
        event.listen(engine.sync_engine, "handle_error", self._on_database_error)
        # Brokers that can fail keep their own counts (`errors`); read at scrape time.
        counts = getattr(broker, "errors", None)
        r.register(_BrokerErrors(counts if isinstance(counts, dict) else {}))

    @contextlib.contextmanager
    def connection(self, kind: str) -> Iterator[None]:
        """Around the life of one socket: counts it while it is open."""
        gauge = self.connections.labels(kind)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def acked(self, sender: str, seconds: float, *, duplicate: bool) -> None:
        self.ack_latency.labels(sender).observe(seconds)
        if not duplicate:
            self.messages.labels(sender).inc()

    async def refresh(self) -> None:
        """The queue as the database has it: the same number from every node."""
        async with self._db() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(Conversation.queued_at)).where(
                        Conversation.status == "queued"  # type: ignore[arg-type]
                    )
                )
            ).one()
        self.queue_length.set(count)
        self.longest_wait.set(_age(oldest))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _on_database_error(self, _context: ExceptionContext) -> None:
        self.database_errors.inc()


class _BrokerErrors(Collector):
    def __init__(self, counts: dict[str, int]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "alo116_broker_errors",
            "Broker operations that failed (publishes, lost subscriber connections)",
            labels=["operation"],
        )
        for operation, count in sorted(self._counts.items()):
            family.add_metric([operation], count)
        yield family

    def describe(self) -> Iterable[Metric]:
        return self.collect()


def _age(since: datetime | None) -> float:
    if since is None:
        return 0.0
    return max(0.0, (utcnow() - since).total_seconds())


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics. Serve it on loopback or the private network only (see deployment)."""
    metrics: Metrics = request.state.services.metrics
    with contextlib.suppress(Exception):
        # A database that is down still leaves the error counters worth scraping.
        await metrics.refresh()
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
