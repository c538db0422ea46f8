"""Staff pages and the staff JSON API (login, logout)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.templating import Jinja2Templates

import counsellor_console
from chat_server import accounts
from chat_server.accounts import SESSION_COOKIE
from chat_server.assets import Assets, load_strings, strings_json
from chat_server.runtime import origin_allowed, services_of
from chat_server.settings import Settings

ROOT = Path(counsellor_console.__file__).parent
LANGS = ("sq", "en")
MAX_JSON_BYTES = 4096


def routes(settings: Settings) -> list[Route | Mount]:
    assets = Assets(ROOT / "static", "/console/static")
    templates = Jinja2Templates(directory=ROOT / "templates")
    strings = {lang: load_strings(ROOT / "i18n", lang) for lang in LANGS}

    def context(request: Request, **extra: Any) -> dict[str, Any]:
        lang = request.query_params.get("lang", settings.default_lang)
        if lang not in LANGS:
            lang = settings.default_lang
        return {
            "lang": lang,
            "other_lang": "en" if lang == "sq" else "sq",
            "strings": strings[lang],
            "strings_json": strings_json(strings[lang]),
            "static_url": assets.url,
            **extra,
        }

    async def login_page(request: Request) -> Response:
        return _no_store(templates.TemplateResponse(request, "login.html", context(request)))

    async def console_page(request: Request) -> Response:
        services = services_of(request)
        staff = await accounts.session_identity(
            services.db, settings, request.cookies.get(SESSION_COOKIE)
        )
        if staff is None:
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(f"/console/login{query}", status_code=303)
        user = {"id": str(staff.id), "name": staff.name, "role": staff.role}
        return _no_store(
            templates.TemplateResponse(request, "console.html", context(request, user=user))
        )

    async def api_login(request: Request) -> Response:
        refusal = await _check_json_request(request)
        if refusal is not None:
            return refusal
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return _error(400, "bad_request", "the body is not valid JSON")
        username = payload.get("username") if isinstance(payload, dict) else None
        password = payload.get("password") if isinstance(payload, dict) else None
        if not isinstance(username, str) or not isinstance(password, str):
            return _error(400, "bad_request", 'send {"username": ..., "password": ...}')
        services = services_of(request)
        result = await accounts.log_in(services.db, settings, username=username, password=password)
        if result is None:
            return JSONResponse({"error": "invalid_credentials"}, status_code=401)
        staff, token = result
        response = JSONResponse({"id": str(staff.id), "name": staff.name, "role": staff.role})
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=settings.session_lifetime_s,
            path="/",
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookies,
        )
        return response

    async def api_logout(request: Request) -> Response:
        refusal = await _check_json_request(request)
        if refusal is not None:
            return refusal
        services = services_of(request)
        await accounts.log_out(services.db, request.cookies.get(SESSION_COOKIE))
        response = JSONResponse({})
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [
        Route("/console/login", login_page, methods=["GET"]),
        Route("/console", console_page, methods=["GET"]),
        Route("/api/login", api_login, methods=["POST"]),
        Route("/api/logout", api_logout, methods=["POST"]),
        Mount("/console/static", app=assets, name="console-static"),
    ]


async def _check_json_request(request: Request) -> Response | None:
    """JSON only, from our own pages: a cross-site form cannot send application/json,
    and a browser's Origin must be ours."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return _error(415, "bad_request", "send Content-Type: application/json")
    if not origin_allowed(request, services_of(request)):
        return _error(403, "forbidden", "requests from that origin are not accepted")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_JSON_BYTES):
        return _error(413, "too_large", f"the body is limited to {MAX_JSON_BYTES} bytes")
    if len(await request.body()) > MAX_JSON_BYTES:
        return _error(413, "too_large", f"the body is limited to {MAX_JSON_BYTES} bytes")
    return None


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
