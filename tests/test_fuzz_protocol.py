"""Property-based fuzzing of every protocol message type against a live server: frames of
each type with arbitrary JSON values (and plausible ones, to reach past validation) get
only `error` answers or well-formed frames, the connection lives, the server stays up.

The server runs in a thread with its own event loop, so hypothesis drives plain
synchronous WebSocket clients; examples are bounded to keep the run to seconds.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import typing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from websockets.sync.client import ClientConnection, connect

import tests.conftest as harness
from chat_server import protocol
from chat_server.accounts import SESSION_COOKIE
from chat_server.errors import ErrorCode
from tests.casework_support import quick_staff

ERROR_CODES = set(typing.get_args(ErrorCode))
EXAMPLES = 150  # per test: child frames, then staff frames


def message_models(union: Any) -> dict[str, type[BaseModel]]:
    models = {}
    for model in typing.get_args(union):
        (kind,) = typing.get_args(model.model_fields["type"].annotation)
        models[kind] = model
    return models


CHILD_MODELS = message_models(protocol.ChildMessage)
STAFF_MODELS = message_models(protocol.StaffMessage)


@dataclass
class FuzzServer:
    live: harness.LiveServer
    loop: asyncio.AbstractEventLoop
    counsellor_cookie: str
    supervisor_cookie: str
    plausible_ids: list[str]

    @property
    def ws_url(self) -> str:
        return self.live.ws_url


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[FuzzServer]:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    shutil.copy(sqlite_template, path)
    server_settings = harness.test_settings(
        f"sqlite+aiosqlite:///{path}",
        new_chats_per_address=1_000_000,
        return_code_attempts=1_000_000,
        staff_write_burst=1_000_000,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-server", daemon=True)
    thread.start()

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)

    live = run(harness.start_server(server_settings))
    try:
        counsellor, counsellor_cookie = run(quick_staff(live, "counsellor"))
        supervisor, supervisor_cookie = run(quick_staff(live, "supervisor"))
        ids = [str(counsellor.id), str(supervisor.id), str(uuid.uuid4())]
        # A chat of the counsellor's, so that plausible ids reach the handlers.
        with (
            staff_socket(live.ws_url, counsellor_cookie) as console,
            connect(f"{live.ws_url}/ws/child") as child,
        ):
            child.send(json.dumps({"type": "hello", "v": 1}))
            child.send(json.dumps({"type": "start"}))
            until(child, "state")
            console.send(json.dumps({"type": "status", "value": "available"}))
            console.send(json.dumps({"type": "take"}))
            ids.append(until(console, "assigned")["conversation_id"])
        yield FuzzServer(live, loop, counsellor_cookie, supervisor_cookie, ids)
    finally:
        run(harness.stop_server(live))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def staff_socket(ws_url: str, cookie: str) -> ClientConnection:
    return connect(
        f"{ws_url}/ws/staff", additional_headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}
    )


def until(connection: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        frame = json.loads(connection.recv(timeout=10))
        if frame["type"] == kind:
            return typing.cast(dict[str, Any], frame)


# --- strategies -----------------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
WORDS = [
    "sq", "en", "available", "break", "offline", "none", "low", "high", "imminent",
    "13-15", "girl", "boy", "family", "chat", "message", "violence", "fyerje", " ",
    "\u200b", "a" * 2001, "x" * 64, "x" * 65, "Përshëndetje", "<script>alert(1)</script>",
]  # fmt: skip
NUMBERS = [-1, 0, 1, 2, 5, 6, 10**6, 2**31 - 1, 2**31, 1.0, True, False]


def plausible(ids: list[str]) -> st.SearchStrategy[Any]:
    return st.sampled_from([*ids, *WORDS, *NUMBERS, {"in_danger": True}, {"age_band": "x"}])


def frames(models: dict[str, Any], ids: list[str], kinds: list[str]) -> st.SearchStrategy[str]:
    """A frame of one of `kinds`, each field absent, arbitrary or plausible; extra keys too;
    now and then not a JSON object at all."""

    @st.composite
    def frame(draw: st.DrawFn) -> str:
        if draw(st.integers(0, 30)) == 0:
            return draw(st.sampled_from(["", "{", "[]", "null", '"hello"', "1e999", "{}"]))
        kind = draw(st.sampled_from(kinds))
        value: dict[str, Any] = {"type": kind}
        for name in models[kind].model_fields:
            if name == "type" or (draw(st.booleans()) is False and name != "conversation_id"):
                continue
            # Mostly plausible values, so that many frames get past validation.
            value[name] = draw(st.one_of(JSON, plausible(ids), plausible(ids), plausible(ids)))
        if draw(st.integers(0, 4)) == 0:
            value[draw(st.text(max_size=8))] = draw(JSON)
        return json.dumps(value, allow_nan=True)

    return frame()


# --- checks ---------------------------------------------------------------------------------


def answers_then_lives(connection: ClientConnection, raw: str) -> list[dict[str, Any]]:
    """Send `raw`, then a ping: every frame until the pong must be well formed."""
    connection.send(raw)
    connection.send(json.dumps({"type": "ping"}))
    seen: list[dict[str, Any]] = []
    while True:
        frame = json.loads(connection.recv(timeout=10))
        assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
        assert not frame["type"].startswith("_"), f"an internal event leaked: {frame}"
        if frame["type"] == "error":
            assert frame["code"] in ERROR_CODES and isinstance(frame["message"], str), frame
            if frame["code"] == "rate_limited" and frame.get("in_reply_to") == "ping":
                connection.send(json.dumps({"type": "ping"}))
        seen.append(frame)
        if frame["type"] == "pong":
            return seen


def healthy(server: FuzzServer) -> None:
    assert httpx.get(f"{server.live.url}/healthz", timeout=10).status_code == 200


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(data=st.data())
def test_every_child_message_type_with_any_values(fuzz_server: FuzzServer, data: Any) -> None:
    raw = data.draw(frames(CHILD_MODELS, fuzz_server.plausible_ids, list(CHILD_MODELS)))
    with connect(f"{fuzz_server.ws_url}/ws/child") as child:
        if not raw.startswith('{"type": "hello"'):
            child.send(json.dumps({"type": "hello", "v": 1, "lang": "sq"}))
            until(child, "welcome")
            if data.draw(st.booleans()):
                child.send(json.dumps({"type": "start"}))
                until(child, "state")
        answers_then_lives(child, raw)


@FUZZ
@given(data=st.data())
def test_every_staff_message_type_with_any_values(fuzz_server: FuzzServer, data: Any) -> None:
    cookie = data.draw(
        st.sampled_from([fuzz_server.counsellor_cookie, fuzz_server.supervisor_cookie])
    )
    raw = data.draw(frames(STAFF_MODELS, fuzz_server.plausible_ids, list(STAFF_MODELS)))
    with staff_socket(fuzz_server.ws_url, cookie) as console:
        until(console, "snapshot")
        answers_then_lives(console, raw)


def test_the_server_is_healthy_after_the_fuzzing(fuzz_server: FuzzServer) -> None:
    healthy(fuzz_server)
    assert set(CHILD_MODELS) >= {"hello", "start", "send", "typing", "read", "end", "feedback"}
    assert set(STAFF_MODELS) >= {"status", "take", "send", "monitor", "whisper", "takeover"}
