"""Referrals: a case sent to a service in the directory, tracked to its outcome.

sent -> acknowledged -> in progress -> completed | declined; steps may be skipped but
never taken back, and completed and declined are final. Each step is a timeline event.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import audit, cases, taxonomy
from chat_server.accounts import StaffIdentity
from chat_server.errors import Refused
from chat_server.fields import a_date, an_id, invalid, iso, text
from db.casework import CaseFile, Organization, Referral, Service
from db.models import utcnow

REASON_MAX = 2000
OUTCOME_MAX = 2000
CONTACT_MAX = 120
ORDER = ("sent", "acknowledged", "in_progress", "completed", "declined")
FINAL = ("completed", "declined")
UPDATABLE = ("status", "on", "outcome", "follow_up_on", "contact_person")


def referral_json(
    referral: Referral, service_name: str = "", organization_name: str = ""
) -> dict[str, Any]:
    return {
        "id": str(referral.id),
        "case_id": str(referral.case_id),
        "service_id": str(referral.service_id),
        "service": service_name,
        "organization": organization_name,
        "reason": referral.reason,
        "contact_person": referral.contact_person,
        "referred_on": referral.referred_on.isoformat(),
        "status": referral.status,
        "status_on": referral.status_on.isoformat(),
        "follow_up_on": referral.follow_up_on.isoformat() if referral.follow_up_on else None,
        "outcome": referral.outcome,
        "created_at": iso(referral.created_at),
        "updated_at": iso(referral.updated_at),
    }


async def refer(
    db: async_sessionmaker[AsyncSession], ref: str, staff: StaffIdentity, data: Mapping[str, Any]
) -> tuple[Referral, Service, Organization]:
    for key in data:
        if key not in ("service_id", "reason", "referred_on", "contact_person", "follow_up_on"):
            raise invalid(key, f"{key!r} is not a field of a referral")
    service_id = an_id(data.get("service_id"), "service_id")
    reason = text(data.get("reason"), "reason", max_length=REASON_MAX, required=True)
    contact_person = text(data.get("contact_person"), "contact_person", max_length=CONTACT_MAX)
    today = cases.today()
    referred_on = a_date(data.get("referred_on"), "referred_on") or today
    if referred_on > today:
        raise invalid("referred_on", f"referred_on {referred_on.isoformat()} is in the future")
    follow_up_on = a_date(data.get("follow_up_on"), "follow_up_on")
    if follow_up_on is not None and follow_up_on < referred_on:
        raise invalid("follow_up_on", "follow_up_on is before the referral date")
    async with db() as session, session.begin():
        case = await cases.visible_case(session, ref, staff, for_update=True)
        if case.status == "closed":
            raise cases.closed(case)
        service = await session.get(Service, service_id)
        if service is None:
            raise invalid("service_id", f"no service {str(service_id)!r} in the directory")
        if service.status != "active":
            status_name = taxonomy.name_of("service_statuses", service.status, "en").lower()
            raise invalid(
                "service_id", f"the service {service.name!r} is {status_name}: refer elsewhere"
            )
        organization = await session.get(Organization, service.organization_id)
        assert organization is not None
        now = utcnow()
        referral = Referral(
            case_id=case.id,
            service_id=service.id,
            reason=reason,
            contact_person=contact_person,
            referred_on=referred_on,
            status="sent",
            status_on=referred_on,
            follow_up_on=follow_up_on,
            created_by_user_id=staff.id,
            created_at=now,
            updated_at=now,
        )
        session.add(referral)
        cases.add_event(
            session,
            case,
            staff,
            "referral",
            body=reason,
            referral_id=str(referral.id),
            service=service.name,
            organization=organization.name,
            on=referred_on.isoformat(),
        )
        case.updated_at = now
        audit.record(
            session,
            action="referral.create",
            actor_user_id=staff.id,
            target=f"referral:{referral.id}",
            case=case.number,
        )
    return referral, service, organization


async def update(
    db: async_sessionmaker[AsyncSession],
    referral_id: uuid.UUID,
    staff: StaffIdentity,
    data: Mapping[str, Any],
) -> tuple[Referral, Service, Organization]:
    for key in data:
        if key not in UPDATABLE:
            raise invalid(key, f"{key!r} is not a field of a referral that can change")
    status = taxonomy.check_code("referral_statuses", data.get("status"), "status")
    on = a_date(data.get("on"), "on") or cases.today()
    if on > cases.today():
        raise invalid("on", f"on {on.isoformat()} is in the future")
    async with db() as session, session.begin():
        referral = (
            await session.execute(
                select(Referral).where(col(Referral.id) == referral_id).with_for_update()
            )
        ).scalar_one_or_none()
        if referral is None:
            raise Refused("not_found", f"no referral {str(referral_id)!r}")
        case = await session.get(CaseFile, referral.case_id)
        assert case is not None
        case = await cases.visible_case(session, str(case.id), staff, for_update=True)
        if case.status == "closed":
            raise cases.closed(case)
        changes: dict[str, Any] = {}
        if status is not None and status != referral.status:
            if referral.status in FINAL:
                raise Refused(
                    "conflict", f"the referral is already {referral.status}", field="status"
                )
            if ORDER.index(status) < ORDER.index(referral.status):
                raise Refused(
                    "conflict",
                    f"a referral cannot go back from {referral.status} to {status}",
                    field="status",
                )
            if on < referral.referred_on:
                raise invalid("on", "on is before the referral was sent")
            changes["status"] = (referral.status, status)
            referral.status = status
            referral.status_on = on
        if "outcome" in data:
            referral.outcome = text(data["outcome"], "outcome", max_length=OUTCOME_MAX)
            changes["outcome"] = True
        if "contact_person" in data:
            referral.contact_person = text(
                data["contact_person"], "contact_person", max_length=CONTACT_MAX
            )
        if "follow_up_on" in data:
            referral.follow_up_on = a_date(data["follow_up_on"], "follow_up_on")
        service = await session.get(Service, referral.service_id)
        organization = await session.get(Organization, service.organization_id) if service else None
        assert service is not None and organization is not None
        now = utcnow()
        referral.updated_at = now
        case.updated_at = now
        cases.add_event(
            session,
            case,
            staff,
            "referral_status" if "status" in changes else "referral_updated",
            body=referral.outcome if "outcome" in changes and referral.outcome else None,
            referral_id=str(referral.id),
            service=service.name,
            before=changes["status"][0] if "status" in changes else None,
            after=referral.status,
            on=referral.status_on.isoformat(),
        )
        audit.record(
            session,
            action="referral.update",
            actor_user_id=staff.id,
            target=f"referral:{referral.id}",
            fields=sorted(data),
        )
    return referral, service, organization


async def due(
    db: async_sessionmaker[AsyncSession], staff: StaffIdentity, until: date
) -> tuple[list[CaseFile], list[tuple[Referral, str, str, CaseFile]]]:
    """Follow-ups due by `until`: open cases and unfinished referrals on visible cases."""
    async with db() as session, session.begin():
        due_cases = list(
            (
                await session.execute(
                    select(CaseFile)
                    .where(
                        cases.visible_to(staff),
                        col(CaseFile.status) != "closed",
                        col(CaseFile.follow_up_on) <= until,
                    )
                    .order_by(col(CaseFile.follow_up_on))
                    .limit(200)
                )
            ).scalars()
        )
        rows = await session.execute(
            select(Referral, col(Service.name), col(Organization.name), CaseFile)
            .join(Service, col(Service.id) == col(Referral.service_id))
            .join(Organization, col(Organization.id) == col(Service.organization_id))
            .join(CaseFile, col(CaseFile.id) == col(Referral.case_id))
            .where(
                cases.visible_to(staff),
                col(CaseFile.status) != "closed",
                col(Referral.status).not_in(FINAL),
                col(Referral.follow_up_on) <= until,
            )
            .order_by(col(Referral.follow_up_on))
            .limit(200)
        )
        due_referrals = [(row[0], row[1], row[2], row[3]) for row in rows]
        audit.record(
            session,
            action="followups.view",
            actor_user_id=staff.id,
            cases=len(due_cases),
            referrals=len(due_referrals),
        )
    return due_cases, due_referrals
