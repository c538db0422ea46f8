"""The counsellors' library: canned responses and information resources to share.

Both are helpline content an administrator keeps; counsellors insert them into a message
and edit them before sending, never send them as they are. Rows loaded from the demo
file (db/data/library_demo.v1.json) have no `updated_by` until an administrator has
reviewed and saved them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from db.models import UTCDateTime, utcnow

LIBRARY_DEMO_FILE = "library_demo.v1.json"


class CannedResponse(SQLModel, table=True):
    __tablename__ = "canned_responses"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    lang: str = Field(max_length=8, index=True)  # sq | en
    title: str = Field(max_length=120)
    body: str = Field(sa_type=sa.Text)
    # Words to find it by, besides its title and text.
    tags: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    # Retired responses stay for the audit trail but are no longer offered.
    active: bool = Field(default=True)
    updated_by: uuid.UUID | None = Field(default=None, foreign_key="staff_users.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class InfoResource(SQLModel, table=True):
    """Psycho-education a counsellor shares in one click: plain text for the child, and
    optionally a page of the helpline's own site."""

    __tablename__ = "info_resources"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    lang: str = Field(max_length=8, index=True)  # sq | en
    topic: str = Field(max_length=32, index=True)  # tobacco | drugs | sexual_health | ...
    title: str = Field(max_length=160)
    body: str = Field(sa_type=sa.Text)
    url: str = Field(default="", max_length=300)
    active: bool = Field(default=True)
    updated_by: uuid.UUID | None = Field(default=None, foreign_key="staff_users.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
