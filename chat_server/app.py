"""The composition root: build the app from settings, and nothing at import time."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from chat_server import child_page, child_socket, log_privacy, staff_socket
from chat_server.metrics import metrics_endpoint
from chat_server.runtime import services_of, start_services, stop_services
from chat_server.security_headers import SecurityHeaders
from chat_server.settings import Settings
from counsellor_console import casework, floor_routes, library_routes
from counsellor_console import routes as console_routes


def create_app(settings: Settings, *, sweeps: bool = True) -> Starlette:
    settings.check_production_ready()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        log_privacy.install()
        services = await start_services(settings, sweeps=sweeps)
        staff_socket.install_hooks(services)
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

    async def readyz(request: Request) -> Response:
        """Ready to serve: the database and the broker answer (for load balancers)."""
        services = services_of(request)
        checks = {}
        for name, check in (
            ("database", services.check_database),
            ("broker", services.check_broker),
        ):
            try:
                await check()
                checks[name] = "ok"
            except Exception:
                checks[name] = "unreachable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", **checks}, 200 if ready else 503
        )

    async def home(_request: Request) -> Response:
        return RedirectResponse("/chat", status_code=307)

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        WebSocketRoute("/ws/child", child_socket.child_socket),
        WebSocketRoute("/ws/staff", staff_socket.staff_socket),
        *child_page.routes(settings),
        *console_routes.routes(settings),
        *casework.routes(settings),
        *library_routes.routes(settings),
        *floor_routes.routes(settings),
    ]
    return App(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders, settings=settings),
            Middleware(GZipMiddleware, minimum_size=400),
        ],
        lifespan=lifespan,
    )


class App(Starlette):
    """WebSockets go straight to their endpoint: the HTTP middleware (security headers,
    gzip, error pages) does nothing for them, yet each layer's frame would stay on the
    stack of every open socket, ~5 KiB per idle child (docs/performance.md)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sockets: dict[str, Callable[[WebSocket], Awaitable[None]]] = {
            route.path: route.endpoint for route in self.routes if isinstance(route, WebSocketRoute)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            endpoint = self.sockets.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                await endpoint(WebSocket(scope, receive, send))
                return
        await super().__call__(scope, receive, send)
