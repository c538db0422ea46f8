"""The authorization matrix: every HTTP route of the app and every staff socket message
type, called as anonymous, a child, the counsellor of the chat, another counsellor, a
supervisor and an admin, each answer checked against the declared policy below.

A route or a message type without a policy entry fails the test: whoever adds one must
say here who may use it.
"""

from __future__ import annotations

import re
import typing
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
import websockets
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.exceptions import ConnectionClosed

from chat_server import csrf, protocol
from chat_server.accounts import SESSION_COOKIE, StaffIdentity
from chat_server.app import create_app
from chat_server.cases import today
from db.models import Alert, Conversation, StaffUser
from tests.casework_support import database, on_duty, quick_staff
from tests.clients import Client, connect_staff
from tests.conftest import LiveServer, MakeLive

PRINCIPALS = ("anonymous", "child", "counsellor", "other", "supervisor", "admin")
STAFF = ("counsellor", "other", "supervisor", "admin")
SUPERVISORS = ("supervisor", "admin")
ADMINS = ("admin",)
# The counsellor of the chat, case and record, and those who oversee every chat and case.
OWNER = ("counsellor", "supervisor", "admin")

Kind = Literal["public", "api", "page", "second_step", "static"]


@dataclass(frozen=True)
class Policy:
    """Who may call a route. `api`: JSON, 401 for strangers; `page`: HTML, strangers go
    to the login page; `second_step`: only a session waiting for its second factor."""

    kind: Kind
    allowed: tuple[str, ...] = ()
    body: Any = None  # what the call sends (JSON, or form fields for pages)
    # Calls that end the caller's sessions run as a throwaway account of the same role.
    throwaway: bool = False


def api(allowed: tuple[str, ...] = STAFF, body: Any = None, **kw: Any) -> Policy:
    return Policy("api", allowed, body, **kw)


def page(allowed: tuple[str, ...] = STAFF, body: Any = None, **kw: Any) -> Policy:
    return Policy("page", allowed, body, **kw)


PUBLIC = Policy("public", PRINCIPALS)
STATIC = Policy("static", PRINCIPALS)
SECOND_STEP = Policy("second_step")

HTTP_POLICY: dict[tuple[str, str], Policy] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    # Operational counts, nothing about anyone; kept off the internet by the deployment
    # (loopback or the private network only: docs/deployment.md).
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/chat"): PUBLIC,
    ("POST", "/api/child/quick-exit"): PUBLIC,
    ("MOUNT", "/chat/static"): STATIC,
    ("MOUNT", "/console/static"): STATIC,
    # Logging in and out, the account
    ("GET", "/console/login"): PUBLIC,
    ("POST", "/api/login"): PUBLIC,
    ("POST", "/api/login/2fa"): PUBLIC,  # answers 401 without a half session
    ("POST", "/api/logout"): Policy("public", PRINCIPALS, throwaway=True),
    ("GET", "/console"): page(),
    ("POST", "/api/logout-everywhere"): api(throwaway=True),
    ("POST", "/api/account/password"): api(
        body={"current_password": "correct horse battery", "new_password": "x"}
    ),
    ("POST", "/api/staff/{user_id}/deactivate"): api(ADMINS),
    ("POST", "/api/staff/{user_id}/reactivate"): api(ADMINS),
    ("POST", "/api/staff/{user_id}/sessions/end"): api(ADMINS),
    ("GET", "/console/login/2fa"): SECOND_STEP,
    ("POST", "/console/login/2fa"): SECOND_STEP,
    ("POST", "/console/login/2fa/cancel"): SECOND_STEP,
    ("GET", "/console/account"): page(),
    ("POST", "/console/account/logout-everywhere"): page(throwaway=True),
    ("GET", "/console/account/password"): page(),
    ("POST", "/console/account/password"): page(body={"current_password": "x"}),
    ("GET", "/console/account/2fa"): page(),
    ("POST", "/console/account/2fa/enable"): page(body={"code": "000000"}),
    ("POST", "/console/account/2fa/recovery-codes"): page(body={"code": "000000"}),
    ("POST", "/console/account/2fa/disable"): page(body={"code": "000000"}),
    # Casework API
    ("GET", "/api/taxonomy"): api(),
    ("GET", "/api/records/{conversation_id}"): api(OWNER),
    ("PUT", "/api/records/{conversation_id}"): api(OWNER, {"summary": "s"}),
    ("POST", "/api/records/{conversation_id}/finalise"): api(OWNER),
    ("POST", "/api/contacts"): api(STAFF, {"channel": "phone"}),
    ("GET", "/api/contacts/unfinished"): api(),
    ("GET", "/api/contacts/{record_id}"): api(OWNER),
    ("GET", "/api/cases"): api(),
    ("POST", "/api/cases"): api(STAFF, {}),
    ("GET", "/api/cases/{case}"): api(OWNER),
    ("PATCH", "/api/cases/{case}"): api(OWNER, {"summary": "p"}),
    ("POST", "/api/cases/{case}/notes"): api(OWNER, {"body": "n"}),
    ("POST", "/api/cases/{case}/contacts"): api(OWNER, {"record_id": "{record_id}"}),
    ("GET", "/api/cases/{case}/contacts/{record_id}/transcript"): api(OWNER),
    ("POST", "/api/cases/{case}/referrals"): api(
        OWNER, {"service_id": "{service_id}", "reason": "r"}
    ),
    ("PATCH", "/api/referrals/{referral_id}"): api(OWNER, {"outcome": "o"}),
    ("GET", "/api/followups"): api(),
    ("GET", "/api/directory/services"): api(),
    ("POST", "/api/directory/organizations"): api(ADMINS, {}),
    ("GET", "/api/directory/organizations/{organization_id}"): api(),
    ("PATCH", "/api/directory/organizations/{organization_id}"): api(ADMINS, {"url": "u"}),
    ("POST", "/api/directory/organizations/{organization_id}/services"): api(ADMINS, {}),
    ("POST", "/api/directory/organizations/{organization_id}/locations"): api(ADMINS, {}),
    ("PATCH", "/api/directory/services/{service_id}"): api(ADMINS, {"url": "u"}),
    ("PATCH", "/api/directory/locations/{location_id}"): api(ADMINS, {"name": "l"}),
    ("GET", "/api/directory/export"): api(ADMINS),
    ("POST", "/api/directory/import"): api(ADMINS, {}),
    ("POST", "/api/directory/examples"): api(ADMINS, {"x": 1}),
    ("GET", "/api/reports/summary"): api(SUPERVISORS),
    ("GET", "/api/reports/summary.csv"): api(SUPERVISORS),
    ("GET", "/api/reports/contacts.csv"): api(SUPERVISORS),
    # Casework pages
    ("GET", "/console/cases"): page(),
    ("POST", "/console/cases"): page(),
    ("GET", "/console/cases/new"): page(),
    ("GET", "/console/cases/{ref}"): page(OWNER),
    ("POST", "/console/cases/{ref}"): page(OWNER),
    ("POST", "/console/cases/{ref}/notes"): page(OWNER),
    ("POST", "/console/cases/{ref}/contacts"): page(OWNER, {"record_id": "{record_id}"}),
    ("POST", "/console/cases/{ref}/referrals"): page(OWNER),
    ("POST", "/console/referrals/{referral_id}"): page(OWNER),
    ("GET", "/console/contacts/new"): page(),
    ("POST", "/console/contacts"): page(),
    ("GET", "/console/contacts/{record_id}"): page(OWNER),
    ("POST", "/console/contacts/{record_id}"): page(OWNER),
    ("GET", "/console/directory"): page(),
    ("GET", "/console/directory/organizations/new"): page(ADMINS),
    ("POST", "/console/directory/organizations"): page(ADMINS),
    ("GET", "/console/directory/organizations/{organization_id}"): page(ADMINS),
    ("POST", "/console/directory/organizations/{organization_id}"): page(ADMINS),
    ("POST", "/console/directory/services"): page(ADMINS),
    ("POST", "/console/directory/services/{service_id}"): page(ADMINS),
    ("POST", "/console/directory/locations"): page(ADMINS),
    ("POST", "/console/directory/locations/{location_id}"): page(ADMINS),
    ("GET", "/console/directory/transfer"): page(ADMINS),
    ("POST", "/console/directory/transfer"): page(ADMINS),
    ("GET", "/console/reports"): page(SUPERVISORS),
    # Canned responses and information resources
    ("GET", "/api/library"): api(),
    ("POST", "/api/library/canned"): api(ADMINS, {}),
    ("PATCH", "/api/library/canned/{item_id}"): api(ADMINS, {}),
    ("POST", "/api/library/resources"): api(ADMINS, {}),
    ("PATCH", "/api/library/resources/{item_id}"): api(ADMINS, {}),
    ("POST", "/api/library/examples"): api(ADMINS, {"x": 1}),
    ("GET", "/api/staff/available"): api(),
    ("GET", "/console/library"): page(ADMINS),
    ("GET", "/console/library/canned/new"): page(ADMINS),
    ("POST", "/console/library/canned/new"): page(ADMINS),
    ("GET", "/console/library/canned/{item_id}"): page(ADMINS),
    ("POST", "/console/library/canned/{item_id}"): page(ADMINS),
    ("GET", "/console/library/resources/new"): page(ADMINS),
    ("POST", "/console/library/resources/new"): page(ADMINS),
    ("GET", "/console/library/resources/{item_id}"): page(ADMINS),
    ("POST", "/console/library/resources/{item_id}"): page(ADMINS),
    ("POST", "/console/library/examples"): page(ADMINS),
    # The floor and the audit log
    ("GET", "/console/floor"): page(SUPERVISORS),
    ("GET", "/console/audit"): page(ADMINS),
    ("GET", "/api/audit"): api(ADMINS),
}

# JSON writes that are not held to the shared JSON check, and why.
NOT_JSON = {
    ("POST", "/api/child/quick-exit"): "navigator.sendBeacon from the child's page: text/plain",
}
STATIC_FILES = {"/chat/static": "chat.js", "/console/static": "css/base.css"}


def app_routes(live: LiveServer) -> list[tuple[str, str]]:
    """Every (method, path) of the app as built from settings; mounts and sockets too."""
    found: list[tuple[str, str]] = []
    for route in create_app(live.settings).routes:
        if isinstance(route, Route):
            found += [(m, route.path) for m in sorted((route.methods or set()) - {"HEAD"})]
        elif isinstance(route, Mount):
            found.append(("MOUNT", route.path))
        elif isinstance(route, WebSocketRoute):
            found.append(("WS", route.path))
    return found


@dataclass
class World:
    """The people and the things the calls are about, made through the real API."""

    live: LiveServer
    http: httpx.AsyncClient
    cookies: dict[str, str]
    identities: dict[str, StaffIdentity]
    child_token: str
    params: dict[str, str]
    csrf_of: Callable[[str], str] = field(default=lambda cookie: "")


async def build_world(live: LiveServer, http: httpx.AsyncClient) -> World:
    identities: dict[str, StaffIdentity] = {}
    cookies: dict[str, str] = {}
    for principal, role in (
        ("counsellor", "counsellor"),
        ("other", "counsellor"),
        ("supervisor", "supervisor"),
        ("admin", "admin"),
    ):
        identities[principal], cookies[principal] = await quick_staff(live, role)
    counsellor = await connect_staff(live.ws_url, cookies["counsellor"])
    live.clients.append(counsellor)
    await counsellor.expect("snapshot")
    await counsellor.send(type="status", value="available")
    await counsellor.expect("me", status="available")
    child = await live.child(lang="sq")
    await child.send(type="start")
    await child.expect("state", status="queued")
    await counsellor.send(type="take")
    cid = str((await counsellor.expect("assigned"))["conversation_id"])
    await child.send(type="send", client_id="m1", body="Ndihmë")
    await child.expect("ack", client_id="m1")
    target, _ = await quick_staff(live, "counsellor")  # what admins deactivate in the matrix

    async def call(principal: str, method: str, path: str, body: Any = None) -> Any:
        jar = {SESSION_COOKIE: cookies[principal]}
        async with httpx.AsyncClient(base_url=live.url, cookies=jar) as client:
            answer = await client.request(method, path, json=body)
        assert answer.status_code < 300, (path, answer.text)
        return answer.json()

    if True:
        record = await call("counsellor", "PUT", f"/api/records/{cid}", {"contact_type": "silent"})
        case = await call("counsellor", "POST", "/api/cases", {"conversation_id": cid})
        org = await call("admin", "POST", "/api/directory/organizations", {"name": "Matrica"})
        service = await call(
            "admin", "POST", f"/api/directory/organizations/{org['id']}/services", {"name": "S"}
        )
        location = await call(
            "admin", "POST", f"/api/directory/organizations/{org['id']}/locations", {"name": "L"}
        )
        referral = await call(
            "counsellor",
            "POST",
            f"/api/cases/{case['number']}/referrals",
            {"service_id": service["id"], "reason": "r", "follow_up_on": today().isoformat()},
        )
        library = await call("admin", "POST", "/api/library/examples", {})
        items = await call("admin", "GET", "/api/library")
    del library
    item_id = _first_id(items)
    return World(
        live,
        http,
        cookies,
        identities,
        child.token or "",
        {
            "conversation_id": cid,
            "record_id": record["id"],
            "case": case["number"],
            "ref": case["number"],
            "referral_id": referral["id"],
            "organization_id": org["id"],
            "service_id": service["id"],
            "location_id": location["id"],
            "user_id": str(target.id),
            "item_id": item_id,
        },
        lambda cookie: csrf.token(live.settings.secret_key, cookie),
    )


def _first_id(items: Any) -> str:
    found = re.search(r"'id': '([0-9a-f-]{36})'", repr(items))
    assert found, "the library examples gave no item"
    return found.group(1)


async def request(
    world: World,
    principal: str,
    method: str,
    path: str,
    policy: Policy,
    *,
    cookie: str | None = None,
    csrf_token: str | None = "valid",
    json_body: bool = True,
    origin: str | None = None,
) -> httpx.Response:
    if cookie is None and principal in world.cookies:
        cookie = world.cookies[principal]
    headers = {}
    if principal == "child":
        # A child holds no staff credential; it may try its own token as one.
        cookie = world.child_token
        headers["authorization"] = f"Bearer {world.child_token}"
    if cookie:
        headers["cookie"] = f"{SESSION_COOKIE}={cookie}"
    if origin:
        headers["origin"] = origin
    url = path.format(**world.params)
    if path.startswith("/api/reports"):
        url += "?from=2025-01-01&to=2025-01-31"
    body = fill(policy.body, world.params)
    http = world.http
    http.cookies.clear()  # only the cookie of this call, never one an answer set
    if method == "GET":
        return await http.get(url, headers=headers)
    if path.startswith("/console"):
        data = {"probe": "1", **(body or {})}
        if csrf_token == "valid":
            data[csrf.FIELD] = world.csrf_of(cookie or "")
        elif csrf_token is not None:
            data[csrf.FIELD] = csrf_token
        return await http.request(method, url, data=data, headers=headers)
    if not json_body:
        return await http.request(method, url, data={"a": "1"}, headers=headers)
    return await http.request(method, url, json=body if body is not None else {}, headers=headers)


def fill(body: Any, params: dict[str, str]) -> Any:
    """A policy's body with {placeholders} replaced by the world's ids."""
    if isinstance(body, dict):
        return {k: v.format(**params) if isinstance(v, str) else v for k, v in body.items()}
    return body


def verdict(policy: Policy, principal: str, answer: httpx.Response) -> str | None:
    """What is wrong with this answer under the policy, or None."""
    status, location = answer.status_code, answer.headers.get("location", "")
    if status >= 500:
        return f"server error {status}"
    if policy.kind in ("public", "static"):
        return None if status not in (401, 403) else f"refused with {status}"
    if policy.kind == "second_step":
        # Only a half-logged-in session may use it: others are sent on, never served.
        ok = status == 401 if location == "" else status == 303
        return None if ok else f"expected a redirect, got {status}"
    stranger = principal in ("anonymous", "child")
    if policy.kind == "api":
        if stranger:
            return None if status == 401 else f"expected 401, got {status}"
    elif stranger:
        return (
            None
            if status == 303 and location.startswith("/console/login")
            else f"expected the login page, got {status} {location}"
        )
    if principal in policy.allowed:
        return None if status not in (401, 403) else f"refused with {status}"
    return None if status == 403 else f"expected 403, got {status}"


# Authorization does not depend on the database: SQLite only, to keep the suite quick.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_http_route_answers_each_principal_as_its_policy_says(
    make_live: MakeLive,
) -> None:
    live = await make_live(staff_write_burst=10_000, login_address_failures=10_000)
    routes = app_routes(live)
    missing = [r for r in routes if r[0] != "WS" and r not in HTTP_POLICY]
    assert not missing, f"routes without an authorization policy: {missing}"
    stale = [r for r in HTTP_POLICY if r not in routes]
    assert not stale, f"policies for routes that do not exist: {stale}"

    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        world = await build_world(live, http)
        problems = await call_every_route(world, routes)
    assert not problems, "\n".join(problems)


async def call_every_route(world: World, routes: list[tuple[str, str]]) -> list[str]:
    live = world.live
    problems: list[str] = []
    for method, path in routes:
        if method == "WS":
            continue
        policy = HTTP_POLICY[(method, path)]
        if method == "MOUNT":
            for principal in PRINCIPALS:
                answer = await request(
                    world, principal, "GET", f"{path}/{STATIC_FILES[path]}", policy
                )
                if answer.status_code != 200:
                    problems.append(f"{principal} GET {path}: {answer.status_code}")
            continue
        await check_shared_write_rules(world, method, path, policy, problems)
        for principal in PRINCIPALS:
            cookie = None
            if policy.throwaway and principal in STAFF:
                _ident, cookie = await quick_staff(live, world.identities[principal].role)
            answer = await request(world, principal, method, path, policy, cookie=cookie)
            wrong = verdict(policy, principal, answer)
            if wrong:
                problems.append(f"{principal} {method} {path}: {wrong}: {answer.text[:120]!r}")
    return problems


async def check_shared_write_rules(
    world: World, method: str, path: str, policy: Policy, problems: list[str]
) -> None:
    """Every form needs its CSRF token; every JSON write needs JSON from our origin."""
    if method == "GET" or policy.kind in ("static", "second_step"):
        return
    principal = next((p for p in policy.allowed if p in STAFF), "anonymous")
    cookie = None
    if policy.throwaway:
        _ident, cookie = await quick_staff(world.live, world.identities[principal].role)
    if path.startswith("/console"):
        for token in (None, "0" * 64):
            answer = await request(
                world, principal, method, path, policy, cookie=cookie, csrf_token=token
            )
            if answer.status_code != 403:
                problems.append(f"{method} {path} with CSRF token {token!r}: {answer.status_code}")
        return
    if (method, path) in NOT_JSON:
        return
    form = await request(world, principal, method, path, policy, cookie=cookie, json_body=False)
    if form.status_code != 415:
        problems.append(f"{method} {path} as a form: {form.status_code}, not 415")
    foreign = await request(
        world, principal, method, path, policy, cookie=cookie, origin="https://evil.example"
    )
    if foreign.status_code != 403:
        problems.append(f"{method} {path} from a foreign origin: {foreign.status_code}, not 403")


# --- the staff socket ----------------------------------------------------------------------

Outcome = str  # "ok" or an error code


@dataclass
class Chat:
    """A fresh chat of the counsellor, and what a message type's setup made for it."""

    cid: str
    extra: dict[str, str] = field(default_factory=dict)


Frame = Callable[[Chat, dict[str, StaffIdentity]], dict[str, Any]]
Setup = Callable[["SocketWorld", Chat], Awaitable[None]]


@dataclass(frozen=True)
class MessagePolicy:
    frame: Frame
    expect: dict[str, Outcome]  # by principal: counsellor, other, supervisor, admin
    setup: Setup | None = None
    # The message is about a child still waiting in the queue, not a chat taken.
    queued: bool = False


def everyone(outcome: Outcome = "ok") -> dict[str, Outcome]:
    return dict.fromkeys(STAFF, outcome)


def only_counsellor(refusal: Outcome = "forbidden") -> dict[str, Outcome]:
    return {"counsellor": "ok", "other": refusal, "supervisor": refusal, "admin": refusal}


def only_supervisors(refusal: Outcome = "forbidden") -> dict[str, Outcome]:
    return {"counsellor": refusal, "other": refusal, "supervisor": "ok", "admin": "ok"}


async def offer_to_other(world: SocketWorld, chat: Chat) -> None:
    counsellor = world.sockets["counsellor"]
    other_id = str(world.identities["other"].id)
    await counsellor.send(type="transfer", conversation_id=chat.cid, to_user_id=other_id)
    await world.sockets["other"].expect("transfer_offer", conversation_id=chat.cid)


async def a_block(world: SocketWorld, chat: Chat) -> None:
    supervisor = world.sockets["supervisor"]
    await supervisor.send(type="block", conversation_id=chat.cid, reason="fyerje", hours=1)
    chat.extra["block_id"] = (await supervisor.expect("blocked", conversation_id=chat.cid))[
        "block_id"
    ]


async def an_alert(world: SocketWorld, chat: Chat) -> None:
    async with world.db() as session:
        alert = (
            await session.execute(
                select(col(Alert.id)).where(col(Alert.conversation_id) == uuid.UUID(chat.cid))
            )
        ).scalar_one()
    chat.extra["alert_id"] = str(alert)


def conv(kind: str, **fields: Any) -> Frame:
    return lambda chat, _ids: {"type": kind, "conversation_id": chat.cid, **fields}


SOCKET_POLICY: dict[str, MessagePolicy] = {
    "ping": MessagePolicy(lambda _c, _i: {"type": "ping"}, everyone()),
    "status": MessagePolicy(lambda _c, _i: {"type": "status", "value": "available"}, everyone()),
    "take": MessagePolicy(conv("take"), everyone("conflict")),
    "send": MessagePolicy(conv("send", client_id="x1", body="Përshëndetje"), only_counsellor()),
    "typing": MessagePolicy(conv("typing", on=True), only_counsellor()),
    "read": MessagePolicy(conv("read", seq=1), only_counsellor()),
    "resume": MessagePolicy(conv("resume", last_seq=0), only_counsellor()),
    "end": MessagePolicy(conv("end"), only_counsellor()),
    # Supervisors may flag the risk of any chat they oversee.
    "risk": MessagePolicy(
        conv("risk", level="low"),
        {"counsellor": "ok", "other": "forbidden", "supervisor": "ok", "admin": "ok"},
    ),
    # Tags go into the chat's contact record: its counsellor and supervisors may edit it.
    "tag": MessagePolicy(
        conv("tag", categories=["violence.bullying"]),
        {"counsellor": "ok", "other": "forbidden", "supervisor": "ok", "admin": "ok"},
    ),
    "transfer": MessagePolicy(
        lambda chat, ids: {
            "type": "transfer",
            "conversation_id": chat.cid,
            "to_user_id": str(ids["spare"].id),
        },
        only_counsellor(),
    ),
    # Only the colleague offered the chat may answer the offer; to anyone else there is
    # no offer to answer (conflict), and nothing changes.
    "transfer_accept": MessagePolicy(
        conv("transfer_accept"),
        {"counsellor": "conflict", "other": "ok", "supervisor": "conflict", "admin": "conflict"},
        offer_to_other,
    ),
    "transfer_decline": MessagePolicy(
        conv("transfer_decline"),
        {"counsellor": "conflict", "other": "ok", "supervisor": "conflict", "admin": "conflict"},
        offer_to_other,
    ),
    "monitor": MessagePolicy(conv("monitor", on=True), only_supervisors()),
    "whisper": MessagePolicy(conv("whisper", body="Pyet për shkollën"), only_supervisors()),
    "takeover": MessagePolicy(conv("takeover"), only_supervisors()),
    "assign": MessagePolicy(
        lambda chat, ids: {
            "type": "assign",
            "conversation_id": chat.cid,
            "to_user_id": str(ids["other"].id),
        },
        only_supervisors(),
        queued=True,
    ),
    "block": MessagePolicy(conv("block", reason="fyerje", hours=1), only_supervisors()),
    "unblock": MessagePolicy(
        lambda chat, _ids: {"type": "unblock", "block_id": chat.extra["block_id"]},
        only_supervisors(),
        a_block,
    ),
    "list_blocks": MessagePolicy(lambda _c, _i: {"type": "list_blocks"}, only_supervisors()),
    "alert_ack": MessagePolicy(
        lambda chat, _ids: {"type": "alert_ack", "alert_id": chat.extra["alert_id"]},
        only_supervisors(),
        an_alert,
    ),
}


def staff_message_types() -> list[str]:
    """Every `type` a staff console may send, read from the protocol's union."""
    kinds = []
    for model in typing.get_args(protocol.StaffMessage):
        (kind,) = typing.get_args(model.model_fields["type"].annotation)
        kinds.append(kind)
    return kinds


@dataclass
class SocketWorld:
    live: LiveServer
    sockets: dict[str, Client]
    identities: dict[str, StaffIdentity]
    db: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient  # as the counsellor


async def fresh_chat(world: SocketWorld, *, queued: bool = False) -> Chat:
    """A child in danger (so there is an alert) whose chat the counsellor takes."""
    counsellor = world.sockets["counsellor"]
    child = await world.live.child(lang="sq")
    await child.send(type="start", pre_chat={"in_danger": True})
    await child.expect("state", status="queued")
    if queued:
        async with world.db() as session:
            waiting = await session.execute(
                select(col(Conversation.id)).where(col(Conversation.status) == "queued")
            )
            return Chat(str(waiting.scalar_one()))
    await counsellor.send(type="take")
    cid = str((await counsellor.expect("assigned"))["conversation_id"])
    await child.send(type="send", client_id="c1", body="Ndihmë")
    await counsellor.expect("msg", conversation_id=cid, seq=1)
    answer = await world.http.put(f"/api/records/{cid}", json={"contact_type": "counselling"})
    assert answer.status_code == 200, answer.text
    return Chat(cid)


async def outcome_of(client: Client, frame: dict[str, Any]) -> Outcome:
    """The error code answering `frame`, or "ok": frames are handled in order, so no
    error before the pong of a following ping means the frame was accepted."""
    await client.send(**frame)
    await client.send(type="ping")
    pongs = 2 if frame["type"] == "ping" else 1
    outcome = "ok"
    while pongs:
        answer = await client.recv()
        if answer["type"] == "error" and answer.get("in_reply_to") == frame["type"]:
            outcome = str(answer["code"])
        elif answer["type"] == "pong":
            pongs -= 1
    return outcome


async def close_code_without_a_session(live: LiveServer, cookie: str | None) -> int | None:
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"} if cookie else {}
    raw = await websockets.connect(f"{live.ws_url}/ws/staff", additional_headers=headers)
    try:
        with pytest.raises(ConnectionClosed) as closed:
            await raw.send('{"type": "ping"}')
            await raw.recv()
        return closed.value.rcvd.code if closed.value.rcvd else None
    finally:
        await raw.close()


# Authorization does not depend on the database: SQLite only, to keep the suite quick.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_staff_message_type_answers_each_principal_as_its_policy_says(
    make_live: MakeLive,
) -> None:
    live = await make_live(new_chats_per_address=10_000)
    kinds = staff_message_types()
    missing = [k for k in kinds if k not in SOCKET_POLICY]
    assert not missing, f"staff message types without an authorization policy: {missing}"
    assert not [k for k in SOCKET_POLICY if k not in kinds]

    sockets: dict[str, Client] = {}
    identities: dict[str, StaffIdentity] = {}
    for principal, role in (
        ("counsellor", "counsellor"),
        ("other", "counsellor"),
        ("supervisor", "supervisor"),
        ("admin", "admin"),
        ("spare", "counsellor"),  # a colleague to transfer to
    ):
        client = await on_duty(live, role)
        assert client.identity is not None
        sockets[principal], identities[principal] = client, client.identity
    cookie = {SESSION_COOKIE: sockets["counsellor"].cookie or ""}
    async with (
        database(live) as db,
        httpx.AsyncClient(base_url=live.url, cookies=cookie, timeout=10) as http,
    ):
        async with db() as session, session.begin():
            # Room for every test chat (they are ended straight in the database).
            await session.execute(update(StaffUser).values(max_chats=20))
        world = SocketWorld(live, sockets, identities, db, http)
        problems = await send_every_message(world, kinds)
    assert not problems, "\n".join(problems)


async def send_every_message(world: SocketWorld, kinds: list[str]) -> list[str]:
    live, sockets, identities = world.live, world.sockets, world.identities
    child = await live.child(lang="sq")
    problems: list[str] = []
    for kind in kinds:
        policy = SOCKET_POLICY[kind]
        for principal in ("anonymous", "child"):
            code = await close_code_without_a_session(
                live, None if principal == "anonymous" else child.token
            )
            if code != 4401:
                problems.append(f"{principal} {kind}: closed with {code}, not 4401")
        # Refusals first, all on one chat: a refusal must change nothing. Each accepted
        # message may change the chat, so the next accepted one gets a fresh chat.
        order = sorted(STAFF, key=lambda p: policy.expect[p] == "ok")
        chat: Chat | None = None
        for principal in order:
            if chat is None:
                chat = await fresh_chat(world, queued=policy.queued)
                if policy.setup is not None:
                    await policy.setup(world, chat)
            got = await outcome_of(sockets[principal], policy.frame(chat, identities))
            if got != policy.expect[principal]:
                problems.append(f"{principal} {kind}: {got}, not {policy.expect[principal]}")
            if got == "ok":
                await _lift_blocks(world)
                await _end_quietly(world, chat)
                chat = None
        if chat is not None:
            await _end_quietly(world, chat)
    return problems


async def _lift_blocks(world: SocketWorld) -> None:
    """A block also pauses new chats from the child's address: lift every one."""
    supervisor = world.sockets["supervisor"]
    await supervisor.send(type="list_blocks")
    for block in (await supervisor.expect("blocks"))["items"]:
        await supervisor.send(type="unblock", block_id=block["block_id"])
        await supervisor.expect("unblocked", block_id=block["block_id"])


async def _end_quietly(world: SocketWorld, chat: Chat) -> None:
    """Out of everyone's way (capacity, queue), without going through the counsellor."""
    async with world.db() as session, session.begin():
        await session.execute(
            update(Conversation)
            .where(col(Conversation.id) == uuid.UUID(chat.cid))
            .values(status="ended", assigned_user_id=None)
        )
