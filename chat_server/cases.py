"""Case files: a contact handed over to follow-up, with its timeline.

Counsellors see the cases they opened or are assigned to; supervisors and admins see
all. Only supervisors close and reopen a case; a closed case changes no further until
it is reopened. Every view and change is audited in the transaction that made it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, or_, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import audit, records, taxonomy
from chat_server.accounts import StaffIdentity
from chat_server.errors import Refused
from chat_server.fields import a_date, an_id, forbidden, invalid, iso, text
from chat_server.taxonomy import Taxonomy
from db.casework import (
    CaseCounter,
    CaseEvent,
    CaseFile,
    ContactRecord,
    Organization,
    Referral,
    Service,
)
from db.models import Conversation, Message, StaffUser, utcnow

HELPLINE_TZ = "Europe/Tirane"
PSEUDONYM_MAX = 80
SUMMARY_MAX = 4000
NOTE_MAX = 4000
CASE_FIELDS = (
    "pseudonym",
    "age_band",
    "gender",
    "municipality",
    "risk_level",
    "summary",
    "follow_up_on",
    "assigned_user_id",
    "status",
)
OPEN_STATUSES = ("open", "in_progress")


@dataclass(frozen=True, slots=True)
class CaseView:
    case: CaseFile
    contacts: list[ContactRecord]
    events: list[CaseEvent]
    referrals: list[tuple[Referral, str, str]]  # with the service and organization names
    names: dict[uuid.UUID, str]  # staff names for everyone mentioned


def today() -> date:
    return datetime.now(ZoneInfo(HELPLINE_TZ)).date()


def visible_to(staff: StaffIdentity) -> ColumnElement[bool]:
    if staff.supervises:
        return true()
    return or_(
        col(CaseFile.opened_by_user_id) == staff.id, col(CaseFile.assigned_user_id) == staff.id
    )


def can_see(case: CaseFile, staff: StaffIdentity) -> bool:
    return staff.supervises or staff.id in (case.opened_by_user_id, case.assigned_user_id)


def case_json(case: CaseFile, names: Mapping[uuid.UUID, str] | None = None) -> dict[str, Any]:
    names = names or {}

    def who(user_id: uuid.UUID | None) -> dict[str, str] | None:
        return {"id": str(user_id), "name": names.get(user_id, "")} if user_id else None

    return {
        "id": str(case.id),
        "number": case.number,
        "status": case.status,
        "pseudonym": case.pseudonym,
        "age_band": case.age_band,
        "gender": case.gender,
        "municipality": case.municipality_code,
        "risk_level": case.risk_level,
        "summary": case.summary,
        "follow_up_on": case.follow_up_on.isoformat() if case.follow_up_on else None,
        "assigned_to": who(case.assigned_user_id),
        "opened_by": who(case.opened_by_user_id),
        "created_at": iso(case.created_at),
        "updated_at": iso(case.updated_at),
        "closed_at": iso(case.closed_at),
        "closed_by": who(case.closed_by_user_id),
    }


def event_json(event: CaseEvent, names: Mapping[uuid.UUID, str]) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "at": iso(event.at),
        "kind": event.kind,
        "actor": {"id": str(event.actor_user_id), "name": names.get(event.actor_user_id, "")}
        if event.actor_user_id
        else None,
        "body": event.body,
        "detail": event.detail,
    }


async def next_number(session: AsyncSession, year: int) -> str:
    """The next case number of the year: one upsert that returns the new counter, so two
    counsellors opening cases at once get different numbers on both databases."""
    connection = await session.connection()
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(CaseCounter)
        .values(year=year, last=1)
        .on_conflict_do_update(index_elements=["year"], set_={"last": CaseCounter.last + 1})
        .returning(col(CaseCounter.last))
    )
    last = (await session.execute(statement)).scalar_one()
    return f"{year}-{int(last):06d}"


# --- opening, finding, reading ------------------------------------------------------------


async def open_case(
    db: async_sessionmaker[AsyncSession],
    tax: Taxonomy,
    staff: StaffIdentity,
    data: Mapping[str, Any],
) -> CaseFile:
    """Open a case, optionally from a contact (`record_id` or `conversation_id`), whose
    answers prefill what the request leaves out."""
    body = dict(data)
    record_id = an_id(body.pop("record_id", None), "record_id", required=False)
    conversation_id = an_id(body.pop("conversation_id", None), "conversation_id", required=False)
    if body.get("status") not in (None, "open"):
        raise invalid("status", "a new case is open")
    body.pop("status", None)
    values = await _check(db, tax, body)
    if conversation_id is not None and record_id is None:
        record_id = (await records.open_for_conversation(db, conversation_id, staff)).id
    now = utcnow()
    async with db() as session, session.begin():
        record = await _linkable_record(session, record_id, staff) if record_id else None
        if record is not None:
            for column in ("age_band", "gender", "municipality_code", "risk_level", "summary"):
                if column not in values and getattr(record, column):
                    values[column] = getattr(record, column)
        case = CaseFile(
            number=await next_number(session, now.astimezone(ZoneInfo(HELPLINE_TZ)).year),
            opened_by_user_id=staff.id,
            assigned_user_id=values.pop("assigned_user_id", staff.id),
            created_at=now,
            updated_at=now,
            **values,
        )
        session.add(case)
        await session.flush()
        add_event(session, case, staff, "opened", number=case.number)
        audit.record(
            session, action="case.create", actor_user_id=staff.id, target=f"case:{case.id}"
        )
        if record is not None:
            _link(session, case, record, staff)
    return case


async def find(
    db: async_sessionmaker[AsyncSession],
    staff: StaffIdentity,
    *,
    q: str = "",
    municipality: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> tuple[list[CaseFile], dict[uuid.UUID, str]]:
    statement = select(CaseFile).where(visible_to(staff))
    q = q.strip()
    if q:
        pattern = f"%{q.lower()}%"
        statement = statement.where(
            or_(
                func.lower(col(CaseFile.number)).like(pattern),
                func.lower(col(CaseFile.pseudonym)).like(pattern),
            )
        )
    if municipality:
        statement = statement.where(col(CaseFile.municipality_code) == municipality)
    if status:
        statement = statement.where(col(CaseFile.status) == status)
    statement = statement.order_by(col(CaseFile.updated_at).desc()).limit(limit)
    async with db() as session, session.begin():
        found = list((await session.execute(statement)).scalars())
        audit.record(
            session,
            action="case.search",
            actor_user_id=staff.id,
            q=q[:80],
            municipality=municipality,
            status=status,
            results=len(found),
        )
        names = await staff_names(session, _people(found))
    return found, names


async def view(db: async_sessionmaker[AsyncSession], ref: str, staff: StaffIdentity) -> CaseView:
    async with db() as session, session.begin():
        case = await visible_case(session, ref, staff)
        contacts = list(
            (
                await session.execute(
                    select(ContactRecord)
                    .where(col(ContactRecord.case_id) == case.id)
                    .order_by(col(ContactRecord.contact_at))
                )
            ).scalars()
        )
        events = list(
            (
                await session.execute(
                    select(CaseEvent)
                    .where(col(CaseEvent.case_id) == case.id)
                    .order_by(col(CaseEvent.at), col(CaseEvent.id))
                )
            ).scalars()
        )
        referrals = await _referrals_of(session, case.id)
        audit.record(session, action="case.view", actor_user_id=staff.id, target=f"case:{case.id}")
        people = _people([case]) | {e.actor_user_id for e in events if e.actor_user_id}
        names = await staff_names(session, people)
    return CaseView(case, contacts, events, referrals, names)


async def transcript(
    db: async_sessionmaker[AsyncSession], ref: str, record_id: uuid.UUID, staff: StaffIdentity
) -> list[Message]:
    """The messages of a chat linked to a visible case; audited as a transcript view."""
    async with db() as session, session.begin():
        case = await visible_case(session, ref, staff)
        record = await session.get(ContactRecord, record_id)
        if record is None or record.case_id != case.id:
            raise Refused("not_found", f"no contact {str(record_id)!r} in case {case.number}")
        if record.conversation_id is None:
            return []
        messages = list(
            (
                await session.execute(
                    select(Message)
                    .where(col(Message.conversation_id) == record.conversation_id)
                    .order_by(col(Message.seq))
                )
            ).scalars()
        )
        audit.record(
            session,
            action="transcript.view",
            actor_user_id=staff.id,
            target=f"conversation:{record.conversation_id}",
            case=case.number,
        )
    return messages


# --- changing ------------------------------------------------------------------------------


async def update(
    db: async_sessionmaker[AsyncSession],
    tax: Taxonomy,
    ref: str,
    staff: StaffIdentity,
    data: Mapping[str, Any],
) -> CaseFile:
    values = await _check(db, tax, data)
    async with db() as session, session.begin():
        case = await visible_case(session, ref, staff, for_update=True)
        status = values.pop("status", None)
        if case.status == "closed" and (values or status not in OPEN_STATUSES):
            raise closed(case)
        if status is not None and status != case.status:
            if (status == "closed" or case.status == "closed") and not staff.supervises:
                word = "close" if status == "closed" else "reopen"
                raise Refused("forbidden", f"only a supervisor can {word} a case", field="status")
            add_event(session, case, staff, "status", before=case.status, after=status)
            case.status = status
            closing = status == "closed"
            case.closed_at = utcnow() if closing else None
            case.closed_by_user_id = staff.id if closing else None
        assignee = values.pop("assigned_user_id", None)
        if assignee is not None and assignee != case.assigned_user_id:
            add_event(
                session,
                case,
                staff,
                "assigned",
                before=_s(case.assigned_user_id),
                after=str(assignee),
            )
            case.assigned_user_id = assignee
        changed = sorted(k for k, v in values.items() if getattr(case, k) != v)
        for column in changed:
            setattr(case, column, values[column])
        if changed:
            add_event(session, case, staff, "updated", fields=changed)
        case.updated_at = utcnow()
        audit.record(
            session,
            action="case.update",
            actor_user_id=staff.id,
            target=f"case:{case.id}",
            fields=sorted(data),
        )
    return case


async def add_note(
    db: async_sessionmaker[AsyncSession], ref: str, staff: StaffIdentity, body: Any
) -> CaseEvent:
    note = text(body, "body", max_length=NOTE_MAX, required=True)
    async with db() as session, session.begin():
        case = await visible_case(session, ref, staff, for_update=True)
        if case.status == "closed":
            raise closed(case)
        event = add_event(session, case, staff, "note", body=note)
        case.updated_at = utcnow()
        audit.record(session, action="case.note", actor_user_id=staff.id, target=f"case:{case.id}")
    return event


async def link_contact(
    db: async_sessionmaker[AsyncSession], ref: str, staff: StaffIdentity, data: Mapping[str, Any]
) -> ContactRecord:
    record_id = an_id(data.get("record_id"), "record_id", required=False)
    conversation_id = an_id(data.get("conversation_id"), "conversation_id", required=False)
    if record_id is None and conversation_id is None:
        raise invalid("record_id", "send record_id or conversation_id")
    if record_id is None and conversation_id is not None:
        record_id = (await records.open_for_conversation(db, conversation_id, staff)).id
    assert record_id is not None
    async with db() as session, session.begin():
        case = await visible_case(session, ref, staff, for_update=True)
        if case.status == "closed":
            raise closed(case)
        record = await _linkable_record(session, record_id, staff)
        _link(session, case, record, staff)
        case.updated_at = utcnow()
    return record


async def staff_names(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await session.execute(
        select(col(StaffUser.id), col(StaffUser.display_name)).where(col(StaffUser.id).in_(ids))
    )
    return {row[0]: row[1] for row in rows}


async def colleagues(db: async_sessionmaker[AsyncSession]) -> list[tuple[uuid.UUID, str]]:
    """Active counsellors and supervisors, to hand a case over to."""
    async with db() as session:
        rows = await session.execute(
            select(col(StaffUser.id), col(StaffUser.display_name))
            .where(col(StaffUser.active), col(StaffUser.role).in_(("counsellor", "supervisor")))
            .order_by(col(StaffUser.display_name))
        )
        return [(row[0], row[1]) for row in rows]


# --- helpers -------------------------------------------------------------------------------


async def _check(
    db: async_sessionmaker[AsyncSession], tax: Taxonomy, data: Mapping[str, Any]
) -> dict[str, Any]:
    for key in data:
        if key not in CASE_FIELDS:
            raise invalid(key, f"{key!r} is not a field of a case")
    checks: dict[str, Callable[[Any], Any]] = {
        "pseudonym": lambda v: text(v, "pseudonym", max_length=PSEUDONYM_MAX),
        "age_band": lambda v: taxonomy.check_code("age_bands", v, "age_band"),
        "gender": lambda v: taxonomy.check_code("genders", v, "gender"),
        "municipality": tax.check_municipality,
        "risk_level": lambda v: taxonomy.check_code("risk_levels", v, "risk_level", required=True),
        "summary": lambda v: text(v, "summary", max_length=SUMMARY_MAX, strip=False),
        "follow_up_on": lambda v: a_date(v, "follow_up_on"),
        "status": lambda v: taxonomy.check_code("case_statuses", v, "status", required=True),
        "assigned_user_id": lambda v: an_id(v, "assigned_user_id"),
    }
    values: dict[str, Any] = {}
    for key, check in checks.items():
        if key in data:
            values["municipality_code" if key == "municipality" else key] = check(data[key])
    assignee = values.get("assigned_user_id")
    if assignee is not None:
        async with db() as session:
            user = await session.get(StaffUser, assignee)
        if user is None or not user.active or user.role not in ("counsellor", "supervisor"):
            raise invalid("assigned_user_id", f"no active counsellor {str(assignee)!r}")
    return values


async def visible_case(
    session: AsyncSession, ref: str, staff: StaffIdentity, *, for_update: bool = False
) -> CaseFile:
    try:
        clause = col(CaseFile.id) == uuid.UUID(ref)
    except ValueError:
        clause = col(CaseFile.number) == ref
    statement = select(CaseFile).where(clause)
    if for_update:
        statement = statement.with_for_update()
    case = (await session.execute(statement)).scalar_one_or_none()
    if case is None:
        raise Refused("not_found", f"no case {ref!r}")
    if not can_see(case, staff):
        raise forbidden(f"case:{case.id}", f"case {case.number} is not yours")
    return case


async def _linkable_record(
    session: AsyncSession, record_id: uuid.UUID, staff: StaffIdentity
) -> ContactRecord:
    record = (
        await session.execute(
            select(ContactRecord).where(col(ContactRecord.id) == record_id).with_for_update()
        )
    ).scalar_one_or_none()
    if record is None:
        raise invalid("record_id", f"no contact record {str(record_id)!r}")
    conversation = (
        await session.get(Conversation, record.conversation_id) if record.conversation_id else None
    )
    if not records.may_edit(record, conversation, staff):
        raise forbidden(f"record:{record.id}", "this contact record is not yours")
    if record.case_id is not None:
        raise Refused("conflict", "this contact is already linked to a case", field="record_id")
    return record


def _link(
    session: AsyncSession, case: CaseFile, record: ContactRecord, staff: StaffIdentity
) -> None:
    record.case_id = case.id
    record.updated_at = utcnow()
    add_event(
        session, case, staff, "contact_linked", record_id=str(record.id), channel=record.channel
    )
    audit.record(
        session,
        action="case.link_contact",
        actor_user_id=staff.id,
        target=f"case:{case.id}",
        record=str(record.id),
    )


def add_event(
    session: AsyncSession,
    case: CaseFile,
    staff: StaffIdentity,
    kind: str,
    body: str | None = None,
    **detail: Any,
) -> CaseEvent:
    event = CaseEvent(case_id=case.id, actor_user_id=staff.id, kind=kind, body=body, detail=detail)
    session.add(event)
    return event


async def _referrals_of(
    session: AsyncSession, case_id: uuid.UUID
) -> list[tuple[Referral, str, str]]:
    rows = await session.execute(
        select(Referral, col(Service.name), col(Organization.name))
        .join(Service, col(Service.id) == col(Referral.service_id))
        .join(Organization, col(Organization.id) == col(Service.organization_id))
        .where(col(Referral.case_id) == case_id)
        .order_by(col(Referral.referred_on), col(Referral.created_at))
    )
    return [(row[0], row[1], row[2]) for row in rows]


def closed(case: CaseFile) -> Refused:
    return Refused(
        "conflict", f"case {case.number} is closed; a supervisor can reopen it", field="status"
    )


def _people(cases: list[CaseFile]) -> set[uuid.UUID]:
    ids: set[uuid.UUID] = set()
    for case in cases:
        ids.update(
            i for i in (case.assigned_user_id, case.opened_by_user_id, case.closed_by_user_id) if i
        )
    return ids


def _s(value: uuid.UUID | None) -> str | None:
    return str(value) if value else None
