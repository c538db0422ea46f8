"""The library on the staff side: a JSON API the console reads (canned responses,
information resources, colleagues to transfer to) and pages where administrators keep
the library. Documented in docs/api.md ("Library")."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import func, select
from sqlmodel import col
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from chat_server import csrf, library
from chat_server.accounts import SESSION_COOKIE, StaffIdentity
from chat_server.assets import Assets, load_strings, strings_json
from chat_server.errors import Refused
from chat_server.runtime import services_of
from chat_server.settings import Settings
from counsellor_console.casework_http import (
    ADMINS,
    Call,
    api,
    current_staff,
    log_refusal,
    read_form,
    status_of,
)
from counsellor_console.routes import ROOT
from db.library import CannedResponse, InfoResource
from db.models import Conversation, StaffUser

LANGS = ("sq", "en")


# --- the JSON API --------------------------------------------------------------------------


def _item_id(call: Call) -> uuid.UUID:
    try:
        return uuid.UUID(call.param("item_id"))
    except ValueError:
        raise Refused("not_found", f"no library item {call.param('item_id')!r}") from None


def _object(call: Call) -> dict[str, Any]:
    if not isinstance(call.body, dict):
        raise Refused("bad_request", "send a JSON object")
    return call.body


async def get_library(call: Call) -> Response:
    """Active items for everyone; `?all=1` adds retired ones for administrators."""
    lang = call.query("lang") or None
    if lang is not None and lang not in LANGS:
        raise Refused("bad_request", f"lang must be sq or en, not {lang!r}", field="lang")
    everything = call.query("all") in ("1", "true") and call.staff.role in ADMINS
    canned, resources = await library.listing(call.services.db, lang=lang, everything=everything)
    return JSONResponse(
        {
            "topics": list(library.TOPICS),
            "canned": [library.canned_json(c) for c in canned],
            "resources": [library.resource_json(r) for r in resources],
        }
    )


async def post_canned(call: Call) -> Response:
    item = await library.save_canned(call.services.db, call.staff, _object(call))
    return JSONResponse(library.canned_json(item), status_code=201)


async def patch_canned(call: Call) -> Response:
    item = await library.save_canned(call.services.db, call.staff, _object(call), _item_id(call))
    return JSONResponse(library.canned_json(item))


async def post_resource(call: Call) -> Response:
    item = await library.save_resource(call.services.db, call.staff, _object(call))
    return JSONResponse(library.resource_json(item), status_code=201)


async def patch_resource(call: Call) -> Response:
    item = await library.save_resource(call.services.db, call.staff, _object(call), _item_id(call))
    return JSONResponse(library.resource_json(item))


async def post_examples(call: Call) -> Response:
    return JSONResponse(await library.load_examples(call.services.db, call.staff))


async def available_staff(call: Call) -> Response:
    """Colleagues a chat can be transferred to: active, available, not me; least loaded
    first. (Counsellors do not get the supervisors' floor frame, which lists everyone.)"""
    load = (
        select(func.count())
        .select_from(Conversation)
        .where(
            col(Conversation.assigned_user_id) == col(StaffUser.id),
            col(Conversation.status) == "active",
        )
        .scalar_subquery()
    )
    statement = select(
        col(StaffUser.id), col(StaffUser.display_name), col(StaffUser.max_chats), load
    ).where(
        col(StaffUser.status) == "available",
        col(StaffUser.active).is_(True),
        col(StaffUser.id) != call.staff.id,
    )
    async with call.services.db() as session:
        rows = (await session.execute(statement)).all()
    colleagues = [
        {"id": str(user_id), "name": name, "load": int(count), "capacity": capacity}
        for user_id, name, capacity, count in rows
    ]
    colleagues.sort(key=lambda c: (c["load"] >= c["capacity"], c["load"], c["name"].lower()))
    return JSONResponse(colleagues)


# --- the administrators' pages ---------------------------------------------------------------


class Pages:
    """Server-rendered forms (no script needed), each POST checked for its CSRF token."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.templates = Jinja2Templates(directory=ROOT / "templates")
        self.assets = Assets(ROOT / "static", "/console/static")
        self.strings = {lang: load_strings(ROOT / "i18n", lang) for lang in LANGS}

    def lang_of(self, request: Request) -> str:
        lang = request.query_params.get("lang", self.settings.default_lang)
        return lang if lang in LANGS else self.settings.default_lang

    def render(
        self,
        request: Request,
        staff: StaffIdentity,
        template: str,
        *,
        status: int = 200,
        error: Refused | None = None,
        **context: Any,
    ) -> Response:
        lang = self.lang_of(request)
        other = "en" if lang == "sq" else "sq"
        strings = self.strings[lang]
        query = {k: v for k, v in request.query_params.items() if k not in ("lang", "saved")}
        response = self.templates.TemplateResponse(
            request,
            f"library/{template}",
            {
                "lang": lang,
                "other_lang": other,
                "strings": strings,
                "strings_json": strings_json(strings),
                "static_url": self.assets.url,
                "staff": staff,
                "csrf_field": csrf.FIELD,
                "csrf_token": csrf.token(
                    self.settings.secret_key, request.cookies.get(SESSION_COOKIE, "")
                ),
                "href": lambda path, **params: _href(lang, path, **params),
                "switch_href": request.url.path + "?" + urlencode({**query, "lang": other}),
                "topics": library.TOPICS,
                "error": error,
                "error_field": error.context.get("field") if error else None,
                "saved": request.query_params.get("saved", ""),
                **context,
            },
            status_code=status,
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    def page(
        self, handler: Callable[[Request, StaffIdentity], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Administrators only: others are sent to sign in, or told plainly they may not."""

        async def endpoint(request: Request) -> Response:
            staff = await current_staff(request)
            lang = self.lang_of(request)
            if staff is None:
                return RedirectResponse(f"/console/login?lang={lang}", status_code=303)
            if staff.role not in ADMINS:
                return self.render(request, staff, "forbidden.html", status=403)
            try:
                return await handler(request, staff)
            except Refused as exc:
                await log_refusal(services_of(request), staff, exc)
                status = status_of(exc)[0]
                return self.render(request, staff, "forbidden.html", status=status, error=exc)

        return endpoint

    # --- handlers ------------------------------------------------------------------------

    async def index(self, request: Request, staff: StaffIdentity) -> Response:
        canned, resources = await library.listing(services_of(request).db, everything=True)
        # The page's language first; resources stay grouped by topic.
        lang = self.lang_of(request)
        canned.sort(key=lambda c: (c.lang != lang, c.title.lower()))
        resources.sort(key=lambda r: (library.TOPICS.index(r.topic), r.lang != lang))
        return self.render(request, staff, "index.html", canned=canned, resources=resources)

    async def canned_form(
        self,
        request: Request,
        staff: StaffIdentity,
        *,
        error: Refused | None = None,
        form: dict[str, Any] | None = None,
    ) -> Response:
        item = None
        if "item_id" in request.path_params:
            item = await library.canned_response(services_of(request).db, _path_id(request))
        values = form if form is not None else _canned_values(item, self.lang_of(request))
        status = 200
        if error is not None:
            await log_refusal(services_of(request), staff, error)
            status = status_of(error)[0]
        return self.render(
            request, staff, "canned.html", status=status, error=error, item=item, form=values
        )

    async def save_canned(self, request: Request, staff: StaffIdentity) -> Response:
        form = await read_form(request)
        item_id = _path_id(request) if "item_id" in request.path_params else None
        data = {
            "lang": form.get("lang", ""),
            "title": form.get("title", ""),
            "body": form.get("body", ""),
            "tags": [t for t in str(form.get("tags", "")).split(",") if t.strip()],
            "active": "active" in form,
        }
        try:
            await library.save_canned(services_of(request).db, staff, data, item_id)
        except Refused as exc:
            return await self.canned_form(request, staff, error=exc, form=form)
        return self.redirect(request, "/console/library", saved="canned")

    async def resource_form(
        self,
        request: Request,
        staff: StaffIdentity,
        *,
        error: Refused | None = None,
        form: dict[str, Any] | None = None,
    ) -> Response:
        item = None
        if "item_id" in request.path_params:
            item = await library.resource(services_of(request).db, _path_id(request))
        values = form if form is not None else _resource_values(item, self.lang_of(request))
        status = 200
        if error is not None:
            await log_refusal(services_of(request), staff, error)
            status = status_of(error)[0]
        return self.render(
            request, staff, "resource.html", status=status, error=error, item=item, form=values
        )

    async def save_resource(self, request: Request, staff: StaffIdentity) -> Response:
        form = await read_form(request)
        item_id = _path_id(request) if "item_id" in request.path_params else None
        data = {
            "lang": form.get("lang", ""),
            "topic": form.get("topic", ""),
            "title": form.get("title", ""),
            "body": form.get("body", ""),
            "url": form.get("url", ""),
            "active": "active" in form,
        }
        try:
            await library.save_resource(services_of(request).db, staff, data, item_id)
        except Refused as exc:
            return await self.resource_form(request, staff, error=exc, form=form)
        return self.redirect(request, "/console/library", saved="resource")

    async def load_examples(self, request: Request, staff: StaffIdentity) -> Response:
        await read_form(request)
        await library.load_examples(services_of(request).db, staff)
        return self.redirect(request, "/console/library", saved="examples")

    def redirect(self, request: Request, path: str, **params: Any) -> Response:
        return RedirectResponse(_href(self.lang_of(request), path, **params), status_code=303)


def _href(lang: str, path: str, **params: Any) -> str:
    query = {"lang": lang, **{k: v for k, v in params.items() if v not in (None, "")}}
    return f"{path}?{urlencode(query)}"


def _path_id(request: Request) -> uuid.UUID:
    raw = str(request.path_params["item_id"])
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Refused("not_found", f"no library item {raw!r}") from None


def _canned_values(item: CannedResponse | None, lang: str) -> dict[str, Any]:
    if item is None:
        return {"lang": lang, "title": "", "body": "", "tags": "", "active": "on"}
    return {
        "lang": item.lang,
        "title": item.title,
        "body": item.body,
        "tags": ", ".join(item.tags),
        "active": "on" if item.active else None,
    }


def _resource_values(item: InfoResource | None, lang: str) -> dict[str, Any]:
    if item is None:
        return {"lang": lang, "topic": "", "title": "", "body": "", "url": "", "active": "on"}
    return {
        "lang": item.lang,
        "topic": item.topic,
        "title": item.title,
        "body": item.body,
        "url": item.url,
        "active": "on" if item.active else None,
    }


def routes(settings: Settings) -> list[Route]:
    get, post, patch = ["GET"], ["POST"], ["PATCH"]
    pages = Pages(settings)
    return [
        Route("/api/library", api(get_library), methods=get),
        Route("/api/library/canned", api(post_canned, roles=ADMINS), methods=post),
        Route("/api/library/canned/{item_id}", api(patch_canned, roles=ADMINS), methods=patch),
        Route("/api/library/resources", api(post_resource, roles=ADMINS), methods=post),
        Route("/api/library/resources/{item_id}", api(patch_resource, roles=ADMINS), methods=patch),
        Route("/api/library/examples", api(post_examples, roles=ADMINS), methods=post),
        Route("/api/staff/available", api(available_staff), methods=get),
        Route("/console/library", pages.page(pages.index), methods=get),
        Route("/console/library/canned/new", pages.page(pages.canned_form), methods=get),
        Route("/console/library/canned/new", pages.page(pages.save_canned), methods=post),
        Route("/console/library/canned/{item_id}", pages.page(pages.canned_form), methods=get),
        Route("/console/library/canned/{item_id}", pages.page(pages.save_canned), methods=post),
        Route("/console/library/resources/new", pages.page(pages.resource_form), methods=get),
        Route("/console/library/resources/new", pages.page(pages.save_resource), methods=post),
        Route("/console/library/resources/{item_id}", pages.page(pages.resource_form), methods=get),
        Route(
            "/console/library/resources/{item_id}", pages.page(pages.save_resource), methods=post
        ),
        Route("/console/library/examples", pages.page(pages.load_examples), methods=post),
    ]
