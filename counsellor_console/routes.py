"""Staff pages and the staff JSON API for logging in and out, the account, and staff
accounts (deactivating, ending sessions). docs/api.md and docs/security.md."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.templating import Jinja2Templates

import counsellor_console
from chat_server import accounts, json_api, login
from chat_server.accounts import SESSION_COOKIE, StaffIdentity
from chat_server.assets import Assets, load_strings, strings_json
from chat_server.errors import Refused
from chat_server.json_api import Rejected, error
from chat_server.runtime import Services, services_of
from chat_server.settings import Settings
from chat_server.sockets import address_of
from counsellor_console import account_pages
from counsellor_console.account_pages import clear_session_cookie, next_page, set_session_cookie

ROOT = Path(counsellor_console.__file__).parent
LANGS = ("sq", "en")
MAX_JSON_BYTES = 4096
STATUS = {
    "bad_request": 400,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "rate_limited": 429,
}

JsonHandler = Callable[[Request, Services, StaffIdentity, Any], Awaitable[Response]]


def routes(settings: Settings) -> list[Route | Mount]:
    assets = Assets(ROOT / "static", "/console/static")
    templates = Jinja2Templates(directory=ROOT / "templates")
    strings = {lang: load_strings(ROOT / "i18n", lang) for lang in LANGS}

    def lang_of(request: Request) -> str:
        lang = request.query_params.get("lang", settings.default_lang)
        return lang if lang in LANGS else settings.default_lang

    def context(request: Request, **extra: Any) -> dict[str, Any]:
        lang = lang_of(request)
        return {
            "lang": lang,
            "other_lang": "en" if lang == "sq" else "sq",
            "strings": strings[lang],
            "strings_json": strings_json(strings[lang]),
            "static_url": assets.url,
            **extra,
        }

    async def login_page(request: Request) -> Response:
        services = services_of(request)
        state = await accounts.session_state(
            services.db, settings, request.cookies.get(SESSION_COOKIE)
        )
        if state is not None and state.step != "ok":
            return RedirectResponse(next_page(state, lang_of(request)), status_code=303)
        return _no_store(templates.TemplateResponse(request, "login.html", context(request)))

    async def console_page(request: Request) -> Response:
        services = services_of(request)
        state = await accounts.session_state(
            services.db, settings, request.cookies.get(SESSION_COOKIE)
        )
        if state is None:
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(f"/console/login{query}", status_code=303)
        if state.step != "ok":
            return RedirectResponse(next_page(state, lang_of(request)), status_code=303)
        staff = state.staff
        user = {"id": str(staff.id), "name": staff.name, "role": staff.role}
        return _no_store(
            templates.TemplateResponse(request, "console.html", context(request, user=user))
        )

    # --- logging in and out (JSON) --------------------------------------------------------

    async def api_login(request: Request) -> Response:
        """Password, then (if the account has one) the second factor: either in the same
        request ("code") or from the half session this answer sets."""
        services = services_of(request)
        try:
            json_api.check_write(request)
            payload = await _json_body(request)
        except Rejected as rejected:
            return rejected.response
        username = payload.get("username") if isinstance(payload, dict) else None
        password = payload.get("password") if isinstance(payload, dict) else None
        code = payload.get("code") if isinstance(payload, dict) else None
        if not isinstance(username, str) or not isinstance(password, str):
            return error(400, "bad_request", 'send {"username": ..., "password": ...}')
        if code is not None and not isinstance(code, str):
            return error(400, "bad_request", "code must be a string")
        address = address_of(request)
        if services.limits.login_addresses.blocked(address):
            return _throttled(60)
        result = await login.password_step(
            services.db, settings, username=username[:256], password=password
        )
        if result.outcome == "second_factor" and code is not None and result.token:
            state = await accounts.session_state(services.db, settings, result.token)
            if state is not None:
                result = await login.second_factor_step(services.db, settings, state, code[:32])
        return _login_answer(services, address, result)

    async def api_second_factor(request: Request) -> Response:
        services = services_of(request)
        try:
            json_api.check_write(request)
            payload = await _json_body(request)
        except Rejected as rejected:
            return rejected.response
        code = payload.get("code") if isinstance(payload, dict) else None
        if not isinstance(code, str):
            return error(400, "bad_request", 'send {"code": ...}')
        state = await accounts.session_state(
            services.db, settings, request.cookies.get(SESSION_COOKIE)
        )
        if state is None or state.step != "second_factor":
            return error(401, "unauthorized", "log in with your password first")
        address = address_of(request)
        if services.limits.login_addresses.blocked(address):
            return _throttled(60)
        result = await login.second_factor_step(services.db, settings, state, code[:32])
        return _login_answer(services, address, result)

    def _login_answer(services: Services, address: str, result: login.LoginResult) -> Response:
        if result.outcome == "throttled":
            return _throttled(result.retry_after_s)
        if result.outcome == "invalid" or result.token is None or result.staff is None:
            services.limits.login_addresses.failed(address)
            return JSONResponse({"error": "invalid_credentials"}, status_code=401)
        staff = result.staff
        if result.outcome == "second_factor":
            # Nothing about the account until the second factor is given.
            body: dict[str, Any] = {"step": "second_factor", "next": "/console/login/2fa"}
        else:
            body = {"id": str(staff.id), "name": staff.name, "role": staff.role}
            if result.outcome == "setup_second_factor":
                body |= {"step": "setup_second_factor", "next": "/console/account/2fa"}
        response = JSONResponse(body)
        set_session_cookie(response, result.token, settings)
        return response

    async def api_logout(request: Request) -> Response:
        try:
            json_api.check_write(request)
        except Rejected as rejected:
            return rejected.response
        services = services_of(request)
        await accounts.log_out(services.db, request.cookies.get(SESSION_COOKIE), services.hub)
        response = JSONResponse({})
        clear_session_cookie(response, settings)
        return response

    # --- the account and staff accounts (JSON) --------------------------------------------

    def staff_api(
        handler: JsonHandler, roles: tuple[str, ...] = accounts.ROLES
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            services = services_of(request)
            staff = await accounts.session_identity(
                services.db, settings, request.cookies.get(SESSION_COOKIE)
            )
            if staff is None:
                return error(401, "unauthorized", "log in first")
            if staff.role not in roles:
                return error(403, "forbidden", f"this needs the role {' or '.join(roles)}")
            try:
                body = await json_api.read_write(request, limit=MAX_JSON_BYTES, staff_id=staff.id)
                response = await handler(request, services, staff, body)
            except Rejected as rejected:
                return rejected.response
            except Refused as exc:
                return error(
                    STATUS.get(exc.code, 400), exc.code, exc.message, field=exc.context.get("field")
                )
            response.headers["Cache-Control"] = "no-store"
            return response

        return endpoint

    async def logout_everywhere(
        request: Request, services: Services, staff: StaffIdentity, _body: Any
    ) -> Response:
        ended = await accounts.log_out_everywhere(services.db, services.hub, staff.id, actor=staff)
        response = JSONResponse({"sessions_ended": ended})
        clear_session_cookie(response, settings)
        return response

    async def change_password(
        request: Request, services: Services, staff: StaffIdentity, body: Any
    ) -> Response:
        current = body.get("current_password") if isinstance(body, dict) else None
        new = body.get("new_password") if isinstance(body, dict) else None
        if not isinstance(current, str) or not isinstance(new, str):
            raise Refused("bad_request", 'send {"current_password": ..., "new_password": ...}')
        if not await login.check_password(services.db, settings, staff, current):
            raise Refused(
                "bad_request", "the current password is not right", field="current_password"
            )
        await accounts.change_password(services.db, services.hub, staff, new_password=new)
        return JSONResponse({})

    def on_user(
        action: Callable[[Services, StaffIdentity, uuid.UUID], Awaitable[Any]],
    ) -> JsonHandler:
        async def handler(
            request: Request, services: Services, staff: StaffIdentity, _body: Any
        ) -> Response:
            try:
                user_id = uuid.UUID(request.path_params["user_id"])
            except ValueError:
                raise Refused("not_found", "no such staff member") from None
            await action(services, staff, user_id)
            return JSONResponse({})

        return handler

    async def deactivate(services: Services, staff: StaffIdentity, user_id: uuid.UUID) -> None:
        await accounts.set_active(services.db, services.hub, staff, user_id, active=False)

    async def reactivate(services: Services, staff: StaffIdentity, user_id: uuid.UUID) -> None:
        await accounts.set_active(services.db, services.hub, staff, user_id, active=True)

    async def end_sessions(services: Services, staff: StaffIdentity, user_id: uuid.UUID) -> None:
        await accounts.log_out_everywhere(services.db, services.hub, user_id, actor=staff)

    admins = ("admin",)
    post = ["POST"]
    return [
        Route("/console/login", login_page, methods=["GET"]),
        Route("/console", console_page, methods=["GET"]),
        Route("/api/login", api_login, methods=post),
        Route("/api/login/2fa", api_second_factor, methods=post),
        Route("/api/logout", api_logout, methods=post),
        Route("/api/logout-everywhere", staff_api(logout_everywhere), methods=post),
        Route("/api/account/password", staff_api(change_password), methods=post),
        Route(
            "/api/staff/{user_id}/deactivate", staff_api(on_user(deactivate), admins), methods=post
        ),
        Route(
            "/api/staff/{user_id}/reactivate", staff_api(on_user(reactivate), admins), methods=post
        ),
        Route(
            "/api/staff/{user_id}/sessions/end",
            staff_api(on_user(end_sessions), admins),
            methods=post,
        ),
        *account_pages.routes(settings),
        Mount("/console/static", app=assets, name="console-static"),
    ]


async def _json_body(request: Request) -> Any:
    raw = await json_api.read_bounded(request, MAX_JSON_BYTES)
    try:
        return json_api.parse(raw)
    except ValueError:
        raise Rejected(error(400, "bad_request", "the body is not valid JSON")) from None


def _throttled(retry_after_s: int) -> Response:
    return error(
        429,
        "rate_limited",
        "too many failed attempts; try again later",
        retry_after=max(1, retry_after_s),
    )


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
