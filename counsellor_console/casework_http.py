"""What every casework endpoint does first: who is asking, may they, and is the request
well formed; and how a refusal becomes an answer (JSON for the API, a page for forms)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chat_server import accounts, audit, csrf, json_api
from chat_server.accounts import SESSION_COOKIE, StaffIdentity
from chat_server.errors import Refused
from chat_server.runtime import Services, origin_allowed, services_of

MAX_JSON_BYTES = 64 * 1024
MAX_IMPORT_BYTES = 4 * 1024 * 1024
STAFF = ("counsellor", "supervisor", "admin")
SUPERVISORS = ("supervisor", "admin")
ADMINS = ("admin",)
STATUS = {
    "bad_request": 400,
    "not_found": 404,
    "forbidden": 403,
    "conflict": 409,
    "closed": 409,
    "too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
}


class Stop(Exception):
    """Answer at once with this response (a failed check before the handler's work)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass(frozen=True, slots=True)
class Call:
    request: Request
    services: Services
    staff: StaffIdentity
    body: Any  # the parsed JSON body of a write, else None

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)


def error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "field": field, "message": message}, status_code=status)


def status_of(exc: Refused) -> tuple[int, str]:
    if exc.code == "bad_request" and exc.context.get("field"):
        return 422, "invalid"
    return STATUS.get(exc.code, 400), exc.code


async def log_refusal(services: Services, staff: StaffIdentity, exc: Refused) -> None:
    """A denied access is itself audited, in a transaction of its own (the action's
    transaction was rolled back)."""
    target = exc.context.get("audit_target")
    if exc.code == "forbidden" and target:
        async with services.db() as session, session.begin():
            audit.record(session, action="access.denied", actor_user_id=staff.id, target=target)


async def current_staff(request: Request) -> StaffIdentity | None:
    services = services_of(request)
    return await accounts.session_identity(
        services.db, services.settings, request.cookies.get(SESSION_COOKIE)
    )


def api(
    handler: Callable[[Call], Awaitable[Response]],
    *,
    roles: tuple[str, ...] = STAFF,
    limit: int = MAX_JSON_BYTES,
) -> Callable[[Request], Awaitable[Response]]:
    """A JSON endpoint: staff session (401), role (403), JSON writes from our origin."""

    async def endpoint(request: Request) -> Response:
        services = services_of(request)
        staff = await current_staff(request)
        if staff is None:
            return error(401, "unauthorized", "log in first")
        if staff.role not in roles:
            return error(403, "forbidden", f"this needs the role {' or '.join(roles)}")
        try:
            body = await read_json(request, limit, staff.id) if request.method != "GET" else None
            response = await handler(Call(request, services, staff, body))
        except Stop as stop:
            return stop.response
        except Refused as exc:
            await log_refusal(services, staff, exc)
            status, code = status_of(exc)
            return error(status, code, exc.message, exc.context.get("field"))
        response.headers["Cache-Control"] = "no-store"
        return response

    return endpoint


async def read_json(request: Request, limit: int, staff_id: uuid.UUID | None = None) -> Any:
    """The shared check of every JSON write (chat_server/json_api.py): JSON content
    type, our origin, a bounded body, the staff member's budget of writes."""
    try:
        return await json_api.read_write(request, limit=limit, staff_id=staff_id)
    except json_api.Rejected as rejected:
        raise Stop(rejected.response) from None


async def read_form(request: Request, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """An urlencoded staff form, from our origin, with the session's CSRF token.

    Repeated fields (checkboxes, multi-selects) come back as lists."""
    if not origin_allowed(request, services_of(request)):
        raise Refused("forbidden", "requests from that origin are not accepted")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise Refused("bad_request", "send the form as application/x-www-form-urlencoded")
    raw = await _body(request, limit, page=True)
    fields: dict[str, Any] = {}
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=2000)
    except (UnicodeDecodeError, ValueError):
        raise Refused("bad_request", "the form could not be read") from None
    for key, value in pairs:
        if key in fields:
            previous = fields[key]
            fields[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[key] = value
    secret = services_of(request).settings.secret_key
    token = fields.pop(csrf.FIELD, None)
    if not csrf.valid(secret, request.cookies.get(SESSION_COOKIE), _one(token)):
        raise Refused("forbidden", "the form has expired; reload the page and try again")
    return fields


def as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _one(value: Any) -> str | None:
    value = value[0] if isinstance(value, list) else value
    return value if isinstance(value, str) else None


async def _body(request: Request, limit: int, *, page: bool = False) -> bytes:
    length = request.headers.get("content-length")
    too_large = f"the body is limited to {limit} bytes"
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise Refused("too_large", too_large) if page else Stop(error(413, "too_large", too_large))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            if page:
                raise Refused("too_large", too_large)
            raise Stop(error(413, "too_large", too_large))
        chunks.append(chunk)
    return b"".join(chunks)
