"""The server logs one JSON object per line, uvicorn's lines too, and no line holds a
message, a token, a return code, a password or a client's address."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chat_server import logs
from tests.clients import Client, connect_child, connect_staff
from tests.conftest import PASSWORD, ServerProcess, server_process

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# --- the formatter ------------------------------------------------------------------------


@pytest.fixture
def json_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger(f"tests.logs.{secrets.token_hex(3)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_line_with_time_level_logger_and_formatted_message(
    json_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_logger
    logger.warning("sweep: %d chats requeued\nsecond line", 2)
    [line] = lines(stream)
    assert line == {
        "ts": line["ts"],
        "level": "WARNING",
        "logger": logger.name,
        "msg": "sweep: 2 chats requeued\nsecond line",
    }
    assert TIMESTAMP.match(line["ts"]), line["ts"]
    assert len(stream.getvalue().splitlines()) == 1


def test_the_timestamp_is_utc_with_milliseconds() -> None:
    record = logging.makeLogRecord({"msg": "x", "created": 1_700_000_000.1239, "msecs": 123.9})
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["ts"] == "2023-11-14T22:13:20.123Z"


def test_an_exception_gives_its_type_and_traceback(
    json_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_logger
    try:
        raise LookupError("no such conversation")
    except LookupError:
        logger.exception("delivering an event failed")
    [line] = lines(stream)
    assert line["msg"] == "delivering an event failed"
    assert line["level"] == "ERROR"
    assert line["exc_type"] == "LookupError"
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert line["exc"].endswith("LookupError: no such conversation")


def test_plain_extra_fields_are_kept_and_secret_looking_ones_dropped(
    json_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_logger
    extra = {
        "channel": "conversation",
        "requeued": 3,
        "took_s": 0.25,
        "redis": True,
        "node": None,
        "body": "Më ndihmoni",
        "text": "Jam këtu",
        "Token": "t0k3n",
        "child_token": "t0k3n",
        "password": PASSWORD,
        "code": "ABCD-EFGH",
        "return_code": "ABCD-EFGH",
        "address": "203.0.113.7",
        "client-address": "203.0.113.7:51234",
        "session_cookie": "c00k1e",
        "frame": {"body": "Më ndihmoni"},  # not a plain value: never written
        "level": "FAKE",  # cannot overwrite the line's own fields
    }
    logger.info("event", extra=extra)
    [line] = lines(stream)
    assert line == {
        "ts": line["ts"],
        "level": "INFO",
        "logger": logger.name,
        "msg": "event",
        "channel": "conversation",
        "requeued": 3,
        "took_s": 0.25,
        "redis": True,
        "node": None,
    }


def test_trace_level_is_refused_because_it_logs_addresses_and_cookies() -> None:
    assert logs.check_level("INFO") == "info"
    with pytest.raises(ValueError, match="'trace'"):
        logs.logging_config("json", "trace")


# --- the real server ----------------------------------------------------------------------


def stop_and_read_log(server: ServerProcess) -> str:
    """Stop the server gracefully and return what it logged (stop() deletes the file)."""
    assert server.process is not None
    server.process.terminate()
    server.process.wait(timeout=30)
    return server.log.read_text(encoding="utf-8")


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_a_chat_leaves_json_lines_without_bodies_tokens_or_addresses(
    database_url: str, level: str
) -> None:
    child_says = f"Më ndihmoni {secrets.token_hex(6)}"
    counsellor_says = f"Jam këtu {secrets.token_hex(6)}"
    server = server_process(database_url, ALO116_LOG_LEVEL=level, ALO116_LOG_FORMAT="json")
    server.create_user("ana", "counsellor", "Ana")
    await asyncio.to_thread(server.start)
    clients: list[Client] = []
    try:
        ws_url = server.url.replace("http://", "ws://")
        async with httpx.AsyncClient(base_url=server.url) as http:
            login = await http.post("/api/login", json={"username": "ana", "password": PASSWORD})
            cookie = login.cookies["alo116_session"]
        counsellor = await connect_staff(ws_url, cookie)
        clients.append(counsellor)
        await counsellor.expect("snapshot")
        child = await connect_child(ws_url)
        clients.append(child)
        await child.send(type="start")
        await child.expect("state")
        await counsellor.send(type="take")
        cid = (await counsellor.expect("assigned"))["conversation_id"]
        await child.send(type="send", client_id="c1", body=child_says)
        await counsellor.expect("msg", body=child_says)
        await counsellor.send(
            type="send", conversation_id=cid, client_id="s1", body=counsellor_says
        )
        await child.expect("msg", body=counsellor_says)
        await child.send(type="return_code")
        code = (await child.expect("return_code"))["code"]
        client_ports = {c.connection.local_address[1] for c in clients}
        for client in clients:
            await client.close()
        logged = await asyncio.to_thread(stop_and_read_log, server)
    finally:
        server.stop()

    records = [json.loads(line) for line in logged.splitlines() if line.strip()]
    for record in records:
        assert {"ts", "level", "logger", "msg"} <= record.keys(), record
        assert TIMESTAMP.match(record["ts"]), record
    messages = [(r["logger"], r["msg"]) for r in records]
    assert any(
        name == "uvicorn.error" and msg.startswith("Uvicorn running on") for name, msg in messages
    ), messages
    # The handshake lines are there, in JSON, with the address held back.
    assert '- - "WebSocket /ws/child" [accepted]' in [msg for _, msg in messages], messages
    assert any(name == "uvicorn.error" and msg == "Shutting down" for name, msg in messages)

    for what, value in {
        "the child's message": child_says,
        "the counsellor's message": counsellor_says,
        "the child's token": child.token,
        "the return code": code,
        "the staff password": PASSWORD,
        "the session cookie": cookie,
    }.items():
        assert value and value not in logged, f"{what} is in the logs"
    # Only the server's own address may appear (in "Uvicorn running on ..."), never a client's.
    assert "127.0.0.1" not in logged.replace(server.url, ""), "a client's address is in the logs"
    for port in client_ports:
        assert f":{port}" not in logged, f"a client's port ({port}) is in the logs"
