"""Rendering the casework pages: templates, the sq/en strings, CSRF tokens, and the page
wrapper that sends strangers to the login page and turns refusals into clear pages."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

import counsellor_console
from chat_server import csrf, taxonomy
from chat_server.accounts import SESSION_COOKIE, StaffIdentity
from chat_server.assets import Assets
from chat_server.cases import HELPLINE_TZ
from chat_server.errors import Refused
from chat_server.runtime import Services, services_of
from chat_server.settings import Settings
from chat_server.taxonomy import Taxonomy
from counsellor_console.casework_http import STAFF, current_staff, log_refusal, status_of

ROOT = Path(counsellor_console.__file__).parent
LANGS = ("sq", "en")


@dataclass(frozen=True, slots=True)
class PageCall:
    request: Request
    services: Services
    staff: StaffIdentity
    view: View
    lang: str

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)

    async def taxonomy(self) -> Taxonomy:
        return await taxonomy.load(self.services.db)

    async def render(
        self, template: str, *, status: int = 200, error: Refused | None = None, **context: Any
    ) -> Response:
        return await self.view.render(self, template, status=status, error=error, **context)

    def redirect(self, path: str, **params: Any) -> Response:
        return RedirectResponse(self.view.href(self.lang, path, **params), status_code=303)


class View:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.templates = Jinja2Templates(directory=ROOT / "templates")
        self.assets = Assets(ROOT / "static", "/console/static")
        self.strings = {
            lang: json.loads((ROOT / "i18n" / f"casework_{lang}.json").read_text("utf-8"))
            for lang in LANGS
        }
        env = self.templates.env
        env.filters["local"] = local_time
        env.filters["day"] = lambda d: d.isoformat() if isinstance(d, date) else ""
        env.globals["code_list"] = taxonomy.code_list

    def lang_of(self, request: Request) -> str:
        lang = request.query_params.get("lang", self.settings.default_lang)
        return lang if lang in LANGS else self.settings.default_lang

    def href(self, lang: str, path: str, **params: Any) -> str:
        query = {"lang": lang, **{k: v for k, v in params.items() if v not in (None, "")}}
        return f"{path}?{urlencode(query)}"

    async def render(
        self,
        call: PageCall,
        template: str,
        *,
        status: int = 200,
        error: Refused | None = None,
        **context: Any,
    ) -> Response:
        lang = call.lang
        strings = self.strings[lang]
        other = "en" if lang == "sq" else "sq"
        cookie = call.request.cookies.get(SESSION_COOKIE, "")

        def href(path: str, **params: Any) -> str:
            return self.href(lang, path, **params)

        def name(kind: str, code: str | None) -> str:
            return taxonomy.name_of(kind, code, lang) if code else ""

        response = self.templates.TemplateResponse(
            call.request,
            f"casework/{template}",
            {
                "lang": lang,
                "other_lang": other,
                "t": strings,
                "staff": call.staff,
                "csrf_field": csrf.FIELD,
                "csrf_token": csrf.token(self.settings.secret_key, cookie),
                "asset": self.assets.url,
                "href": href,
                "name": name,
                "path": call.request.url.path,
                "query": dict(call.request.query_params),
                "switch_href": call.request.url.path
                + "?"
                + urlencode({**call.request.query_params, "lang": other, "saved": ""}),
                "error": error,
                "error_field": error.context.get("field") if error else None,
                "saved": call.query("saved") == "1",
                **context,
            },
            status_code=status,
        )
        response.headers["Cache-Control"] = "no-store"
        return response


def local_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(HELPLINE_TZ)).strftime("%Y-%m-%d %H:%M")


def page(
    view: View,
    handler: Callable[[PageCall], Awaitable[Response]],
    *,
    roles: tuple[str, ...] = STAFF,
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        lang = view.lang_of(request)
        staff = await current_staff(request)
        if staff is None:
            return RedirectResponse(f"/console/login?lang={lang}", status_code=303)
        call = PageCall(request, services_of(request), staff, view, lang)
        if staff.role not in roles:
            return await call.render(
                "error.html", status=403, error=Refused("forbidden", "forbidden")
            )
        try:
            return await handler(call)
        except Refused as exc:
            await log_refusal(call.services, staff, exc)
            return await call.render("error.html", status=status_of(exc)[0], error=exc)

    return endpoint
