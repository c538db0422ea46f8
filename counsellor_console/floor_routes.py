"""The supervisor's floor page, and the audit log for administrators: a server-rendered
page to browse it and a JSON API. Reading the log is itself audited; so is being refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

import counsellor_console
from chat_server import accounts, audit, audit_log
from chat_server.accounts import SESSION_COOKIE, StaffIdentity
from chat_server.assets import Assets, load_strings, strings_json
from chat_server.audit_log import Cursor
from chat_server.errors import Refused
from chat_server.runtime import services_of
from chat_server.settings import Settings

ROOT = Path(counsellor_console.__file__).parent
LANGS = ("sq", "en")
SUPERVISORS = ("supervisor", "admin")
# The audit log records supervisors' own use of their powers (silent monitoring, take-overs,
# blocks), so it is read by administrators only: the watchers do not review their own watch.
AUDITORS = ("admin",)
FILTERS = ("since", "until", "actor", "action", "target")
PAGE_SIZE = 50
API_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Visit:
    request: Request
    staff: StaffIdentity
    lang: str


Handler = Callable[[Visit], Awaitable[Response]]


def routes(settings: Settings) -> list[Route]:
    templates = Jinja2Templates(directory=ROOT / "templates")
    assets = Assets(ROOT / "static", "/console/static")
    strings = {lang: load_strings(ROOT / "i18n", f"floor_{lang}") for lang in LANGS}
    zone = ZoneInfo(settings.timezone)
    templates.env.filters["local"] = lambda at: _local(at, zone)
    templates.env.filters["plain"] = audit_log.plain

    def lang_of(request: Request) -> str:
        lang = request.query_params.get("lang", settings.default_lang)
        return lang if lang in LANGS else settings.default_lang

    def render(visit: Visit, template: str, status: int = 200, **extra: Any) -> Response:
        lang = visit.lang
        other = "en" if lang == "sq" else "sq"
        query = {**visit.request.query_params, "lang": other}
        response = templates.TemplateResponse(
            visit.request,
            f"floor/{template}",
            {
                "lang": lang,
                "other_lang": other,
                "t": strings[lang],
                "strings_json": strings_json(strings[lang]),
                "asset": assets.url,
                "staff": visit.staff,
                "path": visit.request.url.path,
                "switch_href": f"{visit.request.url.path}?{urlencode(query)}",
                "href": lambda path, **params: _href(lang, path, params),
                **extra,
            },
            status_code=status,
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    def page(
        roles: tuple[str, ...], denied_action: str, handler: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        """Strangers to the login page; the wrong role to a 403 page (and the audit log)."""

        async def endpoint(request: Request) -> Response:
            lang = lang_of(request)
            staff = await _staff(request)
            if staff is None:
                return RedirectResponse(f"/console/login?lang={lang}", status_code=303)
            visit = Visit(request, staff, lang)
            if staff.role not in roles:
                await _denied(request, staff, denied_action)
                return render(visit, "forbidden.html", status=403)
            return await handler(visit)

        return endpoint

    async def floor_page(visit: Visit) -> Response:
        config = {
            "me": {"id": str(visit.staff.id), "name": visit.staff.name, "role": visit.staff.role},
            "wait_alert_s": settings.wait_alert_s,
            "unanswered_alert_s": settings.unanswered_alert_s,
            "block_default_hours": settings.block_default_hours,
            "block_max_hours": settings.block_max_hours,
            "tell_counsellor": settings.tell_counsellor_about_monitoring,
        }
        return render(
            visit,
            "floor.html",
            config_json=strings_json(config),
            tell_counsellor=settings.tell_counsellor_about_monitoring,
        )

    async def audit_page(visit: Visit) -> Response:
        services = services_of(visit.request)
        params = visit.request.query_params
        form = _form(params)
        error: Refused | None = None
        page = audit_log.Page([], None, None)
        total = 0
        try:
            filters = _filters(form, zone)
            before = _cursor(params.get("before"))
            after = None if before else _cursor(params.get("after"))
            page = await audit_log.read_page(
                services.db, **filters, limit=PAGE_SIZE, before=before, after=after
            )
            total = await audit_log.count(services.db, **filters)
        except Refused as exc:
            error = exc
        seen = {
            **form,
            "before": params.get("before", "")[:80],
            "after": params.get("after", "")[:80],
        }
        await audit_log.viewed(services.db, actor_user_id=visit.staff.id, via="page", filters=seen)
        base = {"lang": visit.lang, **{k: v for k, v in form.items() if v}}
        return render(
            visit,
            "audit.html",
            status=400 if error else 200,
            form=form,
            page=page,
            total=total,
            error=error,
            actors=await audit_log.actors(services.db),
            action_groups=_groups(await audit_log.actions(services.db)),
            older_href=f"?{urlencode({**base, 'before': str(page.older)})}" if page.older else "",
            newer_href=f"?{urlencode({**base, 'after': str(page.newer)})}" if page.newer else "",
            newest_href=f"?{urlencode(base)}",
            filter_href=lambda **extra: f"?{urlencode({'lang': visit.lang, **extra})}",
            describe=lambda row: _describe(row, strings[visit.lang]),
            zone_name=settings.timezone,
        )

    async def audit_api(request: Request) -> Response:
        """GET /api/audit?since=&until=&actor=&action=&target=&limit=&before= (admins)."""
        staff = await _staff(request)
        if staff is None:
            return _error(401, "unauthorized", "log in first")
        services = services_of(request)
        params = request.query_params
        form = _form(params)
        if staff.role not in AUDITORS:
            await audit_log.viewed(
                services.db, actor_user_id=staff.id, via="api", filters=form, allowed=False
            )
            return _error(403, "forbidden", "the audit log is for administrators")
        try:
            filters = _filters(form, zone)
            limit = _limit(params.get("limit"))
            page = await audit_log.read_page(
                services.db, **filters, limit=limit, before=_cursor(params.get("before"))
            )
        except Refused as exc:
            return _error(400, exc.code, exc.message)
        seen = {
            **form,
            "limit": params.get("limit", "")[:8],
            "before": params.get("before", "")[:80],
        }
        await audit_log.viewed(services.db, actor_user_id=staff.id, via="api", filters=seen)
        response = JSONResponse(
            {"items": page.rows, "next_before": str(page.older) if page.older else None}
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    return [
        Route(
            "/console/floor", page(SUPERVISORS, "floor.view.denied", floor_page), methods=["GET"]
        ),
        Route("/console/audit", page(AUDITORS, "audit.view.denied", audit_page), methods=["GET"]),
        Route("/api/audit", audit_api, methods=["GET"]),
    ]


# --- helpers ---------------------------------------------------------------------------------


async def _staff(request: Request) -> StaffIdentity | None:
    services = services_of(request)
    return await accounts.session_identity(
        services.db, services.settings, request.cookies.get(SESSION_COOKIE)
    )


async def _denied(request: Request, staff: StaffIdentity, action: str) -> None:
    services = services_of(request)
    if action.startswith(audit_log.VIEW):
        await audit_log.viewed(services.db, actor_user_id=staff.id, via="page", allowed=False)
        return
    async with services.db() as session, session.begin():
        audit.record(
            session, action=action, actor_user_id=staff.id, target="floor", role=staff.role
        )


def _form(params: Mapping[str, str]) -> dict[str, str]:
    """The filters as typed, trimmed and bounded (they are echoed and audited)."""
    return {k: params.get(k, "").strip()[:120] for k in FILTERS}


def _filters(form: dict[str, str], zone: ZoneInfo) -> dict[str, Any]:
    since = audit_log.parse_moment(form["since"], zone)
    until = audit_log.parse_moment(form["until"], zone, end=True)
    if since is not None and until is not None and until <= since:
        raise Refused("bad_request", "the end of the range is before its start")
    return {
        "since": since,
        "until": until,
        "actor": form["actor"] or None,
        "action": form["action"] or None,
        "target": form["target"] or None,
    }


def _cursor(text: str | None) -> Cursor | None:
    return Cursor.parse(text) if text else None


def _limit(text: str | None) -> int:
    if not text:
        return API_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= audit_log.MAX_LIMIT:
        raise Refused("bad_request", f"limit must be 1 to {audit_log.MAX_LIMIT}, not {text!r}")
    return int(text)


def _groups(actions: list[str]) -> list[tuple[str, list[str]]]:
    """Actions by family ("auth" -> auth.login, auth.logout...), for the filter's choices."""
    groups: dict[str, list[str]] = {}
    for action in actions:
        groups.setdefault(action.split(".")[0], []).append(action)
    return sorted(groups.items())


def _describe(row: dict[str, Any], t: dict[str, Any]) -> dict[str, str]:
    """The row's action and target in plain words, for the page."""
    action = row["action"]
    words = t.get(f"action.{action}")
    if words is None and action.endswith(".denied"):
        base = t.get(f"action.{action.removesuffix('.denied')}", action.removesuffix(".denied"))
        words = t["action_denied"].format(action=base)
    kind, _, ident = (row["target"] or "").partition(":")
    noun = t.get(f"target.{kind}")
    if not row["target"]:
        target = ""
    elif noun is None:
        target = row["target"]
    else:
        target = f"{noun} {ident[:8]}" if ident else noun
    return {"action": words or action, "target": target}


def _local(at: str, zone: ZoneInfo) -> str:
    moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _href(lang: str, path: str, params: dict[str, Any]) -> str:
    return f"{path}?{urlencode({'lang': lang, **params})}"


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)
