"""What both WebSocket edges share: read a frame, hand it on, answer errors in kind.

Nothing here decides policy; it shuttles between the wire and the services and cleans
up in `finally`. Frames over the size limit never get here: the server closes with 1009.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from chat_server import protocol
from chat_server.connection import ABORTED, Connection
from chat_server.errors import Refused
from chat_server.switchboard import TokenBucket

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
# What uvicorn closes every socket with when the node is told to stop (SIGTERM).
CLOSE_RESTARTING = 1012
CLOSE_FORBIDDEN_ORIGIN = 4403

# A database that is briefly down: the client is told to retry, nothing was stored.
UNAVAILABLE = (OperationalError, DBAPIError, OSError, TimeoutError)


@dataclass(slots=True)
class Limits:
    sends: TokenBucket
    frames: TokenBucket = field(
        default_factory=lambda: TokenBucket.full(rate=20, burst=60, now=time.monotonic())
    )


async def serve(
    websocket: WebSocket,
    connection: Connection,
    handle: Callable[[Any], Awaitable[None]],
    parse: Callable[[str], Any],
    limits: Limits,
) -> int | None:
    """Read frames until the client goes; each bad frame gets an error, never a close.

    Returns the close code the client (or the server shutting down: 1012) went with, or
    None if the connection gave the client up (it stopped reading: connection.py)."""
    reader = connection.reader = asyncio.current_task()
    try:
        return await _read(websocket, connection, handle, parse, limits)
    except asyncio.CancelledError as cancelled:
        if cancelled.args == (ABORTED,) and reader is not None and reader.uncancel() == 0:
            return None
        raise
    finally:
        connection.reader = None


async def _read(
    websocket: WebSocket,
    connection: Connection,
    handle: Callable[[Any], Awaitable[None]],
    parse: Callable[[str], Any],
    limits: Limits,
) -> int:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            code: int = message.get("code", 1005)
            return code
        text = message.get("text")
        if text is None:
            connection.push(protocol.error("bad_request", "send text frames of JSON, not binary"))
            continue
        context = protocol.error_context(text)
        if not limits.frames.allow(time.monotonic()):
            connection.push(protocol.error("rate_limited", "too many frames; slow down", **context))
            continue
        try:
            await handle(parse(text))
        except Refused as refusal:
            connection.push(
                protocol.error(refusal.code, refusal.message, **(context | refusal.context))
            )
        except UNAVAILABLE:
            log.warning(
                "database unavailable while handling %s", context.get("in_reply_to"), exc_info=True
            )
            connection.push(
                protocol.error(
                    "unavailable",
                    "the service is briefly unavailable; nothing was stored, try again",
                    **context,
                )
            )


def address_of(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else "unknown"
