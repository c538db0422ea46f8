"""Contact records: the record a counsellor keeps while chatting, and offline contacts.

A chat's record is created as a draft the first time it is opened (prefilled from the
child's pre-chat answers), saved as the counsellor goes, and finalised when the chat
ends; a chat cannot end without a contact type. Contacts that came by phone, post,
e-mail or in person are recorded final at once. Every view and change is audited.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import audit, taxonomy
from chat_server.accounts import StaffIdentity
from chat_server.errors import Refused
from chat_server.fields import a_datetime, forbidden, invalid, iso, text
from chat_server.taxonomy import Taxonomy
from db.casework import CaseFile, ContactRecord
from db.models import Conversation, utcnow

SUMMARY_MAX = 4000
EDITABLE = (
    "channel",
    "contact_type",
    "categories",
    "age_band",
    "gender",
    "municipality",
    "risk_level",
    "summary",
    "actions",
)
# Sent back by clients that PUT the whole record; never written.
READ_ONLY = (
    "id",
    "conversation_id",
    "status",
    "case_id",
    "contact_at",
    "updated_at",
    "finalised_at",
)
OFFLINE_CHANNELS = ("phone", "post", "email", "in_person")


def record_json(record: ContactRecord) -> dict[str, Any]:
    return {
        "id": str(record.id),
        "conversation_id": str(record.conversation_id) if record.conversation_id else None,
        "channel": record.channel,
        "contact_type": record.contact_type,
        "categories": list(record.categories),
        "age_band": record.age_band,
        "gender": record.gender,
        "municipality": record.municipality_code,
        "risk_level": record.risk_level,
        "summary": record.summary,
        "actions": list(record.actions),
        "status": record.status,
        "case_id": str(record.case_id) if record.case_id else None,
        "contact_at": iso(record.contact_at),
        "updated_at": iso(record.updated_at),
        "finalised_at": iso(record.finalised_at),
    }


def check_fields(tax: Taxonomy, data: Mapping[str, Any]) -> dict[str, Any]:
    """The given editable fields as column values; unknown fields and codes are refused."""
    for key in data:
        if key not in EDITABLE and key not in READ_ONLY:
            raise invalid(key, f"{key!r} is not a field of the contact record")
    values: dict[str, Any] = {}
    checks: dict[str, Callable[[Any], Any]] = {
        "channel": lambda v: taxonomy.check_code("channels", v, "channel", required=True),
        "contact_type": lambda v: taxonomy.check_code("contact_types", v, "contact_type"),
        "categories": tax.check_categories,
        "age_band": lambda v: taxonomy.check_code("age_bands", v, "age_band"),
        "gender": lambda v: taxonomy.check_code("genders", v, "gender"),
        "municipality": tax.check_municipality,
        "risk_level": lambda v: taxonomy.check_code("risk_levels", v, "risk_level", required=True),
        "summary": lambda v: text(v, "summary", max_length=SUMMARY_MAX, strip=False),
        "actions": lambda v: taxonomy.check_codes("actions", v, "actions"),
    }
    for key, check in checks.items():
        if key in data:
            column = "municipality_code" if key == "municipality" else key
            values[column] = check(data[key])
    return values


def may_edit(
    record: ContactRecord, conversation: Conversation | None, staff: StaffIdentity
) -> bool:
    if staff.supervises:
        return True
    if conversation is not None:
        return conversation.assigned_user_id == staff.id
    return record.counsellor_user_id == staff.id


# --- a chat's record ---------------------------------------------------------------------


async def open_for_conversation(
    db: async_sessionmaker[AsyncSession], conversation_id: uuid.UUID, staff: StaffIdentity
) -> ContactRecord:
    """The chat's record, created as a draft on first access; audited as a view."""
    for _attempt in range(2):
        try:
            async with db() as session, session.begin():
                record, _conversation = await _chat_record(session, conversation_id, staff)
                audit.record(
                    session,
                    action="record.view",
                    actor_user_id=staff.id,
                    target=f"record:{record.id}",
                )
                return record
        except IntegrityError:
            continue  # another tab created the draft at the same moment: read theirs
    raise Refused("conflict", "the record is being created elsewhere; try again")


async def update_for_conversation(
    db: async_sessionmaker[AsyncSession],
    tax: Taxonomy,
    conversation_id: uuid.UUID,
    staff: StaffIdentity,
    data: Mapping[str, Any],
) -> tuple[ContactRecord, str | None]:
    """Save changes to a draft. Returns the record, and the risk level the conversation
    must be raised (or lowered) to when this change asked for a different one."""
    values = check_fields(tax, data)
    for _attempt in range(2):
        try:
            async with db() as session, session.begin():
                record, conversation = await _chat_record(session, conversation_id, staff)
                if record.status == "final":
                    raise Refused(
                        "conflict", "this contact record is final and cannot change", field="status"
                    )
                for column, value in values.items():
                    setattr(record, column, value)
                record.updated_at = utcnow()
                audit.record(
                    session,
                    action="record.update",
                    actor_user_id=staff.id,
                    target=f"record:{record.id}",
                    fields=sorted(values),
                )
                risk = values.get("risk_level")
                # Compared with the live chat, not the old draft: a retry re-applies it.
                if risk is None or conversation.risk_level == risk:
                    risk = None
                return record, risk
        except IntegrityError:
            continue
    raise Refused("conflict", "the record is being created elsewhere; try again")


async def finalise(
    db: async_sessionmaker[AsyncSession], conversation_id: uuid.UUID, staff: StaffIdentity
) -> ContactRecord:
    async with db() as session, session.begin():
        record, _conversation = await _chat_record(session, conversation_id, staff)
        _finalise(session, record, staff.id)
    return record


async def require_contact_type(
    db: async_sessionmaker[AsyncSession], conversation_id: uuid.UUID
) -> None:
    """Refuse to close a chat whose record has no contact type yet."""
    async with db() as session:
        contact_type = (
            await session.execute(
                select(col(ContactRecord.contact_type)).where(
                    col(ContactRecord.conversation_id) == conversation_id
                )
            )
        ).scalar_one_or_none()
    if contact_type is None:
        raise Refused(
            "conflict",
            "choose a contact type in the contact record before ending the chat",
            field="contact_type",
        )


async def finalise_for_conversation(
    db: async_sessionmaker[AsyncSession],
    conversation_id: uuid.UUID,
    actor: StaffIdentity | uuid.UUID | None,
) -> None:
    """After a chat ends: finalise its record if it has a contact type (idempotent).

    A record without one stays a draft on its counsellor's list of records to finish.
    """
    actor_id = actor.id if isinstance(actor, StaffIdentity) else actor
    async with db() as session, session.begin():
        record = (
            await session.execute(
                select(ContactRecord)
                .where(col(ContactRecord.conversation_id) == conversation_id)
                .with_for_update()
            )
        ).scalar_one_or_none()
        if record is not None and record.status == "draft" and record.contact_type:
            _finalise(session, record, actor_id)


# --- offline contacts and records by id ---------------------------------------------------


async def create_offline(
    db: async_sessionmaker[AsyncSession],
    tax: Taxonomy,
    staff: StaffIdentity,
    data: Mapping[str, Any],
) -> ContactRecord:
    """A contact that came by phone, post, e-mail or in person: recorded final at once."""
    body = dict(data)
    contact_at = a_datetime(body.pop("contact_at", None), "contact_at") or utcnow()
    if contact_at > utcnow():
        raise invalid("contact_at", "contact_at is in the future")
    values = check_fields(tax, body)
    if values.get("channel") not in OFFLINE_CHANNELS:
        raise invalid(
            "channel",
            f"channel must be one of {', '.join(OFFLINE_CHANNELS)}; a chat has its own record",
        )
    if not values.get("contact_type"):
        raise invalid("contact_type", "contact_type is required")
    now = utcnow()
    record = ContactRecord(
        **values,
        status="final",
        counsellor_user_id=staff.id,
        contact_at=contact_at.astimezone(UTC),
        created_at=now,
        updated_at=now,
        finalised_at=now,
    )
    async with db() as session, session.begin():
        session.add(record)
        audit.record(
            session, action="record.create", actor_user_id=staff.id, target=f"record:{record.id}"
        )
    return record


async def get(
    db: async_sessionmaker[AsyncSession], record_id: uuid.UUID, staff: StaffIdentity
) -> tuple[ContactRecord, Conversation | None]:
    """A record by id, for whoever recorded it, its chat's counsellor, the staff who can
    see its case, and supervisors; audited as a view."""
    async with db() as session, session.begin():
        record = await session.get(ContactRecord, record_id)
        if record is None:
            raise Refused("not_found", f"no contact record {str(record_id)!r}")
        conversation = (
            await session.get(Conversation, record.conversation_id)
            if record.conversation_id
            else None
        )
        allowed = may_edit(record, conversation, staff) or record.counsellor_user_id == staff.id
        if not allowed and record.case_id is not None:
            case = await session.get(CaseFile, record.case_id)
            allowed = case is not None and staff.id in (
                case.assigned_user_id,
                case.opened_by_user_id,
            )
        if not allowed:
            raise forbidden(f"record:{record.id}", "this contact record is not yours")
        audit.record(
            session, action="record.view", actor_user_id=staff.id, target=f"record:{record.id}"
        )
    return record, conversation


async def unfinished(
    db: async_sessionmaker[AsyncSession], staff: StaffIdentity
) -> list[ContactRecord]:
    """Drafts of ended chats this counsellor handled (all of them for supervisors)."""
    statement = (
        select(ContactRecord)
        .join(Conversation, col(Conversation.id) == col(ContactRecord.conversation_id))
        .where(col(ContactRecord.status) == "draft", col(Conversation.status) == "ended")
        .order_by(col(ContactRecord.contact_at))
        .limit(200)
    )
    if not staff.supervises:
        statement = statement.where(col(Conversation.assigned_user_id) == staff.id)
    async with db() as session:
        return list((await session.execute(statement)).scalars())


# --- helpers -----------------------------------------------------------------------------


async def _chat_record(
    session: AsyncSession, conversation_id: uuid.UUID, staff: StaffIdentity
) -> tuple[ContactRecord, Conversation]:
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        raise Refused("not_found", f"no conversation {str(conversation_id)!r}")
    if conversation.assigned_user_id != staff.id and not staff.supervises:
        raise forbidden(f"conversation:{conversation_id}", "this chat is not assigned to you")
    record = (
        await session.execute(
            select(ContactRecord)
            .where(col(ContactRecord.conversation_id) == conversation_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if record is None:
        record = _draft_for(conversation)
        session.add(record)
        await session.flush()
    return record, conversation


def _draft_for(conversation: Conversation) -> ContactRecord:
    pre_chat = conversation.pre_chat or {}
    age_band = pre_chat.get("age_band")
    gender = pre_chat.get("gender")
    now = utcnow()
    return ContactRecord(
        conversation_id=conversation.id,
        channel="chat",
        age_band=age_band if age_band in taxonomy.codes("age_bands") else None,
        gender=gender if gender in taxonomy.codes("genders") else None,
        risk_level=conversation.risk_level
        if conversation.risk_level in taxonomy.codes("risk_levels")
        else "none",
        counsellor_user_id=conversation.assigned_user_id,
        contact_at=conversation.created_at,
        created_at=now,
        updated_at=now,
    )


def _finalise(session: AsyncSession, record: ContactRecord, actor_id: uuid.UUID | None) -> None:
    if record.status == "final":
        return
    if not record.contact_type:
        raise invalid("contact_type", "choose a contact type before finalising the record")
    now = utcnow()
    record.status = "final"
    record.finalised_at = now
    record.updated_at = now
    audit.record(
        session, action="record.finalise", actor_user_id=actor_id, target=f"record:{record.id}"
    )
