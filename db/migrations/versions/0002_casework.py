"""casework: contact records, cases, referrals, the referral directory, reference data

Reference data is seeded from the versioned files in db/data/ named here; a later
version of a file comes with a revision of its own.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 17:42:19.402946
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATA = Path(__file__).resolve().parents[2] / "data"
CHI_FILE = "chi_categories.v1.json"
AREAS_FILE = "albania_areas.v1.json"


def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def _seed() -> None:
    chi = _load(CHI_FILE)
    categories = sa.table(
        "chi_categories",
        sa.column("code", sa.String),
        sa.column("parent_code", sa.String),
        sa.column("name_sq", sa.String),
        sa.column("name_en", sa.String),
        sa.column("position", sa.Integer),
        sa.column("version", sa.String),
        sa.column("active", sa.Boolean),
    )
    rows: list[dict[str, Any]] = []
    children: list[dict[str, Any]] = []
    for i, category in enumerate(chi["categories"]):
        rows.append(_category(category, None, i, chi["version"]))
        for j, child in enumerate(category["children"]):
            children.append(_category(child, category["code"], j, chi["version"]))
    op.bulk_insert(categories, rows + children)

    areas = _load(AREAS_FILE)
    counties = sa.table(
        "counties",
        sa.column("code", sa.String),
        sa.column("name_sq", sa.String),
        sa.column("name_en", sa.String),
        sa.column("position", sa.Integer),
    )
    municipalities = sa.table(
        "municipalities",
        sa.column("code", sa.String),
        sa.column("county_code", sa.String),
        sa.column("name_sq", sa.String),
        sa.column("name_en", sa.String),
        sa.column("position", sa.Integer),
    )
    op.bulk_insert(
        counties,
        [
            {"code": c["code"], "name_sq": c["sq"], "name_en": c["en"], "position": i}
            for i, c in enumerate(areas["counties"])
        ],
    )
    op.bulk_insert(
        municipalities,
        [
            {
                "code": m["code"],
                "county_code": c["code"],
                "name_sq": m["sq"],
                "name_en": m["en"],
                "position": j,
            }
            for c in areas["counties"]
            for j, m in enumerate(c["municipalities"])
        ],
    )


def _category(
    item: dict[str, Any], parent: str | None, position: int, version: str
) -> dict[str, Any]:
    return {
        "code": item["code"],
        "parent_code": parent,
        "name_sq": item["sq"],
        "name_en": item["en"],
        "position": position,
        "version": version,
        "active": True,
    }


def upgrade() -> None:
    op.create_table(
        "case_counters",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year"),
    )
    op.create_table(
        "chi_categories",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("parent_code", sa.String(length=64), nullable=True),
        sa.Column("name_sq", sa.String(length=160), nullable=False),
        sa.Column("name_en", sa.String(length=160), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_code"],
            ["chi_categories.code"],
        ),
        sa.PrimaryKeyConstraint("code"),
    )
    with op.batch_alter_table("chi_categories", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_chi_categories_parent_code"), ["parent_code"], unique=False
        )

    op.create_table(
        "counties",
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("name_sq", sa.String(length=80), nullable=False),
        sa.Column("name_en", sa.String(length=80), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("alternate_name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("email", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=300), nullable=False),
        sa.Column("example", sa.Boolean(), nullable=False),
        sa.Column("verification", sa.String(length=300), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_organizations_name"), ["name"], unique=False)

    op.create_table(
        "municipalities",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("county_code", sa.String(length=8), nullable=False),
        sa.Column("name_sq", sa.String(length=80), nullable=False),
        sa.Column("name_en", sa.String(length=80), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["county_code"],
            ["counties.code"],
        ),
        sa.PrimaryKeyConstraint("code"),
    )
    with op.batch_alter_table("municipalities", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_municipalities_county_code"), ["county_code"], unique=False
        )

    op.create_table(
        "services",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("minimum_age", sa.Integer(), nullable=True),
        sa.Column("maximum_age", sa.Integer(), nullable=True),
        sa.Column("eligibility", sa.Text(), nullable=False),
        sa.Column("application_process", sa.Text(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("service_areas", sa.JSON(), nullable=False),
        sa.Column("phones", sa.JSON(), nullable=False),
        sa.Column("email", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=300), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_services_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "cases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pseudonym", sa.String(length=80), nullable=False),
        sa.Column("age_band", sa.String(length=16), nullable=True),
        sa.Column("gender", sa.String(length=16), nullable=True),
        sa.Column("municipality_code", sa.String(length=16), nullable=True),
        sa.Column("risk_level", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("follow_up_on", sa.Date(), nullable=True),
        sa.Column("assigned_user_id", sa.Uuid(), nullable=True),
        sa.Column("opened_by_user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by_user_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["assigned_user_id"],
            ["staff_users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["closed_by_user_id"],
            ["staff_users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["municipality_code"],
            ["municipalities.code"],
        ),
        sa.ForeignKeyConstraint(
            ["opened_by_user_id"],
            ["staff_users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cases_assigned_user_id"), ["assigned_user_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_cases_follow_up_on"), ["follow_up_on"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_cases_opened_by_user_id"), ["opened_by_user_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_cases_status"), ["status"], unique=False)

    op.create_table(
        "locations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("location_type", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("municipality_code", sa.String(length=16), nullable=True),
        sa.Column("phones", sa.JSON(), nullable=False),
        sa.Column("email", sa.String(length=200), nullable=False),
        sa.Column("hours", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["municipality_code"],
            ["municipalities.code"],
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_locations_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "case_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_user_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_user_id"],
            ["staff_users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_events_case_id"), ["case_id"], unique=False)

    op.create_table(
        "contact_records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("contact_type", sa.String(length=32), nullable=True),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("age_band", sa.String(length=16), nullable=True),
        sa.Column("gender", sa.String(length=16), nullable=True),
        sa.Column("municipality_code", sa.String(length=16), nullable=True),
        sa.Column("risk_level", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=True),
        sa.Column("counsellor_user_id", sa.Uuid(), nullable=True),
        sa.Column("contact_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finalised_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["counsellor_user_id"],
            ["staff_users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["municipality_code"],
            ["municipalities.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("conversation_id"),
    )
    with op.batch_alter_table("contact_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contact_records_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_contact_records_contact_at"), ["contact_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_contact_records_counsellor_user_id"),
            ["counsellor_user_id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_contact_records_status"), ["status"], unique=False)

    op.create_table(
        "referrals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("contact_person", sa.String(length=120), nullable=False),
        sa.Column("referred_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_on", sa.Date(), nullable=False),
        sa.Column("follow_up_on", sa.Date(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("created_by_user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"],
            ["staff_users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referrals_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_referrals_follow_up_on"), ["follow_up_on"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_referrals_service_id"), ["service_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_referrals_status"), ["status"], unique=False)

    op.create_table(
        "service_at_locations",
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("location_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
        ),
        sa.PrimaryKeyConstraint("service_id", "location_id"),
    )
    _seed()


def downgrade() -> None:
    op.drop_table("service_at_locations")
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referrals_status"))
        batch_op.drop_index(batch_op.f("ix_referrals_service_id"))
        batch_op.drop_index(batch_op.f("ix_referrals_follow_up_on"))
        batch_op.drop_index(batch_op.f("ix_referrals_case_id"))

    op.drop_table("referrals")
    with op.batch_alter_table("contact_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_records_status"))
        batch_op.drop_index(batch_op.f("ix_contact_records_counsellor_user_id"))
        batch_op.drop_index(batch_op.f("ix_contact_records_contact_at"))
        batch_op.drop_index(batch_op.f("ix_contact_records_case_id"))

    op.drop_table("contact_records")
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_events_case_id"))

    op.drop_table("case_events")
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_locations_organization_id"))

    op.drop_table("locations")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_status"))
        batch_op.drop_index(batch_op.f("ix_cases_opened_by_user_id"))
        batch_op.drop_index(batch_op.f("ix_cases_follow_up_on"))
        batch_op.drop_index(batch_op.f("ix_cases_assigned_user_id"))

    op.drop_table("cases")
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_services_organization_id"))

    op.drop_table("services")
    with op.batch_alter_table("municipalities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_municipalities_county_code"))

    op.drop_table("municipalities")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_organizations_name"))

    op.drop_table("organizations")
    op.drop_table("counties")
    with op.batch_alter_table("chi_categories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chi_categories_parent_code"))

    op.drop_table("chi_categories")
    op.drop_table("case_counters")
