"""Wire protocol v1: typed client messages, validated once at the edge, and server frames.

Pure: nothing here awaits or touches the database. See docs/protocol.md.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from chat_server.errors import ErrorCode, Refused

VERSION = 1

Lang = Literal["sq", "en"]
AgeBand = Literal["0-3", "4-6", "7-9", "10-12", "13-15", "16-17", "18-25", "over-25", "unknown"]
Gender = Literal["girl", "boy", "non-binary", "unknown"]
Topic = Literal[
    "family",
    "school",
    "bullying",
    "violence",
    "feelings",
    "health",
    "relationships",
    "online",
    "other",
]
StaffStatus = Literal["available", "break", "offline"]
RiskLevel = Literal["none", "low", "high", "imminent"]
Sender = Literal["child", "counsellor", "system"]

ClientId = Annotated[str, Field(min_length=1, max_length=64)]
Seq = Annotated[int, Field(ge=0, le=2**31 - 1)]


class ProtocolError(Refused):
    """A frame the server cannot read; becomes an `error` frame, the socket lives on."""


class _Msg(BaseModel):
    # Strict: "1" is not 1 and "true" is not true; unknown fields are ignored so that
    # newer clients can talk to older servers.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class PreChat(_Msg):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    age_band: AgeBand | None = None
    gender: Gender | None = None
    in_danger: bool | None = None
    topic: Topic | None = None


# --- child to server -------------------------------------------------------------------


class Hello(_Msg):
    type: Literal["hello"]
    v: Literal[1]
    lang: Lang | None = None
    token: Annotated[str, Field(min_length=16, max_length=128)] | None = None
    last_seq: Seq | None = None
    # Extension: come back to a conversation on any device with its return code.
    return_code: Annotated[str, Field(min_length=4, max_length=80)] | None = None

    @field_validator("v", mode="before")
    @classmethod
    def _exactly_the_integer(cls, value: object) -> object:
        # Literal[1] alone would take true and 1.0, which equal 1 in Python.
        if type(value) is not int:
            raise PydanticCustomError("literal_error", "Input should be 1")
        return value


class Start(_Msg):
    type: Literal["start"]
    pre_chat: PreChat | None = None
    # Extension: "message" leaves a message when nobody can answer now.
    mode: Literal["chat", "message"] = "chat"


class Send(_Msg):
    type: Literal["send"]
    client_id: ClientId
    body: str


class Typing(_Msg):
    type: Literal["typing"]
    on: bool


class Read(_Msg):
    type: Literal["read"]
    seq: Seq


class End(_Msg):
    type: Literal["end"]


class Feedback(_Msg):
    type: Literal["feedback"]
    rating: Annotated[int, Field(ge=1, le=5)]
    helped: bool | None = None


class ReturnCodeRequest(_Msg):
    """Extension: ask for a code to come back to this conversation later."""

    type: Literal["return_code"]


class Ping(_Msg):
    """Extension: the client checks the connection is alive end to end; answered `pong`."""

    type: Literal["ping"]


ChildMessage = Hello | Start | Send | Typing | Read | End | Feedback | ReturnCodeRequest | Ping


# --- staff to server -------------------------------------------------------------------


class Status(_Msg):
    type: Literal["status"]
    value: StaffStatus


class Take(_Msg):
    type: Literal["take"]
    conversation_id: uuid.UUID | None = None


class StaffSend(_Msg):
    type: Literal["send"]
    conversation_id: uuid.UUID
    client_id: ClientId
    body: str


class StaffTyping(_Msg):
    type: Literal["typing"]
    conversation_id: uuid.UUID
    on: bool


class StaffRead(_Msg):
    type: Literal["read"]
    conversation_id: uuid.UUID
    seq: Seq


class Resume(_Msg):
    type: Literal["resume"]
    conversation_id: uuid.UUID
    last_seq: Seq


class StaffEnd(_Msg):
    type: Literal["end"]
    conversation_id: uuid.UUID
    # Extension: a last message to the child, stored in the transcript before the end.
    closing_message: str | None = None


class Risk(_Msg):
    type: Literal["risk"]
    conversation_id: uuid.UUID
    level: RiskLevel


class Tag(_Msg):
    type: Literal["tag"]
    conversation_id: uuid.UUID
    categories: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=30)
    ]


class Transfer(_Msg):
    type: Literal["transfer"]
    conversation_id: uuid.UUID
    to_user_id: uuid.UUID | None = None
    note: str | None = None


class TransferAccept(_Msg):
    type: Literal["transfer_accept"]
    conversation_id: uuid.UUID


class TransferDecline(_Msg):
    type: Literal["transfer_decline"]
    conversation_id: uuid.UUID


class Monitor(_Msg):
    type: Literal["monitor"]
    conversation_id: uuid.UUID
    on: bool


class WhisperMsg(_Msg):
    type: Literal["whisper"]
    conversation_id: uuid.UUID
    body: str


class Takeover(_Msg):
    type: Literal["takeover"]
    conversation_id: uuid.UUID


class Assign(_Msg):
    type: Literal["assign"]
    conversation_id: uuid.UUID
    to_user_id: uuid.UUID


class BlockMsg(_Msg):
    type: Literal["block"]
    conversation_id: uuid.UUID
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    hours: Annotated[int, Field(ge=1)] | None = None


class Unblock(_Msg):
    type: Literal["unblock"]
    block_id: uuid.UUID


class ListBlocks(_Msg):
    type: Literal["list_blocks"]


class AlertAck(_Msg):
    type: Literal["alert_ack"]
    alert_id: uuid.UUID


StaffMessage = (
    Ping
    | Status
    | Take
    | StaffSend
    | StaffTyping
    | StaffRead
    | Resume
    | StaffEnd
    | Risk
    | Tag
    | Transfer
    | TransferAccept
    | TransferDecline
    | Monitor
    | WhisperMsg
    | Takeover
    | Assign
    | BlockMsg
    | Unblock
    | ListBlocks
    | AlertAck
)

_child_adapter: TypeAdapter[ChildMessage] = TypeAdapter(
    Annotated[ChildMessage, Field(discriminator="type")]
)
_staff_adapter: TypeAdapter[StaffMessage] = TypeAdapter(
    Annotated[StaffMessage, Field(discriminator="type")]
)


def parse_child(frame: str, *, max_body_chars: int) -> ChildMessage:
    message = _parse(_child_adapter, frame)
    if isinstance(message, Send):
        check_body(message.body, max_body_chars)
    return message


def parse_staff(frame: str, *, max_body_chars: int) -> StaffMessage:
    message = _parse(_staff_adapter, frame)
    if isinstance(message, StaffSend):
        check_body(message.body, max_body_chars)
    elif isinstance(message, StaffEnd) and message.closing_message is not None:
        check_body(message.closing_message, max_body_chars)
    return message


def check_body(body: str, max_chars: int) -> None:
    if is_blank(body):
        raise ProtocolError("bad_request", "body must not be blank")
    if len(body) > max_chars:
        raise ProtocolError(
            "too_large", f"body has {len(body)} characters; the limit is {max_chars}"
        )


def is_blank(body: str) -> bool:
    """Nothing a person could read: spaces, line breaks, zero-width and control characters."""
    return all(ch.isspace() or unicodedata.category(ch) in _INVISIBLE for ch in body)


_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def frame_type(frame: str) -> str | None:
    """The `type` of a frame, if it has a readable one (to say what an error answers)."""
    return _context_of(frame).get("in_reply_to")


def error_context(frame: str) -> dict[str, str]:
    """What an error about this frame should quote back so the client can match it:
    the type it answers and, where given as strings, its client_id and conversation_id."""
    return _context_of(frame)


def _context_of(frame: str) -> dict[str, str]:
    try:
        value = json.loads(frame)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(value, dict):
        return {}
    context = {}
    for key, name in (
        ("type", "in_reply_to"),
        ("client_id", "client_id"),
        ("conversation_id", "conversation_id"),
    ):
        field = value.get(key)
        if isinstance(field, str) and len(field) <= 64:
            context[name] = field
    return context


_M = TypeVar("_M")


def _parse(adapter: TypeAdapter[_M], frame: str) -> _M:
    try:
        value = json.loads(frame)
    except ValueError:
        raise ProtocolError("bad_request", "frame is not valid JSON") from None
    except RecursionError:
        raise ProtocolError("bad_request", "frame is nested too deeply") from None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ProtocolError("bad_request", "frame must be a JSON object with a string 'type'")
    try:
        return adapter.validate_json(frame)
    except ValidationError as exc:
        raise ProtocolError("bad_request", _describe(value["type"], exc)) from None


def _describe(kind: str, exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    if error["type"] == "union_tag_invalid":
        return f"unknown message type {kind!r}"
    where = ".".join(str(part) for part in error["loc"][1:])
    return f"{kind}: {where}: {error['msg']}" if where else f"{kind}: {error['msg']}"


# --- server to client ------------------------------------------------------------------


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def error(code: ErrorCode, message: str, **context: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **context}


def msg_frame(
    *,
    conversation_id: uuid.UUID,
    seq: int,
    sender: str,
    body: str,
    at: datetime,
    client_id: str | None,
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "msg",
        "conversation_id": str(conversation_id),
        "seq": seq,
        "from": sender,
        "body": body,
        "at": iso(at),
    }
    if client_id is not None:
        frame["client_id"] = client_id
    return frame


def ack_frame(
    *, conversation_id: uuid.UUID, client_id: str, seq: int, at: datetime
) -> dict[str, Any]:
    return {
        "type": "ack",
        "conversation_id": str(conversation_id),
        "client_id": client_id,
        "seq": seq,
        "at": iso(at),
    }
