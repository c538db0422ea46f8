"""The staff member's own security pages: the login's second step, two-step login set-up
and management, changing the password, and logging out everywhere.

Plain server-rendered forms (no script), each with the session's CSRF token; a
refusal shows the same page again with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

import counsellor_console
from chat_server import accounts, csrf, login, two_factor
from chat_server.accounts import SESSION_COOKIE, SessionState
from chat_server.assets import Assets, load_strings, strings_json
from chat_server.errors import Refused
from chat_server.runtime import Services, services_of
from chat_server.settings import Settings
from chat_server.sockets import address_of
from counsellor_console.casework_http import read_form
from counsellor_console.casework_view import local_time

ROOT = Path(counsellor_console.__file__).parent
LANGS = ("sq", "en")
MAX_FORM_BYTES = 4096


def set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_lifetime_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=settings.secure_cookies
    )


@dataclass(frozen=True, slots=True)
class Page:
    request: Request
    services: Services
    state: SessionState
    lang: str


Handler = Callable[[Page], Awaitable[Response]]


class Pages:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.templates = Jinja2Templates(directory=ROOT / "templates")
        self.templates.env.filters["local"] = local_time
        self.assets = Assets(ROOT / "static", "/console/static")
        self.strings = {lang: load_strings(ROOT / "i18n", lang) for lang in LANGS}
        self.own = {
            lang: json.loads((ROOT / "i18n" / f"security_{lang}.json").read_text("utf-8"))
            for lang in LANGS
        }

    def lang_of(self, request: Request) -> str:
        lang = request.query_params.get("lang", self.settings.default_lang)
        return lang if lang in LANGS else self.settings.default_lang

    def render(
        self,
        page: Page,
        template: str,
        title: str,
        *,
        status: int = 200,
        error: str | None = None,
        error_field: str | None = None,
        **context: Any,
    ) -> Response:
        lang = page.lang
        cookie = page.request.cookies.get(SESSION_COOKIE, "")
        response = self.templates.TemplateResponse(
            page.request,
            template,
            {
                "lang": lang,
                "other_lang": "en" if lang == "sq" else "sq",
                "strings": self.strings[lang],
                "strings_json": strings_json(self.strings[lang]),
                "static_url": self.assets.url,
                "s": self.own[lang],
                "page_title": title,
                "staff": page.state.staff,
                "full_session": page.state.step == "ok",
                "csrf_field": csrf.FIELD,
                "csrf_token": csrf.token(self.settings.secret_key, cookie),
                "error": error,
                "error_field": error_field,
                **context,
            },
            status_code=status,
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    def page(
        self, handler: Handler, *, steps: tuple[str, ...] = ("ok",)
    ) -> Callable[[Request], Awaitable[Response]]:
        """A page for a live session at one of `steps`; others go where they belong."""

        async def endpoint(request: Request) -> Response:
            services = services_of(request)
            lang = self.lang_of(request)
            state = await accounts.session_state(
                services.db, self.settings, request.cookies.get(SESSION_COOKIE)
            )
            if state is None:
                return RedirectResponse(f"/console/login?lang={lang}", status_code=303)
            if state.step not in steps:
                return RedirectResponse(next_page(state, lang), status_code=303)
            page = Page(request, services, state, lang)
            try:
                return await handler(page)
            except Refused as exc:
                status = {"forbidden": 403, "rate_limited": 429, "not_found": 404}.get(
                    exc.code, 400
                )
                message = self.own[lang]["form_expired"] if _is_csrf(exc) else exc.message
                return self.render(
                    page, "security_error.html", "error_title", status=status, error=message
                )

        return endpoint


def _is_csrf(exc: Refused) -> bool:
    return exc.code == "forbidden" and "expired" in exc.message


def next_page(state: SessionState, lang: str) -> str:
    """Where a session at this step goes: the console, or the step still due."""
    if state.step == "second_factor":
        return f"/console/login/2fa?lang={lang}"
    if state.step == "setup_second_factor":
        return f"/console/account/2fa?lang={lang}"
    return f"/console?lang={lang}"


def routes(settings: Settings) -> list[Route]:
    pages = Pages(settings)
    s = pages.own

    # --- the login's second step ----------------------------------------------------------

    async def second_step_form(page: Page) -> Response:
        return pages.render(page, "twofactor_login.html", "login2fa_title")

    async def second_step(page: Page) -> Response:
        form = await read_form(page.request, MAX_FORM_BYTES)
        limits = page.services.limits.login_addresses
        address = address_of(page.request)
        if limits.blocked(address):
            return pages.render(
                page,
                "twofactor_login.html",
                "login2fa_title",
                status=429,
                error=s[page.lang]["code_rate_limited"],
            )
        result = await login.second_factor_step(
            page.services.db, settings, page.state, str(form.get("code", ""))[:32]
        )
        if result.outcome == "throttled":
            return pages.render(
                page,
                "twofactor_login.html",
                "login2fa_title",
                status=429,
                error=s[page.lang]["code_rate_limited"],
            )
        if result.outcome != "ok" or result.token is None:
            limits.failed(address)
            return pages.render(
                page,
                "twofactor_login.html",
                "login2fa_title",
                status=401,
                error=s[page.lang]["code_wrong"],
            )
        response = RedirectResponse(f"/console?lang={page.lang}", status_code=303)
        set_session_cookie(response, result.token, settings)
        return response

    async def cancel_second_step(page: Page) -> Response:
        await read_form(page.request, MAX_FORM_BYTES)
        await accounts.log_out(page.services.db, page.request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(f"/console/login?lang={page.lang}", status_code=303)
        clear_session_cookie(response, settings)
        return response

    # --- the account page -----------------------------------------------------------------

    async def account(page: Page) -> Response:
        db = page.services.db
        return pages.render(
            page,
            "account.html",
            "account_title",
            two_factor=page.state.two_factor,
            codes_left=await login.recovery_codes_left(db, page.state.staff.id),
            sessions=await accounts.sessions_of(db, settings, page.state.staff.id),
        )

    async def logout_everywhere(page: Page) -> Response:
        await read_form(page.request, MAX_FORM_BYTES)
        staff = page.state.staff
        await accounts.log_out_everywhere(
            page.services.db, page.services.hub, staff.id, actor=staff
        )
        response = RedirectResponse(f"/console/login?lang={page.lang}", status_code=303)
        clear_session_cookie(response, settings)
        return response

    # --- the password ---------------------------------------------------------------------

    async def password_form(page: Page) -> Response:
        return pages.render(page, "password.html", "password_title")

    async def change_password(page: Page) -> Response:
        form = await read_form(page.request, MAX_FORM_BYTES)
        strings = s[page.lang]
        current = str(form.get("current_password", ""))
        new = str(form.get("new_password", ""))

        def again(status: int, error: str, field: str) -> Response:
            return pages.render(
                page,
                "password.html",
                "password_title",
                status=status,
                error=error,
                error_field=field,
            )

        if new != str(form.get("repeat_password", "")):
            return again(400, strings["password_mismatch"], "password")
        staff = page.state.staff
        if not await login.check_password(page.services.db, settings, staff, current):
            return again(400, strings["password_wrong"], "current_password")
        try:
            await accounts.change_password(
                page.services.db, page.services.hub, staff, new_password=new
            )
        except Refused as exc:
            return again(400, exc.message, "password")
        return pages.render(
            page, "password.html", "password_title", notice=strings["password_changed"]
        )

    # --- two-step login -------------------------------------------------------------------

    async def two_factor_page(page: Page) -> Response:
        db = page.services.db
        staff = page.state.staff
        required = accounts.second_factor_required(settings, staff.role)
        if page.state.two_factor:
            return pages.render(
                page,
                "twofactor.html",
                "twofactor_title",
                required=required,
                codes_left=await login.recovery_codes_left(db, staff.id),
            )
        setup = await login.pending_setup(db, settings, staff) or await login.begin_setup(
            db, settings, staff
        )
        return _setup_page(page, setup, required)

    def _setup_page(page: Page, setup: login.Setup, required: bool, **extra: Any) -> Response:
        return pages.render(
            page,
            "twofactor_setup.html",
            "setup_title",
            setup=setup,
            secret_grouped=two_factor.grouped(setup.secret),
            required=required,
            **extra,
        )

    async def enable_two_factor(page: Page) -> Response:
        form = await read_form(page.request, MAX_FORM_BYTES)
        db = page.services.db
        staff = page.state.staff
        try:
            codes = await login.finish_setup(db, settings, staff, str(form.get("code", ""))[:32])
        except Refused as exc:
            setup = await login.pending_setup(db, settings, staff)
            if setup is None:
                raise
            required = accounts.second_factor_required(settings, staff.role)
            return _setup_page(
                page,
                setup,
                required,
                status=400,
                error=s[page.lang]["code_wrong"] if exc.code == "bad_request" else exc.message,
            )
        return pages.render(page, "twofactor_codes.html", "codes_title", codes=codes)

    async def new_recovery_codes(page: Page) -> Response:
        form = await read_form(page.request, MAX_FORM_BYTES)
        codes = await login.regenerate_recovery_codes(
            page.services.db, settings, page.state.staff, str(form.get("code", ""))[:32]
        )
        return pages.render(page, "twofactor_codes.html", "codes_title", codes=codes)

    async def disable_two_factor(page: Page) -> Response:
        form = await read_form(page.request, MAX_FORM_BYTES)
        await login.turn_off(
            page.services.db,
            page.services.hub,
            settings,
            page.state.staff,
            str(form.get("code", ""))[:32],
        )
        return RedirectResponse(f"/console/account?lang={page.lang}", status_code=303)

    get, post = ["GET"], ["POST"]
    pending = ("second_factor",)
    setting_up = ("ok", "setup_second_factor")
    return [
        Route("/console/login/2fa", pages.page(second_step_form, steps=pending), methods=get),
        Route("/console/login/2fa", pages.page(second_step, steps=pending), methods=post),
        Route(
            "/console/login/2fa/cancel",
            pages.page(cancel_second_step, steps=pending),
            methods=post,
        ),
        Route("/console/account", pages.page(account), methods=get),
        Route("/console/account/logout-everywhere", pages.page(logout_everywhere), methods=post),
        Route("/console/account/password", pages.page(password_form), methods=get),
        Route("/console/account/password", pages.page(change_password), methods=post),
        Route("/console/account/2fa", pages.page(two_factor_page, steps=setting_up), methods=get),
        Route(
            "/console/account/2fa/enable",
            pages.page(enable_two_factor, steps=setting_up),
            methods=post,
        ),
        Route("/console/account/2fa/recovery-codes", pages.page(new_recovery_codes), methods=post),
        Route("/console/account/2fa/disable", pages.page(disable_two_factor), methods=post),
    ]
