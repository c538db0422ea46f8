"""The referral directory pages (search for all staff, upkeep for administrators) and the
report page for supervisors."""

from __future__ import annotations

import json
import uuid
from typing import Any

from markupsafe import Markup
from starlette.responses import Response
from starlette.routing import Route

from chat_server import cases, directory, directory_io, reports
from chat_server.audit import record as audit_record
from chat_server.errors import Refused
from chat_server.fields import a_bool
from counsellor_console.casework_http import (
    ADMINS,
    MAX_IMPORT_BYTES,
    SUPERVISORS,
    as_list,
    log_refusal,
    read_form,
    status_of,
)
from counsellor_console.casework_view import PageCall, View, page


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Refused("not_found", f"no {what} {value!r}") from None


# --- the directory ---------------------------------------------------------------------------


async def directory_page(call: PageCall) -> Response:
    tax = await call.taxonomy()
    found = await directory.search(
        call.services.db,
        tax,
        q=call.query("q")[:200],
        municipality=call.query("municipality") or None,
        category=call.query("category") or None,
        include_inactive=a_bool(call.query("inactive") or None, "inactive"),
    )
    return await call.render("directory.html", tax=tax, found=found)


async def organization_page(
    call: PageCall, *, error: Refused | None = None, form: dict[str, Any] | None = None
) -> Response:
    key = call.request.path_params.get("organization_id")
    entry = await directory.entry(call.services.db, _uuid(key, "organization")) if key else None
    status = 200
    if error is not None:
        await log_refusal(call.services, call.staff, error)
        status = status_of(error)[0]
    return await call.render(
        "organization.html",
        status=status,
        error=error,
        form=form or {},
        tax=await call.taxonomy(),
        entry=entry,
    )


async def save_organization(call: PageCall) -> Response:
    form = await read_form(call.request)
    key = call.request.path_params.get("organization_id")
    data = {k: form.get(k, "") for k in directory.ORGANIZATION_FIELDS}
    data["example"] = "example" in form
    try:
        org = await directory.save_organization(
            call.services.db, call.staff, data, _uuid(key, "organization") if key else None
        )
    except Refused as exc:
        return await organization_page(call, error=exc, form=form)
    return call.redirect(f"/console/directory/organizations/{org.id}", saved=1)


async def save_service(call: PageCall) -> Response:
    form = await read_form(call.request)
    data: dict[str, Any] = {k: form.get(k, "") for k in directory.SERVICE_FIELDS}
    data["categories"] = as_list(form.get("categories"))
    data["location_ids"] = as_list(form.get("location_ids"))
    data["service_areas"] = str(form.get("service_areas", "")).replace(",", ";")
    org_key = str(form.get("organization_id", ""))
    service_key = call.request.path_params.get("service_id")
    try:
        await directory.save_service(
            call.services.db,
            await call.taxonomy(),
            call.staff,
            data,
            organization_id=None if service_key else _uuid(org_key, "organization"),
            service_id=_uuid(service_key, "service") if service_key else None,
        )
    except Refused as exc:
        call.request.path_params["organization_id"] = org_key
        return await organization_page(call, error=exc, form=form)
    return call.redirect(f"/console/directory/organizations/{org_key}", saved=1)


async def save_location(call: PageCall) -> Response:
    form = await read_form(call.request)
    data = {k: form.get(k, "") for k in directory.LOCATION_FIELDS}
    org_key = str(form.get("organization_id", ""))
    location_key = call.request.path_params.get("location_id")
    try:
        await directory.save_location(
            call.services.db,
            await call.taxonomy(),
            call.staff,
            data,
            organization_id=None if location_key else _uuid(org_key, "organization"),
            location_id=_uuid(location_key, "location") if location_key else None,
        )
    except Refused as exc:
        call.request.path_params["organization_id"] = org_key
        return await organization_page(call, error=exc, form=form)
    return call.redirect(f"/console/directory/organizations/{org_key}", saved=1)


async def transfer_page(
    call: PageCall,
    *,
    error: Refused | None = None,
    form: dict[str, Any] | None = None,
    counts: dict[str, int] | None = None,
) -> Response:
    status = 200
    if error is not None:
        await log_refusal(call.services, call.staff, error)
        status = status_of(error)[0]
    return await call.render(
        "directory_transfer.html", status=status, error=error, form=form or {}, counts=counts
    )


async def import_directory(call: PageCall) -> Response:
    form = await read_form(call.request, MAX_IMPORT_BYTES)
    tax = await call.taxonomy()
    try:
        if form.get("examples"):
            counts = await directory_io.load_examples(call.services.db, tax, call.staff)
        elif form.get("format") == "csv":
            counts = await directory_io.import_csv(
                call.services.db, tax, call.staff, str(form.get("data", ""))
            )
        else:
            try:
                payload = json.loads(str(form.get("data", "")))
            except ValueError:
                raise Refused("bad_request", "the text is not valid JSON", field="data") from None
            counts = await directory_io.import_json(call.services.db, tax, call.staff, payload)
    except Refused as exc:
        return await transfer_page(call, error=exc, form=form)
    return await transfer_page(call, counts=counts)


# --- reports -----------------------------------------------------------------------------------


async def report_page(call: PageCall) -> Response:
    today = cases.today()
    start = call.query("from") or today.replace(day=1).isoformat()
    end = call.query("to") or today.isoformat()
    try:
        span = reports.period(start, end)
    except Refused as exc:
        await log_refusal(call.services, call.staff, exc)
        return await call.render(
            "report.html", status=422, error=exc, start=start, end=end, report=None
        )
    tax = await call.taxonomy()
    report = await reports.summary(call.services.db, tax, span, call.lang)
    async with call.services.db() as session, session.begin():
        audit_record(
            session,
            action="report.view",
            actor_user_id=call.staff.id,
            start=span.start.isoformat(),
            end=span.end.isoformat(),
        )
    t = call.view.strings[call.lang]
    categories = [(c["name"], c["count"]) for c in report["by_category"]]
    return await call.render(
        "report.html",
        start=span.start.isoformat(),
        end=span.end.isoformat(),
        report=report,
        heatmap=Markup(reports.heatmap_svg(report, t["report_heatmap"])),
        category_chart=Markup(reports.bars_svg(categories, t["report_by_category"])),
    )


def routes(view: View) -> list[Route]:
    get, post = ["GET"], ["POST"]
    return [
        Route("/console/directory", page(view, directory_page), methods=get),
        Route(
            "/console/directory/organizations/new",
            page(view, organization_page, roles=ADMINS),
            methods=get,
        ),
        Route(
            "/console/directory/organizations",
            page(view, save_organization, roles=ADMINS),
            methods=post,
        ),
        Route(
            "/console/directory/organizations/{organization_id}",
            page(view, organization_page, roles=ADMINS),
            methods=get,
        ),
        Route(
            "/console/directory/organizations/{organization_id}",
            page(view, save_organization, roles=ADMINS),
            methods=post,
        ),
        Route("/console/directory/services", page(view, save_service, roles=ADMINS), methods=post),
        Route(
            "/console/directory/services/{service_id}",
            page(view, save_service, roles=ADMINS),
            methods=post,
        ),
        Route(
            "/console/directory/locations", page(view, save_location, roles=ADMINS), methods=post
        ),
        Route(
            "/console/directory/locations/{location_id}",
            page(view, save_location, roles=ADMINS),
            methods=post,
        ),
        Route("/console/directory/transfer", page(view, transfer_page, roles=ADMINS), methods=get),
        Route(
            "/console/directory/transfer",
            page(view, import_directory, roles=ADMINS),
            methods=post,
        ),
        Route("/console/reports", page(view, report_page, roles=SUPERVISORS), methods=get),
    ]
