"""The casework JSON API: contact records, cases, referrals, the directory, reports.

Documented in docs/api.md. Every endpoint needs a staff session; writes need
Content-Type: application/json from our own origin. Refusals answer
{"error", "field", "message"} with a 4xx status.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chat_server import cases, directory, directory_io, records, referrals, reports, taxonomy
from chat_server.audit import record as audit_record
from chat_server.errors import Refused
from chat_server.fields import a_bool, a_date, invalid
from counsellor_console.casework_http import (
    ADMINS,
    MAX_IMPORT_BYTES,
    SUPERVISORS,
    Call,
    api,
)

LANGS = ("sq", "en")


def _id(call: Call, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(call.param(name))
    except ValueError:
        raise Refused("not_found", f"no {name.removesuffix('_id')} {call.param(name)!r}") from None


def _object(call: Call) -> dict[str, Any]:
    if not isinstance(call.body, dict):
        raise Refused("bad_request", "send a JSON object")
    return call.body


def _lang(call: Call) -> str:
    lang = call.query("lang", call.services.settings.default_lang)
    return lang if lang in LANGS else call.services.settings.default_lang


async def _tax(call: Call) -> taxonomy.Taxonomy:
    return await taxonomy.load(call.services.db)


# --- taxonomy and contact records -----------------------------------------------------------


async def get_taxonomy(call: Call) -> Response:
    return JSONResponse((await _tax(call)).as_json(_lang(call)))


async def get_record(call: Call) -> Response:
    record = await records.open_for_conversation(
        call.services.db, _id(call, "conversation_id"), call.staff
    )
    return JSONResponse(records.record_json(record))


async def put_record(call: Call) -> Response:
    conversation_id = _id(call, "conversation_id")
    record, risk = await records.update_for_conversation(
        call.services.db, await _tax(call), conversation_id, call.staff, _object(call)
    )
    if risk is not None:
        await call.services.conversations.apply_risk(conversation_id, risk, staff=call.staff)
    return JSONResponse(records.record_json(record))


async def finalise_record(call: Call) -> Response:
    record = await records.finalise(call.services.db, _id(call, "conversation_id"), call.staff)
    return JSONResponse(records.record_json(record))


async def post_contact(call: Call) -> Response:
    record = await records.create_offline(
        call.services.db, await _tax(call), call.staff, _object(call)
    )
    return JSONResponse(records.record_json(record), status_code=201)


async def get_contact(call: Call) -> Response:
    record, _conversation = await records.get(call.services.db, _id(call, "record_id"), call.staff)
    return JSONResponse(records.record_json(record))


async def unfinished_contacts(call: Call) -> Response:
    found = await records.unfinished(call.services.db, call.staff)
    return JSONResponse({"records": [records.record_json(r) for r in found]})


# --- cases ---------------------------------------------------------------------------------


async def list_cases(call: Call) -> Response:
    status = taxonomy.check_code("case_statuses", call.query("status") or None, "status")
    tax = await _tax(call)
    found, names = await cases.find(
        call.services.db,
        call.staff,
        q=call.query("q")[:80],
        municipality=tax.check_municipality(call.query("municipality") or None),
        status=status,
    )
    return JSONResponse({"cases": [cases.case_json(c, names) for c in found]})


async def post_case(call: Call) -> Response:
    case = await cases.open_case(call.services.db, await _tax(call), call.staff, _object(call))
    return JSONResponse(await _case_body(call, case.number), status_code=201)


async def get_case(call: Call) -> Response:
    return JSONResponse(await _case_body(call, call.param("case")))


async def patch_case(call: Call) -> Response:
    case = await cases.update(
        call.services.db, await _tax(call), call.param("case"), call.staff, _object(call)
    )
    return JSONResponse(await _case_body(call, case.number))


async def _case_body(call: Call, ref: str) -> dict[str, Any]:
    view = await cases.view(call.services.db, ref, call.staff)
    return {
        **cases.case_json(view.case, view.names),
        "contacts": [records.record_json(r) for r in view.contacts],
        "timeline": [cases.event_json(e, view.names) for e in view.events],
        "referrals": [referrals.referral_json(r, s, o) for r, s, o in view.referrals],
    }


async def post_note(call: Call) -> Response:
    event = await cases.add_note(
        call.services.db, call.param("case"), call.staff, _object(call).get("body")
    )
    return JSONResponse(cases.event_json(event, {call.staff.id: call.staff.name}), 201)


async def post_case_contact(call: Call) -> Response:
    record = await cases.link_contact(
        call.services.db, call.param("case"), call.staff, _object(call)
    )
    return JSONResponse(records.record_json(record), status_code=201)


async def get_transcript(call: Call) -> Response:
    messages = await cases.transcript(
        call.services.db, call.param("case"), _id(call, "record_id"), call.staff
    )
    return JSONResponse(
        {
            "messages": [
                {"seq": m.seq, "from": m.sender, "body": m.body, "at": m.created_at.isoformat()}
                for m in messages
            ]
        }
    )


async def post_referral(call: Call) -> Response:
    referral, service, organization = await referrals.refer(
        call.services.db, call.param("case"), call.staff, _object(call)
    )
    return JSONResponse(
        referrals.referral_json(referral, service.name, organization.name), status_code=201
    )


async def patch_referral(call: Call) -> Response:
    referral, service, organization = await referrals.update(
        call.services.db, _id(call, "referral_id"), call.staff, _object(call)
    )
    return JSONResponse(referrals.referral_json(referral, service.name, organization.name))


async def followups(call: Call) -> Response:
    until = a_date(call.query("until") or None, "until") or cases.today()
    due_cases, due_referrals = await referrals.due(call.services.db, call.staff, until)
    return JSONResponse(
        {
            "until": until.isoformat(),
            "cases": [cases.case_json(c) for c in due_cases],
            "referrals": [
                {**referrals.referral_json(r, s, o), "case_number": case.number}
                for r, s, o, case in due_referrals
            ],
        }
    )


# --- directory -----------------------------------------------------------------------------


async def search_services(call: Call) -> Response:
    tax = await _tax(call)
    found = await directory.search(
        call.services.db,
        tax,
        q=call.query("q")[:200],
        municipality=call.query("municipality") or None,
        category=call.query("category") or None,
        include_inactive=a_bool(call.query("include_inactive") or None, "include_inactive"),
    )
    return JSONResponse({"services": [directory.service_json(tax, s, e) for s, e in found]})


async def get_organization(call: Call) -> Response:
    entry = await directory.entry(call.services.db, _id(call, "organization_id"))
    return JSONResponse(directory_io.entry_json(entry))


async def post_organization(call: Call) -> Response:
    org = await directory.save_organization(call.services.db, call.staff, _object(call))
    return JSONResponse(
        directory_io.entry_json(await directory.entry(call.services.db, org.id)), 201
    )


async def patch_organization(call: Call) -> Response:
    org_id = _id(call, "organization_id")
    await directory.save_organization(call.services.db, call.staff, _object(call), org_id)
    return JSONResponse(directory_io.entry_json(await directory.entry(call.services.db, org_id)))


async def post_service(call: Call) -> Response:
    service = await directory.save_service(
        call.services.db,
        await _tax(call),
        call.staff,
        _object(call),
        organization_id=_id(call, "organization_id"),
    )
    return JSONResponse(directory_io.service_row(service), status_code=201)


async def patch_service(call: Call) -> Response:
    service = await directory.save_service(
        call.services.db,
        await _tax(call),
        call.staff,
        _object(call),
        service_id=_id(call, "service_id"),
    )
    return JSONResponse(directory_io.service_row(service))


async def post_location(call: Call) -> Response:
    location = await directory.save_location(
        call.services.db,
        await _tax(call),
        call.staff,
        _object(call),
        organization_id=_id(call, "organization_id"),
    )
    return JSONResponse(directory_io.location_row(location), status_code=201)


async def patch_location(call: Call) -> Response:
    location = await directory.save_location(
        call.services.db,
        await _tax(call),
        call.staff,
        _object(call),
        location_id=_id(call, "location_id"),
    )
    return JSONResponse(directory_io.location_row(location))


async def export_directory(call: Call) -> Response:
    kind = call.query("format", "json")
    if kind not in ("json", "csv"):
        raise invalid("format", f"format must be json or csv, not {kind!r}")
    async with call.services.db() as session, session.begin():
        audit_record(session, action="directory.export", actor_user_id=call.staff.id, format=kind)
    name = f'attachment; filename="directory.{kind}"'
    if kind == "csv":
        body = await directory_io.export_csv(call.services.db)
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": name},
        )
    data = await directory_io.export_json(call.services.db)
    return JSONResponse(data, headers={"Content-Disposition": name})


async def import_directory(call: Call) -> Response:
    body = _object(call)
    tax = await _tax(call)
    if body.get("format") == "csv":
        data = body.get("data")
        if not isinstance(data, str):
            raise invalid("data", 'send {"format": "csv", "data": "<the CSV text>"}')
        counts = await directory_io.import_csv(call.services.db, tax, call.staff, data)
    else:
        counts = await directory_io.import_json(call.services.db, tax, call.staff, body)
    return JSONResponse(counts)


async def load_examples(call: Call) -> Response:
    counts = await directory_io.load_examples(call.services.db, await _tax(call), call.staff)
    return JSONResponse(counts)


# --- reports -------------------------------------------------------------------------------


async def _report(call: Call, action: str) -> tuple[reports.Period, taxonomy.Taxonomy]:
    span = reports.period(call.query("from") or None, call.query("to") or None)
    async with call.services.db() as session, session.begin():
        audit_record(
            session,
            action=action,
            actor_user_id=call.staff.id,
            start=span.start.isoformat(),
            end=span.end.isoformat(),
        )
    return span, await _tax(call)


async def report_summary(call: Call) -> Response:
    span, tax = await _report(call, "report.view")
    return JSONResponse(await reports.summary(call.services.db, tax, span, _lang(call)))


async def report_summary_csv(call: Call) -> Response:
    span, tax = await _report(call, "report.export")
    report = await reports.summary(call.services.db, tax, span, _lang(call))
    return _csv(reports.summary_csv(report), f"summary-{span.start}-{span.end}.csv")


async def report_contacts_csv(call: Call) -> Response:
    span, tax = await _report(call, "report.export_contacts")
    body = await reports.contacts_csv(call.services.db, tax, span)
    return _csv(body, f"contacts-{span.start}-{span.end}.csv")


def _csv(body: str, filename: str) -> Response:
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def routes() -> list[Route]:
    get, post, put, patch = ["GET"], ["POST"], ["PUT"], ["PATCH"]
    return [
        Route("/api/taxonomy", api(get_taxonomy), methods=get),
        Route("/api/records/{conversation_id}", api(get_record), methods=get),
        Route("/api/records/{conversation_id}", api(put_record), methods=put),
        Route("/api/records/{conversation_id}/finalise", api(finalise_record), methods=post),
        Route("/api/contacts", api(post_contact), methods=post),
        Route("/api/contacts/unfinished", api(unfinished_contacts), methods=get),
        Route("/api/contacts/{record_id}", api(get_contact), methods=get),
        Route("/api/cases", api(list_cases), methods=get),
        Route("/api/cases", api(post_case), methods=post),
        Route("/api/cases/{case}", api(get_case), methods=get),
        Route("/api/cases/{case}", api(patch_case), methods=patch),
        Route("/api/cases/{case}/notes", api(post_note), methods=post),
        Route("/api/cases/{case}/contacts", api(post_case_contact), methods=post),
        Route(
            "/api/cases/{case}/contacts/{record_id}/transcript",
            api(get_transcript),
            methods=get,
        ),
        Route("/api/cases/{case}/referrals", api(post_referral), methods=post),
        Route("/api/referrals/{referral_id}", api(patch_referral), methods=patch),
        Route("/api/followups", api(followups), methods=get),
        Route("/api/directory/services", api(search_services), methods=get),
        Route(
            "/api/directory/organizations",
            api(post_organization, roles=ADMINS),
            methods=post,
        ),
        Route("/api/directory/organizations/{organization_id}", api(get_organization), methods=get),
        Route(
            "/api/directory/organizations/{organization_id}",
            api(patch_organization, roles=ADMINS),
            methods=patch,
        ),
        Route(
            "/api/directory/organizations/{organization_id}/services",
            api(post_service, roles=ADMINS),
            methods=post,
        ),
        Route(
            "/api/directory/organizations/{organization_id}/locations",
            api(post_location, roles=ADMINS),
            methods=post,
        ),
        Route(
            "/api/directory/services/{service_id}", api(patch_service, roles=ADMINS), methods=patch
        ),
        Route(
            "/api/directory/locations/{location_id}",
            api(patch_location, roles=ADMINS),
            methods=patch,
        ),
        Route("/api/directory/export", api(export_directory, roles=ADMINS), methods=get),
        Route(
            "/api/directory/import",
            api(import_directory, roles=ADMINS, limit=MAX_IMPORT_BYTES),
            methods=post,
        ),
        Route("/api/directory/examples", api(load_examples, roles=ADMINS), methods=post),
        Route("/api/reports/summary", api(report_summary, roles=SUPERVISORS), methods=get),
        Route("/api/reports/summary.csv", api(report_summary_csv, roles=SUPERVISORS), methods=get),
        Route(
            "/api/reports/contacts.csv", api(report_contacts_csv, roles=SUPERVISORS), methods=get
        ),
    ]
