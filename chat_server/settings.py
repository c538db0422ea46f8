"""One typed settings object, read once at the edge and passed in."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRET = "change-me"
DEFAULT_DATABASE_URL = f"sqlite+aiosqlite:///{Path('var') / 'alo116.db'}"


def parse_hours(text: str) -> list[tuple[time, time]]:
    """ "08:00-13:00,14:00-22:00" as ranges; a range may run past midnight ("20:00-08:00")."""
    ranges = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            start, end = (time.fromisoformat(t.strip()) for t in part.split("-"))
        except ValueError:
            raise ValueError(f"opening hours must look like 08:00-22:00, not {part!r}") from None
        ranges.append((start, end))
    return ranges


class InsecureSettings(ValueError):
    """Settings that must never reach production."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALO116_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    secret_key: str = PLACEHOLDER_SECRET
    # Demo mode tolerates the placeholder secret and plain-HTTP cookies.
    demo: bool = False
    # Extra origins allowed to open WebSockets (the page's own origin always is).
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_url: str = "http://127.0.0.1:8000"
    default_lang: Literal["sq", "en"] = "sq"
    # One JSON object per line (chat_server/logs.py); `alo116 demo` uses text unless set.
    log_format: Literal["json", "text"] = "json"

    # Bounds; each has a clear error on the wire.
    max_frame_bytes: int = 16 * 1024
    max_body_chars: int = 2000
    outbound_queue_size: int = 512
    # A console that reconnects has this long to `resume` its chats before their live
    # messages flow without it (docs/protocol.md, "Following chats").
    resume_grace_s: float = 2.0
    child_messages_per_second: float = 3.0
    child_message_burst: int = 10
    staff_messages_per_second: float = 10.0
    staff_message_burst: int = 30

    # Timers, all enforced by periodic sweeps.
    sweep_interval_s: float = 5.0
    heartbeat_interval_s: float = 10.0
    staff_grace_s: float = 90.0
    child_queue_grace_s: float = 900.0
    inactivity_close_s: float = 3600.0
    # Queue positions are recomputed and pushed at most this often (the first change
    # after a quiet spell goes out at once): joins at a national peak cost O(N), not O(N²).
    queue_refresh_interval_s: float = 0.5

    # Wait estimate before there is history to learn from.
    default_handle_time_s: int = 900
    # A transfer offered to a colleague lapses if not answered in this time.
    transfer_offer_timeout_s: float = 120.0

    # Staff sessions (docs/security.md). An open console counts as use of its session.
    session_lifetime_s: int = 12 * 3600
    session_idle_s: int = 2 * 3600
    # How often an open staff socket re-checks its session (it also closes at once when
    # the session is revoked).
    session_check_interval_s: float = 30.0
    # Password right, second factor due: that half session lives this long.
    second_factor_timeout_s: int = 300
    # Two-step login (TOTP) for supervisors and admins. Unset: required, except in demo
    # mode; true or false: as said.
    two_factor_required: bool | None = None
    # Failed logins per username (known or not): free tries, then a delay doubling each
    # time up to the maximum, then a lock.
    login_delay_after: int = 3
    login_max_delay_s: int = 60
    login_lock_after: int = 10
    login_lock_s: int = 900
    # Failed logins per address, in memory only.
    login_address_failures: int = 30
    login_address_window_s: float = 600.0
    # New conversations per address, in memory only. Generous: many children share an
    # address behind a school's or a mobile operator's NAT.
    new_chats_per_address: int = 20
    new_chats_window_s: float = 600.0
    # JSON API writes per staff member.
    staff_writes_per_minute: float = 120.0
    staff_write_burst: int = 60

    # Retention (chat_server/retention.py): transcripts of chats not linked to a case,
    # and closed cases.
    transcript_retention_days: int = 30
    closed_case_retention_years: int = 5

    # When children can expect a live answer. Empty: always (the helpline is 24/7).
    # Otherwise daily ranges in the helpline's time zone, e.g. "08:00-13:00,14:00-22:00".
    opening_hours: str = ""
    timezone: str = "Europe/Tirane"
    # A wait estimate above this offers the child to leave a message instead.
    wait_threshold_s: int = 900
    # A left message waits this long for the child to come back and read the answer.
    left_message_close_s: float = 14 * 24 * 3600.0
    # Wrong return codes allowed per address per window (kept in memory only).
    return_code_attempts: int = 5
    return_code_window_s: float = 600.0

    # Supervision. Whether a counsellor sees that a supervisor is following their chat:
    # on by default, because monitoring is for supporting the counsellor, and an open
    # practice builds the trust it needs; the child is never told either way.
    tell_counsellor_about_monitoring: bool = True
    # Alert supervisors when a child waits this long in the queue, or for a reply.
    wait_alert_s: float = 300.0
    unanswered_alert_s: float = 180.0
    block_default_hours: int = 24
    block_max_hours: int = 24 * 30

    # Risk words matched in children's messages (JSON like db/data/risk_terms.v1.json).
    risk_terms_file: str | None = None

    # The child's page: an unremarkable title and a neutral site for quick exit.
    child_page_title: str = "Bisedë"
    quick_exit_url: str = "https://www.google.com/search?q=moti+sot"

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value

    @field_validator("opening_hours")
    @classmethod
    def _check_hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def two_factor_enforced(self) -> bool:
        if self.two_factor_required is not None:
            return self.two_factor_required
        return not self.demo

    def check_production_ready(self) -> None:
        if self.demo:
            return
        if self.secret_key == PLACEHOLDER_SECRET or len(self.secret_key) < 32:
            raise InsecureSettings(
                "ALO116_SECRET_KEY is the placeholder or shorter than 32 characters; set a "
                "long random value: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
