"""The floor: a bare relay speaking the same protocol subset, with no database.

Same stack as the real server (Starlette on uvicorn, its lean sans-I/O WebSocket protocol
(chat_server/ws_protocol.py), no compression,
uvloop), same frames, so `bench.load` runs against it unchanged. Everything it does is
what any relay must do: parse a frame, number it, answer with an ack, send it to both
parties. What the real server costs beyond this is the price of durability, safety
checks and multi-node fan-out.

    python -m bench.floor --port 8100
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


@dataclass
class Chat:
    id: str
    child: WebSocket
    staff: WebSocket | None = None
    seq: int = 0


@dataclass
class Relay:
    queue: deque[Chat] = field(default_factory=deque)
    ids: itertools.count[int] = field(default_factory=itertools.count)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _dump(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


async def _relay(chat: Chat, sender: str, client_id: str, body: str, reply: WebSocket) -> None:
    chat.seq += 1
    at = _now()
    await reply.send_text(
        _dump(
            {
                "type": "ack",
                "conversation_id": chat.id,
                "client_id": client_id,
                "seq": chat.seq,
                "at": at,
            }
        )
    )
    msg = {"type": "msg", "seq": chat.seq, "from": sender, "body": body, "at": at}
    await chat.child.send_text(_dump(msg))
    if chat.staff is not None:
        await chat.staff.send_text(_dump(msg | {"conversation_id": chat.id}))


def create_app() -> Starlette:
    relay = Relay()
    chats: dict[str, Chat] = {}

    async def login(request: Request) -> Response:
        payload = json.loads(await request.body())
        response = JSONResponse({"id": payload["username"], "name": "x", "role": "counsellor"})
        response.set_cookie("alo116_session", secrets.token_urlsafe(16))
        return response

    async def child(websocket: WebSocket) -> None:
        await websocket.accept()
        chat: Chat | None = None
        try:
            while True:
                frame = json.loads(await websocket.receive_text())
                kind = frame["type"]
                if kind == "hello":
                    await websocket.send_text(
                        _dump(
                            {
                                "type": "welcome",
                                "token": secrets.token_urlsafe(32),
                                "status": "new",
                                "last_seq": 0,
                            }
                        )
                    )
                elif kind == "start":
                    chat = Chat(f"c{next(relay.ids)}", websocket)
                    chats[chat.id] = chat
                    relay.queue.append(chat)
                    await websocket.send_text(
                        _dump({"type": "state", "status": "queued", "position": len(relay.queue)})
                    )
                elif kind == "send" and chat is not None:
                    await _relay(chat, "child", frame["client_id"], frame["body"], websocket)
        except WebSocketDisconnect:
            pass

    async def staff(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(_dump({"type": "snapshot", "me": {}, "queue": [], "chats": []}))
        try:
            while True:
                frame = json.loads(await websocket.receive_text())
                kind = frame["type"]
                if kind == "status":
                    await websocket.send_text(_dump({"type": "me", "status": frame["value"]}))
                elif kind == "take":
                    if not relay.queue:
                        await websocket.send_text(
                            _dump({"type": "error", "code": "not_found", "message": "empty"})
                        )
                        continue
                    chat = relay.queue.popleft()
                    chat.staff = websocket
                    await websocket.send_text(
                        _dump({"type": "assigned", "conversation_id": chat.id, "last_seq": 0})
                    )
                    await chat.child.send_text(_dump({"type": "state", "status": "active"}))
                elif kind == "send":
                    chat = chats[frame["conversation_id"]]
                    await _relay(chat, "counsellor", frame["client_id"], frame["body"], websocket)
        except WebSocketDisconnect:
            pass

    return Starlette(
        routes=[
            Route("/api/login", login, methods=["POST"]),
            WebSocketRoute("/ws/child", child),
            WebSocketRoute("/ws/staff", staff),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.floor", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        ws="chat_server.ws_protocol:LeanWebSocketsSansIOProtocol",
        ws_max_size=16 * 1024,
        ws_per_message_deflate=False,
        access_log=False,
        server_header=False,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
