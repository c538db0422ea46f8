"""The tables. The database is the single source of truth; memory only caches it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware on both databases: SQLite keeps no zone, so UTC is restored on read."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None:
            if value.tzinfo is None:
                raise ValueError(f"naive datetime {value!r}; use datetime.now(UTC)")
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class StaffUser(SQLModel, table=True):
    __tablename__ = "staff_users"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    display_name: str = Field(max_length=80)
    role: str = Field(max_length=16)  # counsellor | supervisor | admin
    password_hash: str = Field(max_length=255)
    max_chats: int = Field(default=3)
    status: str = Field(default="offline", max_length=16)  # available | break | offline
    status_since: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Refreshed by the node holding a connection; a sweep turns stale users offline.
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # When the password was last set (a change revokes every other session).
    password_changed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    deactivated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # TOTP: the shared secret, encrypted with a key derived from the secret key, so a
    # database dump alone cannot make codes; never logged.
    totp_secret: str | None = Field(default=None, max_length=255)
    # A secret offered during set-up, until a first code proves the app holds it.
    totp_pending_secret: str | None = Field(default=None, max_length=255)
    totp_enabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The last 30-second step a code was accepted for: each code works once.
    totp_last_step: int | None = Field(default=None, sa_type=sa.BigInteger)


class StaffSession(SQLModel, table=True):
    __tablename__ = "staff_sessions"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # Only a hash of the cookie is kept, so a database dump cannot log anyone in.
    token_hash: str = Field(max_length=64, unique=True)
    user_id: uuid.UUID = Field(foreign_key="staff_users.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The password was right but the second factor is still due: such a session opens
    # nothing but the second step, and lives only minutes.
    pending_second_factor: bool = Field(default=False)


class StaffRecoveryCode(SQLModel, table=True):
    """One-time codes for a staff member who lost their authenticator; only keyed hashes."""

    __tablename__ = "staff_recovery_codes"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="staff_users.id", index=True)
    code_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class LoginThrottle(SQLModel, table=True):
    """Failed logins per username, known or not, so both are throttled alike.

    The key is a keyed hash of the normalised name: a mistyped password in the username
    field is never stored. Rows of names left alone for a day are swept away.
    """

    __tablename__ = "login_throttle"

    key: str = Field(primary_key=True, max_length=64)
    failures: int = Field(default=0)
    last_failure_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"
    __table_args__ = (
        sa.Index("ix_conversations_queue", "status", "priority", "queued_at"),
        sa.UniqueConstraint("return_code_hash", name="uq_conversations_return_code_hash"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    status: str = Field(default="queued", max_length=16, index=True)  # queued | active | ended
    priority: int = Field(default=0)
    # chat: live counselling; message: left while nobody could answer, read later.
    mode: str = Field(default="chat", max_length=16)
    # Live triage: none | low | high | imminent; high and imminent raise the priority.
    risk_level: str = Field(default="none", max_length=16)
    lang: str = Field(default="sq", max_length=8)
    pre_chat: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    # Keyed HMAC of the child's random token; the token itself is never stored.
    child_token_hash: str = Field(max_length=64, unique=True)
    assigned_user_id: uuid.UUID | None = Field(
        default=None, foreign_key="staff_users.id", index=True
    )
    # The last seq handed out; bumped in the same transaction as each message insert.
    last_seq: int = Field(default=0)
    child_read_seq: int = Field(default=0)
    staff_read_seq: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Queue order key: set on joining, and moved to the front when a chat is requeued.
    queued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    assigned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    end_reason: str | None = Field(default=None, max_length=32)
    last_message_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # For the floor: how long a child has been waiting for a reply.
    last_child_message_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_staff_message_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Refreshed while the child's socket is open on some node; grace sweeps read it.
    child_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Set when the child's last socket closed; cleared when the child is back.
    child_left_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # A transfer offered to a named colleague, until they accept or decline (or it lapses).
    transfer_to_user_id: uuid.UUID | None = Field(default=None, foreign_key="staff_users.id")
    transfer_from_user_id: uuid.UUID | None = Field(default=None, foreign_key="staff_users.id")
    transfer_note: str | None = Field(default=None, max_length=500)
    transfer_offered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Keyed HMAC of the child's return code, if they asked for one; never the code.
    return_code_hash: str | None = Field(default=None, max_length=64)
    # When the child used quick exit: the counsellor is told the child left suddenly.
    quick_exit_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    feedback_rating: int | None = Field(default=None)
    feedback_helped: bool | None = Field(default=None)
    # When retention removed the transcript (chat_server/retention.py); the row stays,
    # without anything that identifies the child, so the report figures stay too.
    transcript_purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        sa.UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        sa.UniqueConstraint(
            "conversation_id", "sender", "client_id", name="uq_messages_conversation_client"
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    conversation_id: uuid.UUID = Field(foreign_key="conversations.id")
    seq: int
    sender: str = Field(max_length=16)  # child | counsellor | system
    author_user_id: uuid.UUID | None = Field(default=None, foreign_key="staff_users.id")
    body: str = Field(sa_type=sa.Text)
    client_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Whisper(SQLModel, table=True):
    """A supervisor's note to the counsellor: kept with the conversation for the record,
    never part of the child's stream (it takes no seq)."""

    __tablename__ = "whispers"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    conversation_id: uuid.UUID = Field(foreign_key="conversations.id", index=True)
    author_user_id: uuid.UUID = Field(foreign_key="staff_users.id")
    body: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Block(SQLModel, table=True):
    """New chats refused for a browser session (by its token's hash) until it expires.

    No address or device identifier is stored: a node may also refuse the address it
    saw, in memory only, for the same time.
    """

    __tablename__ = "blocks"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    child_token_hash: str = Field(max_length=64, index=True)
    conversation_id: uuid.UUID = Field(foreign_key="conversations.id")
    reason: str = Field(max_length=500)
    created_by: uuid.UUID = Field(foreign_key="staff_users.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    lifted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lifted_by: uuid.UUID | None = Field(default=None, foreign_key="staff_users.id")


class Alert(SQLModel, table=True):
    """Something a supervisor must see: a child in danger, high risk, a long wait, a child
    left unanswered. One open alert per kind and conversation; acknowledged by a supervisor."""

    __tablename__ = "alerts"
    __table_args__ = (
        sa.UniqueConstraint("conversation_id", "kind", name="uq_alerts_conversation_kind"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    kind: str = Field(max_length=24)  # in_danger | risk | long_wait | unanswered
    conversation_id: uuid.UUID = Field(foreign_key="conversations.id")
    level: str | None = Field(default=None, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    acked_by: uuid.UUID | None = Field(default=None, foreign_key="staff_users.id")
    acked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditEvent(SQLModel, table=True):
    """Append-only: the code has no path that updates or deletes a row."""

    __tablename__ = "audit_events"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    actor_user_id: uuid.UUID | None = Field(default=None, foreign_key="staff_users.id", index=True)
    action: str = Field(max_length=48, index=True)
    target: str | None = Field(default=None, max_length=80)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
