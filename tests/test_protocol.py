"""The wire protocol's pure core: every client message, every bad shape, the server frames.

No event loop, no database: frames in, typed messages or a ProtocolError out.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from chat_server import protocol
from chat_server.errors import Refused
from chat_server.protocol import (
    End,
    Feedback,
    Hello,
    PreChat,
    ProtocolError,
    Read,
    Resume,
    Send,
    StaffEnd,
    StaffRead,
    StaffSend,
    StaffTyping,
    Start,
    Status,
    Take,
    Typing,
)

LIMIT = 2000
CID = "6f1c8b9e-2d8c-4b8a-9a3e-1f2e3d4c5b6a"
CONV = uuid.UUID(CID)
TOKEN = "t" * 16

Parse = Callable[[str], Any]


def _text(frame: dict[str, Any] | str) -> str:
    return frame if isinstance(frame, str) else json.dumps(frame)


def child(frame: dict[str, Any] | str) -> protocol.ChildMessage:
    return protocol.parse_child(_text(frame), max_body_chars=LIMIT)


def staff(frame: dict[str, Any] | str) -> protocol.StaffMessage:
    return protocol.parse_staff(_text(frame), max_body_chars=LIMIT)


def refusal(parse: Parse, frame: dict[str, Any] | str) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse(_text(frame))
    return caught.value


# --- the child's messages ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "hello", "v": 1}, Hello(type="hello", v=1)),
        (
            {"type": "hello", "v": 1, "lang": "en", "token": TOKEN, "last_seq": 0},
            Hello(type="hello", v=1, lang="en", token=TOKEN, last_seq=0),
        ),
        (
            {"type": "hello", "v": 1, "token": "k" * 128, "last_seq": 2**31 - 1},
            Hello(type="hello", v=1, token="k" * 128, last_seq=2**31 - 1),
        ),
        ({"type": "hello", "v": 1, "token": None}, Hello(type="hello", v=1)),
        ({"type": "start"}, Start(type="start")),
        ({"type": "start", "pre_chat": None}, Start(type="start")),
        ({"type": "start", "pre_chat": {}}, Start(type="start", pre_chat=PreChat())),
        (
            {
                "type": "start",
                "pre_chat": {
                    "age_band": "13-15",
                    "gender": "non-binary",
                    "in_danger": True,
                    "topic": "bullying",
                },
            },
            Start(
                type="start",
                pre_chat=PreChat(
                    age_band="13-15", gender="non-binary", in_danger=True, topic="bullying"
                ),
            ),
        ),
        (
            {"type": "start", "pre_chat": {"in_danger": False, "age_band": None}},
            Start(type="start", pre_chat=PreChat(in_danger=False)),
        ),
        (
            {"type": "send", "client_id": "c-1", "body": "përshëndetje"},
            Send(type="send", client_id="c-1", body="përshëndetje"),
        ),
        (
            {"type": "send", "client_id": "x" * 64, "body": "b" * LIMIT},
            Send(type="send", client_id="x" * 64, body="b" * LIMIT),
        ),
        (
            {"type": "send", "client_id": "c-2", "body": "  hi\n"},
            Send(type="send", client_id="c-2", body="  hi\n"),
        ),
        ({"type": "typing", "on": True}, Typing(type="typing", on=True)),
        ({"type": "typing", "on": False}, Typing(type="typing", on=False)),
        ({"type": "read", "seq": 0}, Read(type="read", seq=0)),
        ({"type": "read", "seq": 7}, Read(type="read", seq=7)),
        ({"type": "end"}, End(type="end")),
        ({"type": "feedback", "rating": 1}, Feedback(type="feedback", rating=1)),
        (
            {"type": "feedback", "rating": 5, "helped": False},
            Feedback(type="feedback", rating=5, helped=False),
        ),
        (
            {"type": "feedback", "rating": 3, "helped": None},
            Feedback(type="feedback", rating=3),
        ),
    ],
    ids=lambda value: value["type"] if isinstance(value, dict) else "",
)
def test_a_child_message_in_every_valid_form_is_read_as_its_typed_model(
    frame: dict[str, Any], expected: protocol.ChildMessage
) -> None:
    assert child(frame) == expected


def test_hello_without_lang_leaves_the_language_to_the_server_default() -> None:
    hello = child({"type": "hello", "v": 1})
    assert isinstance(hello, Hello)
    assert (hello.lang, hello.token, hello.last_seq) == (None, None, None)


def test_unknown_fields_are_ignored_so_newer_clients_can_talk_to_this_server() -> None:
    assert child({"type": "end", "sent_at": "2025-01-01T00:00:00Z"}) == End(type="end")
    assert child({"type": "typing", "on": True, "draft": "x"}) == Typing(type="typing", on=True)


BAD_CHILD = [
    ("hello", {}, "v: Field required"),
    ("hello", {"v": "1"}, "v: Input should be 1"),
    ("hello", {"v": 2}, "v: Input should be 1"),
    ("hello", {"v": 1, "lang": "fr"}, "lang: Input should be 'sq' or 'en'"),
    ("hello", {"v": 1, "lang": "de"}, "lang: Input should be 'sq' or 'en'"),
    ("hello", {"v": 1, "token": "t" * 15}, "token: String should have at least 16"),
    ("hello", {"v": 1, "token": "t" * 129}, "token: String should have at most 128"),
    ("hello", {"v": 1, "token": 10**16}, "token: Input should be a valid string"),
    ("hello", {"v": 1, "last_seq": -1}, "last_seq: Input should be greater than or equal to 0"),
    ("hello", {"v": 1, "last_seq": 2**31}, "last_seq: Input should be less than or equal to"),
    ("hello", {"v": 1, "last_seq": "3"}, "last_seq: Input should be a valid integer"),
    ("hello", {"v": 1, "last_seq": 1.5}, "last_seq: Input should be a valid integer"),
    ("hello", {"v": 1, "last_seq": True}, "last_seq: Input should be a valid integer"),
    ("start", {"pre_chat": {"age": 14}}, "pre_chat.age: Extra inputs are not permitted"),
    ("start", {"pre_chat": {"age_band": "14"}}, "pre_chat.age_band: Input should be '0-3'"),
    ("start", {"pre_chat": {"gender": "man"}}, "pre_chat.gender: Input should be 'girl'"),
    ("start", {"pre_chat": {"topic": "money"}}, "pre_chat.topic: Input should be 'family'"),
    ("start", {"pre_chat": {"in_danger": "true"}}, "pre_chat.in_danger: Input should be a valid"),
    ("start", {"pre_chat": {"in_danger": 1}}, "pre_chat.in_danger: Input should be a valid"),
    ("start", {"pre_chat": []}, "pre_chat: Input should be an object"),
    ("start", {"pre_chat": "in danger"}, "pre_chat: Input should be an object"),
    ("send", {"body": "hi"}, "client_id: Field required"),
    ("send", {"client_id": "c"}, "body: Field required"),
    ("send", {"client_id": "", "body": "hi"}, "client_id: String should have at least 1"),
    ("send", {"client_id": "x" * 65, "body": "hi"}, "client_id: String should have at most 64"),
    ("send", {"client_id": 7, "body": "hi"}, "client_id: Input should be a valid string"),
    ("send", {"client_id": "c", "body": 5}, "body: Input should be a valid string"),
    ("send", {"client_id": "c", "body": None}, "body: Input should be a valid string"),
    ("typing", {}, "on: Field required"),
    ("typing", {"on": "true"}, "on: Input should be a valid boolean"),
    ("typing", {"on": 1}, "on: Input should be a valid boolean"),
    ("read", {}, "seq: Field required"),
    ("read", {"seq": "1"}, "seq: Input should be a valid integer"),
    ("read", {"seq": 1.0}, "seq: Input should be a valid integer"),
    ("read", {"seq": True}, "seq: Input should be a valid integer"),
    ("read", {"seq": -1}, "seq: Input should be greater than or equal to 0"),
    ("feedback", {}, "rating: Field required"),
    ("feedback", {"rating": 0}, "rating: Input should be greater than or equal to 1"),
    ("feedback", {"rating": 6}, "rating: Input should be less than or equal to 5"),
    ("feedback", {"rating": "5"}, "rating: Input should be a valid integer"),
    ("feedback", {"rating": 4.0}, "rating: Input should be a valid integer"),
    ("feedback", {"rating": True}, "rating: Input should be a valid integer"),
    ("feedback", {"rating": 5, "helped": "true"}, "helped: Input should be a valid boolean"),
    ("feedback", {"rating": 5, "helped": 1}, "helped: Input should be a valid boolean"),
]


@pytest.mark.parametrize(("kind", "fields", "fragment"), BAD_CHILD)
def test_a_badly_shaped_child_message_is_refused_as_bad_request_naming_the_field(
    kind: str, fields: dict[str, Any], fragment: str
) -> None:
    refused = refusal(child, {"type": kind, **fields})
    assert refused.code == "bad_request"
    assert refused.message.startswith(f"{kind}: {fragment}")


@pytest.mark.parametrize("kind", ["take", "status", "resume"])
def test_a_staff_only_type_is_unknown_to_a_child(kind: str) -> None:
    refused = refusal(child, {"type": kind, "conversation_id": CID, "value": "available"})
    assert (refused.code, refused.message) == ("bad_request", f"unknown message type {kind!r}")


# --- the staff's messages ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "status", "value": "available"}, Status(type="status", value="available")),
        ({"type": "status", "value": "break"}, Status(type="status", value="break")),
        ({"type": "status", "value": "offline"}, Status(type="status", value="offline")),
        ({"type": "take"}, Take(type="take")),
        ({"type": "take", "conversation_id": None}, Take(type="take")),
        ({"type": "take", "conversation_id": CID}, Take(type="take", conversation_id=CONV)),
        (
            {"type": "take", "conversation_id": CID.upper()},
            Take(type="take", conversation_id=CONV),
        ),
        (
            {"type": "send", "conversation_id": CID, "client_id": "s-1", "body": "Si je?"},
            StaffSend(type="send", conversation_id=CONV, client_id="s-1", body="Si je?"),
        ),
        (
            {"type": "typing", "conversation_id": CID, "on": False},
            StaffTyping(type="typing", conversation_id=CONV, on=False),
        ),
        (
            {"type": "read", "conversation_id": CID, "seq": 3},
            StaffRead(type="read", conversation_id=CONV, seq=3),
        ),
        (
            {"type": "resume", "conversation_id": CID, "last_seq": 0},
            Resume(type="resume", conversation_id=CONV, last_seq=0),
        ),
        ({"type": "end", "conversation_id": CID}, StaffEnd(type="end", conversation_id=CONV)),
    ],
    ids=lambda value: value["type"] if isinstance(value, dict) else "",
)
def test_a_staff_message_in_every_valid_form_is_read_as_its_typed_model(
    frame: dict[str, Any], expected: protocol.StaffMessage
) -> None:
    assert staff(frame) == expected


BAD_STAFF = [
    ("status", {}, "value: Field required"),
    ("status", {"value": "busy"}, "value: Input should be 'available', 'break' or 'offline'"),
    ("status", {"value": "Available"}, "value: Input should be 'available'"),
    ("take", {"conversation_id": "next"}, "conversation_id: Input should be a valid UUID"),
    ("take", {"conversation_id": ""}, "conversation_id: Input should be a valid UUID"),
    ("take", {"conversation_id": CID[:-1]}, "conversation_id: Input should be a valid UUID"),
    ("take", {"conversation_id": 42}, "conversation_id: UUID input should be a string"),
    ("send", {"client_id": "s", "body": "hi"}, "conversation_id: Field required"),
    ("send", {"conversation_id": "c1", "client_id": "s", "body": "hi"}, "conversation_id: Input"),
    ("send", {"conversation_id": CID, "body": "hi"}, "client_id: Field required"),
    ("send", {"conversation_id": CID, "client_id": "x" * 65, "body": "hi"}, "client_id: String"),
    ("send", {"conversation_id": CID, "client_id": "s"}, "body: Field required"),
    ("typing", {"on": True}, "conversation_id: Field required"),
    ("typing", {"conversation_id": CID, "on": "false"}, "on: Input should be a valid boolean"),
    ("read", {"conversation_id": CID}, "seq: Field required"),
    ("read", {"conversation_id": CID, "seq": "1"}, "seq: Input should be a valid integer"),
    ("resume", {"conversation_id": CID}, "last_seq: Field required"),
    ("resume", {"conversation_id": CID, "last_seq": -1}, "last_seq: Input should be greater"),
    ("resume", {"last_seq": 0}, "conversation_id: Field required"),
    ("end", {}, "conversation_id: Field required"),
    ("end", {"conversation_id": "not-a-uuid"}, "conversation_id: Input should be a valid UUID"),
]


@pytest.mark.parametrize(("kind", "fields", "fragment"), BAD_STAFF)
def test_a_badly_shaped_staff_message_is_refused_as_bad_request_naming_the_field(
    kind: str, fields: dict[str, Any], fragment: str
) -> None:
    refused = refusal(staff, {"type": kind, **fields})
    assert refused.code == "bad_request"
    assert refused.message.startswith(f"{kind}: {fragment}")


@pytest.mark.parametrize("kind", ["hello", "start", "feedback"])
def test_a_child_only_type_is_unknown_to_staff(kind: str) -> None:
    refused = refusal(staff, {"type": kind, "v": 1, "rating": 5})
    assert (refused.code, refused.message) == ("bad_request", f"unknown message type {kind!r}")


# --- frames that are not messages at all (both endpoints) ---------------------------------

PARSERS = pytest.mark.parametrize("parse", [child, staff], ids=["child", "staff"])


@PARSERS
@pytest.mark.parametrize("text", ["", "nope", "{", '{"type": "end"', "{'type': 'end'}"])
def test_a_frame_that_is_not_json_is_refused_as_bad_request(parse: Parse, text: str) -> None:
    refused = refusal(parse, text)
    assert (refused.code, refused.message) == ("bad_request", "frame is not valid JSON")


@PARSERS
@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '[{"type": "end"}]',
        '"end"',
        "42",
        "null",
        "NaN",
        "{}",
        '{"kind": "end"}',
        '{"type": 1}',
        '{"type": null}',
        '{"type": ["end"]}',
    ],
)
def test_a_frame_that_is_not_an_object_with_a_string_type_is_refused_as_bad_request(
    parse: Parse, text: str
) -> None:
    refused = refusal(parse, text)
    assert refused.code == "bad_request"
    assert refused.message == "frame must be a JSON object with a string 'type'"


@PARSERS
@pytest.mark.parametrize("kind", ["", "Send", "pong", "dance", "monitoring"])
def test_an_unknown_type_is_refused_as_bad_request_quoting_it(parse: Parse, kind: str) -> None:
    refused = refusal(parse, {"type": kind})
    assert (refused.code, refused.message) == ("bad_request", f"unknown message type {kind!r}")


def test_a_protocol_error_is_a_refusal_so_the_socket_answers_and_stays_open() -> None:
    assert issubclass(ProtocolError, Refused)


# --- message bodies (both endpoints) --------------------------------------------------------


def _send(parse: Parse, body: str) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "send", "client_id": "c", "body": body}
    if parse is staff:
        frame["conversation_id"] = CID
    return frame


@PARSERS
@pytest.mark.parametrize("body", ["", " ", "\n\t  \r\n", "\u3000\u00a0"])
def test_a_blank_body_is_refused_as_bad_request(parse: Parse, body: str) -> None:
    refused = refusal(parse, _send(parse, body))
    assert (refused.code, refused.message) == ("bad_request", "body must not be blank")


@PARSERS
def test_an_over_long_body_is_refused_as_too_large_saying_the_limit(parse: Parse) -> None:
    refused = refusal(parse, _send(parse, "a" * (LIMIT + 1)))
    assert refused.code == "too_large"
    assert refused.message == f"body has {LIMIT + 1} characters; the limit is {LIMIT}"


@PARSERS
def test_a_body_is_measured_in_characters_not_bytes(parse: Parse) -> None:
    # 2000 emoji: 8000 bytes of UTF-8 and 4000 UTF-16 units, but 2000 characters.
    message = parse(json.dumps(_send(parse, "😀" * LIMIT), ensure_ascii=False))
    assert isinstance(message, Send | StaffSend)
    assert message.body == "😀" * LIMIT


def test_the_body_limit_is_the_one_passed_in() -> None:
    frame = json.dumps({"type": "send", "client_id": "c", "body": "eleven char"})
    assert protocol.parse_child(frame, max_body_chars=11) == Send(
        type="send", client_id="c", body="eleven char"
    )
    with pytest.raises(ProtocolError) as caught:
        protocol.parse_child(frame, max_body_chars=10)
    assert caught.value.code == "too_large"
    with pytest.raises(ProtocolError) as caught:
        protocol.parse_staff(
            json.dumps({**json.loads(frame), "conversation_id": CID}), max_body_chars=10
        )
    assert caught.value.code == "too_large"


# --- frame_type: what an error frame answers ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('{"type": "send", "body": 5}', "send"),
        ('{"type": "whatever"}', "whatever"),
        ("not json", None),
        ('["send"]', None),
        ('{"type": 3}', None),
        ("{}", None),
    ],
)
def test_frame_type_reads_the_type_of_any_object_frame_even_an_invalid_one(
    text: str, kind: str | None
) -> None:
    assert protocol.frame_type(text) == kind


# --- once bugs, now guarded ------------------------------------------------------------------


@pytest.mark.parametrize("version", [True, 1.0])
def test_a_version_of_true_or_1_0_is_refused_as_bad_request(version: object) -> None:
    refusal(child, {"type": "hello", "v": version})


@pytest.mark.parametrize(
    "text", ["[" * 1000, '{"type": "end", "x": ' + "[" * 1000 + "]" * 1000 + "}"]
)
def test_a_deeply_nested_frame_is_refused_as_bad_request(text: str) -> None:
    assert protocol.frame_type(text) in (None, "end")
    refused = refusal(child, text)
    assert refused.code == "bad_request"


# --- frames the server builds ---------------------------------------------------------------

AT = datetime(2025, 3, 1, 9, 30, 5, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "text"),
    [
        (AT, "2025-03-01T09:30:05.123456Z"),
        (datetime(2025, 3, 1, 9, 30, tzinfo=UTC), "2025-03-01T09:30:00Z"),
    ],
)
def test_times_are_iso_8601_utc_with_a_z(at: datetime, text: str) -> None:
    assert protocol.iso(at) == text
    assert datetime.fromisoformat(protocol.iso(at)) == at


def test_an_error_frame_carries_code_message_and_any_context() -> None:
    assert protocol.error("bad_request", "body must not be blank") == {
        "type": "error",
        "code": "bad_request",
        "message": "body must not be blank",
    }
    assert protocol.error(
        "rate_limited", "slow down", in_reply_to="send", client_id="c-9", conversation_id=CID
    ) == {
        "type": "error",
        "code": "rate_limited",
        "message": "slow down",
        "in_reply_to": "send",
        "client_id": "c-9",
        "conversation_id": CID,
    }


def test_a_msg_frame_carries_the_client_id_it_was_sent_with() -> None:
    frame = protocol.msg_frame(
        conversation_id=CONV, seq=4, sender="child", body="ndihmë", at=AT, client_id="c-4"
    )
    assert frame == {
        "type": "msg",
        "conversation_id": CID,
        "seq": 4,
        "from": "child",
        "body": "ndihmë",
        "at": "2025-03-01T09:30:05.123456Z",
        "client_id": "c-4",
    }
    assert json.loads(json.dumps(frame)) == frame


def test_a_msg_frame_without_a_client_id_has_no_client_id_key() -> None:
    frame = protocol.msg_frame(
        conversation_id=CONV, seq=1, sender="system", body="welcome", at=AT, client_id=None
    )
    assert "client_id" not in frame
    assert frame["from"] == "system"


def test_an_ack_frame_names_the_client_id_and_its_committed_seq() -> None:
    frame = protocol.ack_frame(conversation_id=CONV, client_id="c-4", seq=4, at=AT)
    assert frame == {
        "type": "ack",
        "conversation_id": CID,
        "client_id": "c-4",
        "seq": 4,
        "at": "2025-03-01T09:30:05.123456Z",
    }
    assert json.loads(json.dumps(frame)) == frame
