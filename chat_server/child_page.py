"""The child's page: one light HTML document, its assets, and the strings it speaks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.templating import Jinja2Templates

import web_client
from chat_server.assets import Assets, load_strings, strings_json
from chat_server.runtime import services_of
from chat_server.settings import Settings

ROOT = Path(web_client.__file__).parent
LANGS = ("sq", "en")


def routes(settings: Settings) -> list[Route | Mount]:
    assets = Assets(ROOT / "static", "/chat/static")
    templates = Jinja2Templates(directory=ROOT / "templates")
    strings = {lang: load_strings(ROOT / "i18n", lang) for lang in LANGS}

    async def chat_page(request: Request) -> Response:
        lang = request.query_params.get("lang", settings.default_lang)
        if lang not in LANGS:
            lang = settings.default_lang
        context: dict[str, Any] = {
            "lang": lang,
            "other_lang": "en" if lang == "sq" else "sq",
            "title": settings.child_page_title,
            "exit_url": settings.quick_exit_url,
            "strings": strings[lang],
            "strings_json": strings_json(strings[lang]),
            "static_url": assets.url,
        }
        response = templates.TemplateResponse(request, "chat.html", context)
        # The page itself is never cached: nothing of a chat stays on a shared phone.
        response.headers["Cache-Control"] = "no-store"
        return response

    async def quick_exit(request: Request) -> Response:
        """navigator.sendBeacon from the page's quick exit: the body is the child's token.

        Best effort by design (the page is already gone): it answers 204 whatever the
        token, so it tells nobody whether a conversation exists.
        """
        body = await _read_limited(request, 256)
        token = body.decode("utf-8", "replace").strip() if body is not None else ""
        if 16 <= len(token) <= 128:
            await services_of(request).conversations.quick_exit(token)
        return Response(status_code=204)

    return [
        Route("/chat", chat_page, methods=["GET"]),
        Route("/api/child/quick-exit", quick_exit, methods=["POST"]),
        Mount("/chat/static", app=assets, name="chat-static"),
    ]


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The request body, or None if it is longer than `limit` bytes (not read further)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return body
