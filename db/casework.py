"""Casework tables: reference data, contact records, case files, referrals, the directory.

Reference data (categories, areas) is seeded from the versioned files in db/data/ by the
migrations; codes are stored, names are looked up. The directory follows the shape of
Open Referral HSDS: an organization offers services at locations.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from db.models import UTCDateTime, utcnow

DATA = Path(__file__).parent / "data"
CHI_FILE = "chi_categories.v1.json"
AREAS_FILE = "albania_areas.v1.json"
CODES_FILE = "codes.v1.json"
DIRECTORY_DEMO_FILE = "directory_demo.v1.json"


@cache
def data_file(name: str) -> Any:
    """A versioned data file; read once per process, on first use."""
    return json.loads((DATA / name).read_text(encoding="utf-8"))


# --- reference data ----------------------------------------------------------------------


class ChiCategory(SQLModel, table=True):
    """A Child Helpline International category (no parent) or subcategory."""

    __tablename__ = "chi_categories"

    code: str = Field(primary_key=True, max_length=64)
    parent_code: str | None = Field(
        default=None, foreign_key="chi_categories.code", max_length=64, index=True
    )
    name_sq: str = Field(max_length=160)
    name_en: str = Field(max_length=160)
    position: int = Field(default=0)
    # The data file version that last wrote this row.
    version: str = Field(max_length=32)
    # Retired codes stay for old records and reports, but cannot be chosen any more.
    active: bool = Field(default=True)


class County(SQLModel, table=True):
    __tablename__ = "counties"

    code: str = Field(primary_key=True, max_length=8)
    name_sq: str = Field(max_length=80)
    name_en: str = Field(max_length=80)
    position: int = Field(default=0)


class Municipality(SQLModel, table=True):
    __tablename__ = "municipalities"

    code: str = Field(primary_key=True, max_length=16)
    county_code: str = Field(foreign_key="counties.code", max_length=8, index=True)
    name_sq: str = Field(max_length=80)
    name_en: str = Field(max_length=80)
    position: int = Field(default=0)


# --- contacts and cases ------------------------------------------------------------------


class CaseFile(SQLModel, table=True):
    __tablename__ = "cases"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # Readable and unique: the year and a counter, e.g. 2026-000123.
    number: str = Field(max_length=16, unique=True)
    status: str = Field(default="open", max_length=16, index=True)  # open | in_progress | closed
    # A name the child chose or the counsellor gave; a real name is never required.
    pseudonym: str = Field(default="", max_length=80)
    age_band: str | None = Field(default=None, max_length=16)
    gender: str | None = Field(default=None, max_length=16)
    municipality_code: str | None = Field(
        default=None, foreign_key="municipalities.code", max_length=16
    )
    risk_level: str = Field(default="none", max_length=16)
    summary: str = Field(default="", sa_type=sa.Text)
    follow_up_on: date | None = Field(default=None, index=True)
    assigned_user_id: uuid.UUID | None = Field(
        default=None, foreign_key="staff_users.id", index=True
    )
    opened_by_user_id: uuid.UUID = Field(foreign_key="staff_users.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by_user_id: uuid.UUID | None = Field(default=None, foreign_key="staff_users.id")


class CaseCounter(SQLModel, table=True):
    """The last case number handed out per year; bumped in the case's own transaction."""

    __tablename__ = "case_counters"

    year: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    last: int = Field(default=0)


class ContactRecord(SQLModel, table=True):
    """One contact, whatever its channel: a chat's record, or a phone call, letter, e-mail
    or visit recorded by hand. Drafts are edited while chatting; final ones are counted."""

    __tablename__ = "contact_records"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    conversation_id: uuid.UUID | None = Field(
        default=None, foreign_key="conversations.id", unique=True
    )
    channel: str = Field(default="chat", max_length=16)
    contact_type: str | None = Field(default=None, max_length=32)
    categories: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    age_band: str | None = Field(default=None, max_length=16)
    gender: str | None = Field(default=None, max_length=16)
    municipality_code: str | None = Field(
        default=None, foreign_key="municipalities.code", max_length=16
    )
    risk_level: str = Field(default="none", max_length=16)
    summary: str = Field(default="", sa_type=sa.Text)
    actions: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    status: str = Field(default="draft", max_length=8, index=True)  # draft | final
    case_id: uuid.UUID | None = Field(default=None, foreign_key="cases.id", index=True)
    # Who recorded it: the chat's counsellor, or whoever typed in an offline contact.
    counsellor_user_id: uuid.UUID | None = Field(
        default=None, foreign_key="staff_users.id", index=True
    )
    # When the contact happened (a chat's start; a letter's arrival): reports count by it.
    contact_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finalised_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CaseEvent(SQLModel, table=True):
    """The case timeline: notes, status changes, links, hand-overs, referral steps."""

    __tablename__ = "case_events"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = Field(foreign_key="cases.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor_user_id: uuid.UUID | None = Field(default=None, foreign_key="staff_users.id")
    kind: str = Field(max_length=24)
    body: str | None = Field(default=None, sa_type=sa.Text)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


# --- the referral directory (HSDS shape) -------------------------------------------------


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200, index=True)
    alternate_name: str = Field(default="", max_length=200)
    description: str = Field(default="", sa_type=sa.Text)
    email: str = Field(default="", max_length=200)
    url: str = Field(default="", max_length=300)
    # Demo entries: illustrations, not real contacts.
    example: bool = Field(default=False)
    # What still has to be checked before staff rely on the entry.
    verification: str = Field(default="", max_length=300)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Service(SQLModel, table=True):
    __tablename__ = "services"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(foreign_key="organizations.id", index=True)
    name: str = Field(max_length=200)
    description: str = Field(default="", sa_type=sa.Text)
    status: str = Field(default="active", max_length=24)  # active | inactive | temporarily_closed
    minimum_age: int | None = Field(default=None)
    maximum_age: int | None = Field(default=None)
    eligibility: str = Field(default="", sa_type=sa.Text)
    application_process: str = Field(default="", sa_type=sa.Text)
    categories: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    # "AL" (nationwide), county codes or municipality codes.
    service_areas: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    phones: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    email: str = Field(default="", max_length=200)
    url: str = Field(default="", max_length=300)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Location(SQLModel, table=True):
    __tablename__ = "locations"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(foreign_key="organizations.id", index=True)
    name: str = Field(default="", max_length=200)
    location_type: str = Field(default="physical", max_length=16)  # physical | postal | virtual
    address: str = Field(default="", max_length=300)
    municipality_code: str | None = Field(
        default=None, foreign_key="municipalities.code", max_length=16
    )
    phones: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    email: str = Field(default="", max_length=200)
    hours: str = Field(default="", max_length=200)
    description: str = Field(default="", sa_type=sa.Text)


class ServiceAtLocation(SQLModel, table=True):
    __tablename__ = "service_at_locations"

    service_id: uuid.UUID = Field(foreign_key="services.id", primary_key=True)
    location_id: uuid.UUID = Field(foreign_key="locations.id", primary_key=True)


class Referral(SQLModel, table=True):
    __tablename__ = "referrals"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = Field(foreign_key="cases.id", index=True)
    service_id: uuid.UUID = Field(foreign_key="services.id", index=True)
    reason: str = Field(sa_type=sa.Text)
    contact_person: str = Field(default="", max_length=120)
    referred_on: date
    # sent | acknowledged | in_progress | completed | declined
    status: str = Field(default="sent", max_length=16, index=True)
    status_on: date
    follow_up_on: date | None = Field(default=None, index=True)
    outcome: str = Field(default="", sa_type=sa.Text)
    created_by_user_id: uuid.UUID = Field(foreign_key="staff_users.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
