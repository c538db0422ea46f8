"""The metrics a node exposes: its own registry, the queue from the database, errors."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from starlette.requests import Request

from chat_server.metrics import Metrics, metrics_endpoint
from db.engine import create_engine, session_factory
from db.models import Conversation, utcnow
from tests.conftest import LiveServer


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


class FakeBroker:
    def __init__(self) -> None:
        self.errors = {"publish": 0}


async def test_each_node_counts_on_its_own_registry(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        db = session_factory(engine)
        broker = FakeBroker()
        one = Metrics(engine=engine, db=db, broker=broker)
        two = Metrics(engine=engine, db=object(), broker=object())  # type: ignore[arg-type]
        with one.connection("child"), one.connection("child"), one.connection("staff"):
            during = scrape(one)
        one.acked("child", 0.004, duplicate=False)
        one.acked("child", 0.003, duplicate=True)  # a repeat is answered, not stored
        one.acked("counsellor", 0.2, duplicate=False)
        broker.errors["publish"] += 2

        after = scrape(one)
        assert during[("alo116_connections", (("kind", "child"),))] == 2
        assert during[("alo116_connections", (("kind", "staff"),))] == 1
        assert after[("alo116_connections", (("kind", "child"),))] == 0
        assert after[("alo116_messages_total", (("sender", "child"),))] == 1
        assert after[("alo116_messages_total", (("sender", "counsellor"),))] == 1
        child = (("le", "0.005"), ("sender", "child"))
        assert after[("alo116_ack_latency_seconds_bucket", child)] == 2
        assert after[("alo116_broker_errors_total", (("operation", "publish"),))] == 2
        assert scrape(two)[("alo116_messages_total", (("sender", "child"),))] == 0
    finally:
        await engine.dispose()


async def test_queue_length_and_longest_wait_come_from_the_database(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        db = session_factory(engine)
        metrics = Metrics(engine=engine, db=db, broker=object())
        async with db() as session, session.begin():
            for minutes in (1, 5):
                at = utcnow() - timedelta(minutes=minutes)
                session.add(
                    Conversation(child_token_hash=uuid.uuid4().hex, created_at=at, queued_at=at)
                )
            session.add(Conversation(child_token_hash=uuid.uuid4().hex, status="ended"))
        response = await metrics_endpoint(_request(metrics))
        assert response.media_type is not None and response.media_type.startswith("text/plain")
        values = scrape(metrics)
        assert values[("alo116_queue_length", ())] == 2
        assert 299 <= values[("alo116_queue_longest_wait_seconds", ())] < 320
    finally:
        await engine.dispose()


async def test_database_errors_are_counted(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        metrics = Metrics(engine=engine, db=session_factory(engine), broker=object())
        async with engine.connect() as connection:
            with pytest.raises(Exception, match="no_such_table"):
                await connection.execute(text("SELECT * FROM no_such_table"))
        assert scrape(metrics)[("alo116_database_errors_total", ())] == 1
    finally:
        await engine.dispose()


def _request(metrics: Metrics) -> Request:
    services: Any = type("Services", (), {"metrics": metrics})()
    state: dict[str, Any] = {"services": services}
    return Request(
        {"type": "http", "method": "GET", "path": "/metrics", "headers": [], "state": state}
    )


async def test_the_group_commit_writer_reports_its_batches(live: LiveServer) -> None:
    child = await live.child()
    await child.send(type="start")
    await child.expect("state", status="queued")
    for k in range(3):
        await child.send(type="send", client_id=f"c{k}", body=f"message {k}")
    for k in range(3):
        await child.expect("ack", client_id=f"c{k}")
    async with httpx.AsyncClient(base_url=live.url) as http:
        scraped = (await http.get("/metrics")).text
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
    }
    assert values[("alo116_message_batch_size_sum", ())] == 3
    assert 1 <= values[("alo116_message_batch_size_count", ())] <= 3
