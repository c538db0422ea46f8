"""Casework on the staff side: the JSON API and the server-rendered pages for contact
records, cases, referrals, the referral directory and reports (docs/api.md)."""

from __future__ import annotations

from starlette.routing import Route

from chat_server.settings import Settings
from counsellor_console import casework_admin, casework_api, casework_pages
from counsellor_console.casework_view import View


def routes(settings: Settings) -> list[Route]:
    view = View(settings)
    return [*casework_api.routes(), *casework_pages.routes(view), *casework_admin.routes(view)]
