"""The composition root: build the app from settings, and nothing at import time."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat_server import child_page, sockets
from chat_server.runtime import services_of, start_services, stop_services
from chat_server.settings import Settings
from counsellor_console import routes as console_routes


def create_app(settings: Settings, *, sweeps: bool = True) -> Starlette:
    settings.check_production_ready()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        services = await start_services(settings, sweeps=sweeps)
        sockets.install_hooks(services)
        try:
            yield {"services": services}
        finally:
            await stop_services(services)

    async def healthz(request: Request) -> Response:
        try:
            await services_of(request).check_database()
        except Exception:
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ok"})

    async def home(_request: Request) -> Response:
        return RedirectResponse("/chat", status_code=307)

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        WebSocketRoute("/ws/child", sockets.child_socket),
        WebSocketRoute("/ws/staff", sockets.staff_socket),
        *child_page.routes(settings),
        *console_routes.routes(settings),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders, settings=settings),
            Middleware(GZipMiddleware, minimum_size=400),
        ],
        lifespan=lifespan,
    )


class SecurityHeaders:
    """A strict policy on every HTTP answer: our own scripts and styles only, nothing
    third-party, and the child page framed only by the helpline's own sites."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        ancestors = " ".join(settings.allowed_origins) or "'none'"
        base = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors "
        )
        self.child_csp = (base + ancestors).encode()
        self.staff_csp = (base + "'none'").encode()
        self.hsts = settings.secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = self.child_csp if scope["path"].startswith("/chat") else self.staff_csp

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", csp),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (
                        b"permissions-policy",
                        b"camera=(), microphone=(), geolocation=(), payment=()",
                    ),
                    (b"cross-origin-opener-policy", b"same-origin"),
                ]
                if self.hsts:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
