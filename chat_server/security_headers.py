"""Security headers on every HTTP answer.

A strict Content-Security-Policy: our own scripts, styles and connections only, no
inline script or style, nothing third-party. The child's page may be framed only by
the helpline's own sites (ALO116_ALLOWED_ORIGINS), every other page never. HSTS when
the public address is HTTPS.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat_server.settings import Settings

CHILD_PAGES = "/chat"
_BASE = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-src 'none'; worker-src 'none'; manifest-src 'self'"
)
PERMISSIONS = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), midi=(), "
    "magnetometer=(), gyroscope=(), accelerometer=(), display-capture=()"
)
HSTS = "max-age=63072000"


def child_csp(settings: Settings) -> str:
    ancestors = " ".join(settings.allowed_origins) or "'none'"
    return f"{_BASE}; frame-ancestors {ancestors}" + _upgrade(settings)


def staff_csp(settings: Settings) -> str:
    return f"{_BASE}; frame-ancestors 'none'" + _upgrade(settings)


def _upgrade(settings: Settings) -> str:
    return "; upgrade-insecure-requests" if settings.secure_cookies else ""


class SecurityHeaders:
    """ASGI middleware: adds the headers to every HTTP response start."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        common: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"permissions-policy", PERMISSIONS.encode()),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if settings.secure_cookies:
            common.append((b"strict-transport-security", HSTS.encode()))
        self.child = [(b"content-security-policy", child_csp(settings).encode()), *common]
        self.staff = [
            (b"content-security-policy", staff_csp(settings).encode()),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-resource-policy", b"same-origin"),
            *common,
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        child = path == CHILD_PAGES or path.startswith(CHILD_PAGES + "/")
        extra = self.child if child else self.staff

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _value in extra}
                headers = [h for h in message.get("headers", []) if h[0].lower() not in names]
                message["headers"] = headers + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)
