"""The counsellors' library: canned responses and information resources.

Counsellors read it and insert an item into a message, to edit before sending; nothing
from here is ever sent on its own. Administrators keep it; every change is audited.
Demo content (db/data/library_demo.v1.json) loads as "to review" (no `updated_by`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import audit
from chat_server.accounts import StaffIdentity
from chat_server.errors import Refused
from chat_server.fields import a_bool, invalid, iso, text, text_list
from db.casework import data_file
from db.library import LIBRARY_DEMO_FILE, CannedResponse, InfoResource
from db.models import utcnow

LANGS = ("sq", "en")
TOPICS = (
    "tobacco",
    "alcohol",
    "drugs",
    "sexual_health",
    "growing_up",
    "online_safety",
    "bullying",
    "feelings",
    "rights",
)
TITLE_MAX = 120
RESOURCE_TITLE_MAX = 160
# Inserted into a message, so no longer than one message may be.
BODY_MAX = 2000
URL_MAX = 300
CANNED_FIELDS = ("lang", "title", "body", "tags", "active")
RESOURCE_FIELDS = ("lang", "topic", "title", "body", "url", "active")
# Sent back by clients that PATCH a whole item; never written.
READ_ONLY = ("id", "reviewed", "updated_at")

Item = CannedResponse | InfoResource


def canned_json(item: CannedResponse) -> dict[str, Any]:
    return {
        "id": str(item.id),
        "lang": item.lang,
        "title": item.title,
        "body": item.body,
        "tags": list(item.tags),
        "active": item.active,
        "reviewed": item.updated_by is not None,
        "updated_at": iso(item.updated_at),
    }


def resource_json(item: InfoResource) -> dict[str, Any]:
    return {
        "id": str(item.id),
        "lang": item.lang,
        "topic": item.topic,
        "title": item.title,
        "body": item.body,
        "url": item.url,
        "active": item.active,
        "reviewed": item.updated_by is not None,
        "updated_at": iso(item.updated_at),
    }


# --- reading -------------------------------------------------------------------------------


async def listing(
    db: async_sessionmaker[AsyncSession], *, lang: str | None = None, everything: bool = False
) -> tuple[list[CannedResponse], list[InfoResource]]:
    """Active items (all of them with `everything`), in one language or both."""
    canned = select(CannedResponse).order_by(col(CannedResponse.lang), col(CannedResponse.title))
    resources = select(InfoResource).order_by(col(InfoResource.lang), col(InfoResource.title))
    if not everything:
        canned = canned.where(col(CannedResponse.active).is_(True))
        resources = resources.where(col(InfoResource.active).is_(True))
    if lang is not None:
        canned = canned.where(col(CannedResponse.lang) == lang)
        resources = resources.where(col(InfoResource.lang) == lang)
    async with db() as session:
        found_canned = list((await session.execute(canned)).scalars())
        found_resources = list((await session.execute(resources)).scalars())
    topic_order = {topic: i for i, topic in enumerate(TOPICS)}
    found_resources.sort(key=lambda r: (topic_order.get(r.topic, len(TOPICS)), r.lang, r.title))
    return found_canned, found_resources


async def canned_response(
    db: async_sessionmaker[AsyncSession], item_id: uuid.UUID
) -> CannedResponse:
    async with db() as session:
        item = await session.get(CannedResponse, item_id)
    if item is None:
        raise Refused("not_found", f"no canned response {str(item_id)!r}")
    return item


async def resource(db: async_sessionmaker[AsyncSession], item_id: uuid.UUID) -> InfoResource:
    async with db() as session:
        item = await session.get(InfoResource, item_id)
    if item is None:
        raise Refused("not_found", f"no information resource {str(item_id)!r}")
    return item


# --- keeping it ----------------------------------------------------------------------------


def check_canned(data: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """The given fields as column values; unknown fields and bad values are refused."""
    _only(data, CANNED_FIELDS)
    values: dict[str, Any] = {}
    if "lang" in data or not partial:
        values["lang"] = _lang(data.get("lang"))
    if "title" in data or not partial:
        values["title"] = text(data.get("title"), "title", max_length=TITLE_MAX, required=True)
    if "body" in data or not partial:
        values["body"] = _body(data.get("body"))
    if "tags" in data:
        values["tags"] = text_list(data["tags"], "tags", max_items=12, max_length=40)
    if "active" in data:
        values["active"] = a_bool(data["active"], "active")
    return values


def check_resource(data: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    _only(data, RESOURCE_FIELDS)
    values: dict[str, Any] = {}
    if "lang" in data or not partial:
        values["lang"] = _lang(data.get("lang"))
    if "topic" in data or not partial:
        topic = data.get("topic")
        if topic not in TOPICS:
            raise invalid("topic", f"topic must be one of {', '.join(TOPICS)}; not {topic!r}")
        values["topic"] = topic
    if "title" in data or not partial:
        values["title"] = text(
            data.get("title"), "title", max_length=RESOURCE_TITLE_MAX, required=True
        )
    if "body" in data or not partial:
        values["body"] = _body(data.get("body"))
    if "url" in data:
        values["url"] = _url(data["url"])
    if "active" in data:
        values["active"] = a_bool(data["active"], "active")
    return values


async def save_canned(
    db: async_sessionmaker[AsyncSession],
    staff: StaffIdentity,
    data: Mapping[str, Any],
    item_id: uuid.UUID | None = None,
) -> CannedResponse:
    """Create a canned response, or change one; saving marks it reviewed by `staff`."""
    values = check_canned(data, partial=item_id is not None)
    async with db() as session, session.begin():
        if item_id is None:
            item = CannedResponse(**values)
            session.add(item)
        else:
            found = await session.get(CannedResponse, item_id, with_for_update=True)
            if found is None:
                raise Refused("not_found", f"no canned response {str(item_id)!r}")
            item = found
            for column, value in values.items():
                setattr(item, column, value)
        _stamp(session, item, staff, "canned", created=item_id is None, fields=sorted(values))
    return item


async def save_resource(
    db: async_sessionmaker[AsyncSession],
    staff: StaffIdentity,
    data: Mapping[str, Any],
    item_id: uuid.UUID | None = None,
) -> InfoResource:
    values = check_resource(data, partial=item_id is not None)
    async with db() as session, session.begin():
        if item_id is None:
            item = InfoResource(**values)
            session.add(item)
        else:
            found = await session.get(InfoResource, item_id, with_for_update=True)
            if found is None:
                raise Refused("not_found", f"no information resource {str(item_id)!r}")
            item = found
            for column, value in values.items():
                setattr(item, column, value)
        _stamp(session, item, staff, "resource", created=item_id is None, fields=sorted(values))
    return item


async def load_examples(
    db: async_sessionmaker[AsyncSession], staff: StaffIdentity | None
) -> dict[str, int]:
    """Add the demo items that are missing (by their fixed ids); never overwrite an item,
    so an administrator's corrections survive loading again."""
    demo = data_file(LIBRARY_DEMO_FILE)
    added = {"canned_responses": 0, "info_resources": 0}
    async with db() as session, session.begin():
        for raw in demo["canned_responses"]:
            item_id = uuid.UUID(raw["id"])
            if await session.get(CannedResponse, item_id) is None:
                fields = {k: v for k, v in raw.items() if k != "id"}
                session.add(CannedResponse(id=item_id, **check_canned(fields, partial=False)))
                added["canned_responses"] += 1
        for raw in demo["info_resources"]:
            item_id = uuid.UUID(raw["id"])
            if await session.get(InfoResource, item_id) is None:
                fields = {k: v for k, v in raw.items() if k != "id"}
                session.add(InfoResource(id=item_id, **check_resource(fields, partial=False)))
                added["info_resources"] += 1
        if any(added.values()):
            audit.record(
                session,
                action="library.load_examples",
                actor_user_id=staff.id if staff else None,
                canned_responses=added["canned_responses"],
                info_resources=added["info_resources"],
            )
    return added


# --- helpers -------------------------------------------------------------------------------


def _only(data: Mapping[str, Any], fields: tuple[str, ...]) -> None:
    for key in data:
        if key not in fields and key not in READ_ONLY:
            raise invalid(key, f"{key!r} is not a field of this library item")


def _lang(value: Any) -> str:
    if value not in LANGS:
        raise invalid("lang", f"lang must be sq or en, not {value!r}")
    return str(value)


def _body(value: Any) -> str:
    body = text(value, "body", max_length=BODY_MAX, required=True, strip=False).strip()
    if not body:
        raise invalid("body", "body is required")
    return body


def _url(value: Any) -> str:
    url = text(value, "url", max_length=URL_MAX)
    if url and (not url.startswith("https://") or any(ch.isspace() for ch in url)):
        raise invalid("url", f"url must be an https:// address without spaces, not {url!r}")
    return url


def _stamp(
    session: AsyncSession,
    item: Item,
    staff: StaffIdentity,
    kind: str,
    *,
    created: bool,
    fields: list[str],
) -> None:
    item.updated_by = staff.id
    item.updated_at = utcnow()
    audit.record(
        session,
        action=f"library.{kind}_{'create' if created else 'update'}",
        actor_user_id=staff.id,
        target=f"{kind}:{item.id}",
        fields=fields,
    )
