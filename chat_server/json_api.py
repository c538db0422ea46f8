"""What every JSON write of the staff API must be, checked in one place.

A cross-site form cannot send `application/json` without a CORS preflight (which this
server never grants), a browser's Origin must be this site or a configured helpline
origin, the body is bounded, and each staff member has a budget of writes per minute.
Each refusal is a JSON answer with the wire protocol's error codes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from chat_server.runtime import origin_allowed, services_of


class Rejected(Exception):
    """Answer at once with this response; the handler does not run."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"Retry-After": str(extra["retry_after"])} if "retry_after" in extra else None
    return JSONResponse(
        {"error": code, "field": None, "message": message, **extra},
        status_code=status,
        headers=headers,
    )


def check_write(request: Request, *, staff_id: uuid.UUID | None = None) -> None:
    """The checks before reading a body: JSON, our origin, the writer's budget."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Rejected(error(415, "bad_request", "send Content-Type: application/json"))
    services = services_of(request)
    if not origin_allowed(request, services):
        raise Rejected(error(403, "forbidden", "requests from that origin are not accepted"))
    if staff_id is not None and not services.limits.staff_writes.allow(str(staff_id)):
        message = "too many changes in a short time; wait a moment"
        raise Rejected(error(429, "rate_limited", message, retry_after=5))


async def read_write(request: Request, *, limit: int, staff_id: uuid.UUID | None = None) -> Any:
    """The parsed JSON body of a staff write, after every check; {} for an empty body."""
    check_write(request, staff_id=staff_id)
    raw = await read_bounded(request, limit)
    try:
        return parse(raw)
    except ValueError:
        raise Rejected(error(400, "bad_request", "the body is not valid JSON")) from None


def parse(raw: bytes) -> Any:
    """JSON, or {} for an empty body; ValueError for anything else (too deep included)."""
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


async def read_bounded(request: Request, limit: int) -> bytes:
    too_large = f"the body is limited to {limit} bytes"
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise Rejected(error(413, "too_large", too_large))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(error(413, "too_large", too_large))
        chunks.append(chunk)
    return b"".join(chunks)
