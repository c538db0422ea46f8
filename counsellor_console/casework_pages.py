"""Casework pages for counsellors: the case list with due follow-ups, a case, opening a
case from a contact, and recording an offline contact. Forms post back here with a
CSRF token; a refusal shows the same page again with the field named."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.responses import Response
from starlette.routing import Route

from chat_server import cases, directory, records, referrals
from chat_server.cases import HELPLINE_TZ
from chat_server.errors import Refused
from chat_server.fields import a_date, invalid
from counsellor_console.casework_http import as_list, log_refusal, read_form, status_of
from counsellor_console.casework_view import PageCall, View, page
from db.casework import CaseFile


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Refused("not_found", f"no {what} {value!r}") from None


async def _failed(call: PageCall, exc: Refused) -> int:
    await log_refusal(call.services, call.staff, exc)
    return status_of(exc)[0]


# --- the case list -------------------------------------------------------------------------


async def case_list(call: PageCall) -> Response:
    tax = await call.taxonomy()
    status = call.query("status") or None
    if status not in (None, "open", "in_progress", "closed"):
        status = None
    found, names = await cases.find(
        call.services.db,
        call.staff,
        q=call.query("q")[:80],
        municipality=tax.check_municipality(call.query("municipality") or None),
        status=status,
    )
    until = a_date(call.query("until") or None, "until") or cases.today()
    due_cases, due_referrals = await referrals.due(call.services.db, call.staff, until)
    unfinished = await records.unfinished(call.services.db, call.staff)
    return await call.render(
        "cases.html",
        tax=tax,
        cases=found,
        names=names,
        due_cases=due_cases,
        due_referrals=due_referrals,
        unfinished=unfinished,
        today=cases.today(),
    )


# --- opening a case from a contact -----------------------------------------------------------


async def new_case(
    call: PageCall, *, error: Refused | None = None, form: dict[str, Any] | None = None
) -> Response:
    tax = await call.taxonomy()
    form = form or {}
    record = None
    record_id = form.get("record_id") or call.query("record")
    conversation_id = form.get("conversation_id") or call.query("conversation")
    if conversation_id:
        record = await records.open_for_conversation(
            call.services.db, _uuid(conversation_id, "conversation"), call.staff
        )
    elif record_id:
        record, _conversation = await records.get(
            call.services.db, _uuid(record_id, "contact"), call.staff
        )
    candidates: list[CaseFile] = []
    names: dict[uuid.UUID, str] = {}
    if record is not None and call.query("q"):
        candidates, names = await cases.find(
            call.services.db, call.staff, q=call.query("q")[:80], status=None
        )
        candidates = [c for c in candidates if c.status != "closed"]
    status = await _failed(call, error) if error else 200
    return await call.render(
        "case_new.html",
        status=status,
        error=error,
        tax=tax,
        record=record,
        form=form,
        candidates=candidates,
        names=names,
    )


async def create_case(call: PageCall) -> Response:
    form = await read_form(call.request)
    data = {k: v for k, v in form.items() if k in (*cases.CASE_FIELDS, "record_id")}
    data.pop("status", None)
    data.pop("assigned_user_id", None)
    try:
        case = await cases.open_case(call.services.db, await call.taxonomy(), call.staff, data)
    except Refused as exc:
        return await new_case(call, error=exc, form=form)
    return call.redirect(f"/console/cases/{case.number}", saved=1)


# --- one case ----------------------------------------------------------------------------------


async def show_case(
    call: PageCall, *, error: Refused | None = None, form: dict[str, Any] | None = None
) -> Response:
    ref = call.param("ref")
    view = await cases.view(call.services.db, ref, call.staff)
    transcript = None
    shown = call.query("transcript")
    if shown:
        transcript = await cases.transcript(
            call.services.db, ref, _uuid(shown, "contact"), call.staff
        )
    status = await _failed(call, error) if error else 200
    return await call.render(
        "case.html",
        status=status,
        error=error,
        form=form or {},
        tax=await call.taxonomy(),
        view=view,
        case=view.case,
        transcript=transcript,
        shown=shown,
        services=await directory.active_services(call.services.db),
        colleagues=await cases.colleagues(call.services.db),
        today=cases.today(),
    )


async def update_case(call: PageCall) -> Response:
    form = await read_form(call.request)
    data = {k: v for k, v in form.items() if k in cases.CASE_FIELDS}
    try:
        case = await cases.update(
            call.services.db, await call.taxonomy(), call.param("ref"), call.staff, data
        )
    except Refused as exc:
        return await show_case(call, error=exc, form=form)
    return call.redirect(f"/console/cases/{case.number}", saved=1)


async def add_note(call: PageCall) -> Response:
    form = await read_form(call.request)
    try:
        await cases.add_note(call.services.db, call.param("ref"), call.staff, form.get("body"))
    except Refused as exc:
        return await show_case(call, error=exc, form=form)
    return call.redirect(f"/console/cases/{call.param('ref')}", saved=1)


async def link_contact(call: PageCall) -> Response:
    form = await read_form(call.request)
    data = {k: form.get(k) for k in ("record_id", "conversation_id") if form.get(k)}
    try:
        await cases.link_contact(call.services.db, call.param("ref"), call.staff, data)
    except Refused as exc:
        if exc.code == "forbidden" or ("record_id" not in form and "conversation_id" not in form):
            raise
        return await new_case(call, error=exc, form=form)
    return call.redirect(f"/console/cases/{call.param('ref')}", saved=1)


async def refer(call: PageCall) -> Response:
    form = await read_form(call.request)
    fields = ("service_id", "reason", "referred_on", "contact_person", "follow_up_on")
    data = {k: form.get(k) for k in fields if k in form}
    try:
        await referrals.refer(call.services.db, call.param("ref"), call.staff, data)
    except Refused as exc:
        return await show_case(call, error=exc, form=form)
    return call.redirect(f"/console/cases/{call.param('ref')}", saved=1)


async def update_referral(call: PageCall) -> Response:
    form = await read_form(call.request)
    ref = str(form.get("case", ""))
    data = {k: form[k] for k in referrals.UPDATABLE if k in form}
    try:
        await referrals.update(
            call.services.db, _uuid(call.param("referral_id"), "referral"), call.staff, data
        )
    except Refused as exc:
        if not ref:
            raise
        call.request.path_params["ref"] = ref
        return await show_case(call, error=exc, form=form)
    return call.redirect(f"/console/cases/{ref}", saved=1)


# --- contacts ----------------------------------------------------------------------------------


async def new_contact(
    call: PageCall, *, error: Refused | None = None, form: dict[str, Any] | None = None
) -> Response:
    status = await _failed(call, error) if error else 200
    return await call.render(
        "contact_new.html",
        status=status,
        error=error,
        form=form or {},
        tax=await call.taxonomy(),
        channels=records.OFFLINE_CHANNELS,
    )


async def create_contact(call: PageCall) -> Response:
    form = await read_form(call.request)
    data: dict[str, Any] = {k: form.get(k) for k in records.EDITABLE if k in form}
    data["categories"] = as_list(form.get("categories"))
    data["actions"] = as_list(form.get("actions"))
    data.setdefault("risk_level", "none")
    try:
        data["contact_at"] = _local_datetime(form.get("contact_at"))
        record = await records.create_offline(
            call.services.db, await call.taxonomy(), call.staff, data
        )
    except Refused as exc:
        return await new_contact(call, error=exc, form=form)
    return call.redirect(f"/console/contacts/{record.id}", saved=1)


async def show_contact(
    call: PageCall, *, error: Refused | None = None, form: dict[str, Any] | None = None
) -> Response:
    record, conversation = await records.get(
        call.services.db, _uuid(call.param("record_id"), "contact"), call.staff
    )
    case = None
    if record.case_id is not None:
        async with call.services.db() as session:
            case = await session.get(CaseFile, record.case_id)
    return await call.render(
        "contact.html",
        status=await _failed(call, error) if error else 200,
        error=error,
        form=form or {},
        tax=await call.taxonomy(),
        record=record,
        conversation=conversation,
        case=case if case is not None and cases.can_see(case, call.staff) else None,
    )


async def save_contact(call: PageCall) -> Response:
    """A chat's draft finished after the chat: saved, and finalised if asked."""
    form = await read_form(call.request)
    record, conversation = await records.get(
        call.services.db, _uuid(call.param("record_id"), "contact"), call.staff
    )
    if conversation is None:
        raise Refused("conflict", "only a chat's draft record is edited here")
    data: dict[str, Any] = {k: form.get(k) for k in records.EDITABLE if k in form}
    data["categories"] = as_list(form.get("categories"))
    data["actions"] = as_list(form.get("actions"))
    try:
        _record, risk = await records.update_for_conversation(
            call.services.db, await call.taxonomy(), conversation.id, call.staff, data
        )
        if risk is not None:
            await call.services.conversations.apply_risk(conversation.id, risk, staff=call.staff)
        if form.get("finalise"):
            await records.finalise(call.services.db, conversation.id, call.staff)
    except Refused as exc:
        return await show_contact(call, error=exc, form=form)
    return call.redirect(f"/console/contacts/{record.id}", saved=1)


def _local_datetime(value: Any) -> str | None:
    """A form's datetime-local (no zone) is the helpline's local time."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise invalid("contact_at", f"contact_at must be a date and time, not {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(HELPLINE_TZ))
    return parsed.isoformat()


def routes(view: View) -> list[Route]:
    get, post = ["GET"], ["POST"]
    return [
        Route("/console/cases", page(view, case_list), methods=get),
        Route("/console/cases", page(view, create_case), methods=post),
        Route("/console/cases/new", page(view, new_case), methods=get),
        Route("/console/cases/{ref}", page(view, show_case), methods=get),
        Route("/console/cases/{ref}", page(view, update_case), methods=post),
        Route("/console/cases/{ref}/notes", page(view, add_note), methods=post),
        Route("/console/cases/{ref}/contacts", page(view, link_contact), methods=post),
        Route("/console/cases/{ref}/referrals", page(view, refer), methods=post),
        Route("/console/referrals/{referral_id}", page(view, update_referral), methods=post),
        Route("/console/contacts/new", page(view, new_contact), methods=get),
        Route("/console/contacts", page(view, create_contact), methods=post),
        Route("/console/contacts/{record_id}", page(view, show_contact), methods=get),
        Route("/console/contacts/{record_id}", page(view, save_contact), methods=post),
    ]
