"""Checking one field of a request: each failure names the field and quotes the bad value.

A failure is a Refused("bad_request", ..., field=name); the edges answer it with 422.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from chat_server.errors import Refused


def invalid(field: str, message: str) -> Refused:
    return Refused("bad_request", message, field=field)


def text(
    value: Any, field: str, *, max_length: int, required: bool = False, strip: bool = True
) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be text, not {type(value).__name__}")
    if strip:
        value = value.strip()
    if "\x00" in value:
        raise invalid(field, f"{field} contains a NUL character")
    if required and not value:
        raise invalid(field, f"{field} is required")
    if len(value) > max_length:
        raise invalid(
            field, f"{field} is limited to {max_length} characters; this has {len(value)}"
        )
    return str(value)


def a_date(value: Any, field: str, *, required: bool = False) -> date | None:
    if value in (None, ""):
        if required:
            raise invalid(field, f"{field} is required (YYYY-MM-DD)")
        return None
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be a date as YYYY-MM-DD, not {value!r}")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise invalid(field, f"{field} must be a date as YYYY-MM-DD, not {value!r}") from None


def a_datetime(value: Any, field: str) -> datetime | None:
    """An ISO 8601 time with a zone (or a bare date, meaning its start in UTC)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be an ISO 8601 time, not {value!r}")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise invalid(field, f"{field} must be an ISO 8601 time, not {value!r}") from None
    if parsed.tzinfo is None:
        raise invalid(field, f"{field} needs a time zone, such as 2026-03-01T10:00:00+01:00")
    return parsed


def an_id(value: Any, field: str, *, required: bool = True) -> uuid.UUID | None:
    if value in (None, ""):
        if required:
            raise invalid(field, f"{field} is required")
        return None
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise invalid(field, f"{field} must be an id, not {value!r}") from None


def an_int(value: Any, field: str, *, low: int, high: int) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise invalid(field, f"{field} must be a whole number from {low} to {high}, not {value!r}")
    return value


def a_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "1", "yes", "on"):
        return True
    if value in (None, "", "false", "0", "no", "off"):
        return False
    raise invalid(field, f"{field} must be true or false, not {value!r}")


def text_list(value: Any, field: str, *, max_items: int, max_length: int) -> list[str]:
    """A list of short strings; a string is split on ';' (how CSV cells carry lists)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.split(";")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(field, f"{field} must be a list of text, not {value!r}")
    items: list[str] = []
    for item in value:
        item = item.strip()
        if not item or item in items:
            continue
        if len(item) > max_length:
            raise invalid(field, f"{field} holds an item longer than {max_length}: {item!r}")
        items.append(item)
    if len(items) > max_items:
        raise invalid(field, f"{field} is limited to {max_items} items; this has {len(items)}")
    return items


def forbidden(target: str, message: str) -> Refused:
    """A refusal the edge writes to the audit log as a denied access to `target`."""
    return Refused("forbidden", message, audit_target=target)


def iso(value: datetime | None) -> str | None:
    """A stored time as the API writes it: ISO 8601 in UTC with a Z."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None
