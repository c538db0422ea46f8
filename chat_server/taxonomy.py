"""The codes a contact is recorded in: CHI categories and Albania's areas (database rows
seeded from db/data), and the fixed code lists (db/data/codes.v1.json)."""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat_server.fields import invalid, text_list
from db.casework import AREAS_FILE, CODES_FILE, ChiCategory, County, Municipality, data_file

# Fixed code lists in the codes file, by the name the API uses for them.
KINDS = (
    "contact_types",
    "age_bands",
    "genders",
    "risk_levels",
    "actions",
    "channels",
    "case_statuses",
    "referral_statuses",
    "service_statuses",
    "location_types",
    "service_categories",
)
NATIONWIDE = "AL"


def code_list(kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = data_file(CODES_FILE)[kind]
    return items


def codes(kind: str) -> tuple[str, ...]:
    return tuple(item["code"] for item in code_list(kind))


def name_of(kind: str, code: str | None, lang: str) -> str:
    for item in code_list(kind):
        if item["code"] == code:
            return str(item[lang])
    return code or ""


def check_code(kind: str, value: Any, field: str, *, required: bool = False) -> str | None:
    if value in (None, ""):
        if required:
            raise invalid(field, f"{field} is required")
        return None
    if value not in codes(kind):
        raise invalid(field, f"{field} must be one of {', '.join(codes(kind))}; not {value!r}")
    return str(value)


def check_codes(kind: str, value: Any, field: str) -> list[str]:
    items = text_list(value, field, max_items=len(codes(kind)), max_length=64)
    for item in items:
        check_code(kind, item, field)
    return items


@dataclass(frozen=True, slots=True)
class Taxonomy:
    version: str
    categories: dict[str, ChiCategory]  # in list order: parents, each followed by children
    counties: dict[str, County]
    municipalities: dict[str, Municipality]

    def parent_of(self, code: str) -> str:
        row = self.categories.get(code)
        return row.parent_code or code if row else code

    def category_name(self, code: str, lang: str) -> str:
        row = self.categories.get(code)
        return (row.name_sq if lang == "sq" else row.name_en) if row else code

    def top_categories(self) -> list[ChiCategory]:
        return [c for c in self.categories.values() if c.parent_code is None]

    def children(self, code: str) -> list[ChiCategory]:
        return [c for c in self.categories.values() if c.parent_code == code]

    def municipality_name(self, code: str | None, lang: str) -> str:
        row = self.municipalities.get(code or "")
        return (row.name_sq if lang == "sq" else row.name_en) if row else ""

    def county_name(self, code: str | None, lang: str) -> str:
        row = self.counties.get(code or "")
        return (row.name_sq if lang == "sq" else row.name_en) if row else ""

    def county_of(self, municipality: str | None) -> str | None:
        row = self.municipalities.get(municipality or "")
        return row.county_code if row else None

    def check_categories(self, value: Any, field: str = "categories") -> list[str]:
        items = text_list(value, field, max_items=20, max_length=64)
        for item in items:
            row = self.categories.get(item)
            if row is None or not row.active:
                raise invalid(field, f"{field}: unknown category code {item!r}")
        return items

    def check_municipality(self, value: Any, field: str = "municipality") -> str | None:
        if value in (None, ""):
            return None
        if value not in self.municipalities:
            raise invalid(field, f"{field}: unknown municipality code {value!r}")
        return str(value)

    def check_areas(self, value: Any, field: str) -> list[str]:
        items = text_list(value, field, max_items=100, max_length=16)
        for item in items:
            if item != NATIONWIDE and item not in self.counties and item not in self.municipalities:
                raise invalid(
                    field, f"{field}: unknown area code {item!r} (AL, county or municipality)"
                )
        return items

    def as_json(self, lang: str) -> dict[str, Any]:
        """The body of GET /api/taxonomy: every code with its name in one language."""

        def named(kind: str, *extra: str) -> list[dict[str, Any]]:
            return [
                {"code": i["code"], "name": i[lang], **{k: i[k] for k in extra}}
                for i in code_list(kind)
            ]

        return {
            "version": self.version,
            "categories": [
                {
                    "code": c.code,
                    "name": self.category_name(c.code, lang),
                    "children": [
                        {"code": s.code, "name": self.category_name(s.code, lang)}
                        for s in self.children(c.code)
                        if s.active
                    ],
                }
                for c in self.top_categories()
                if c.active
            ],
            "contact_types": named("contact_types", "counselling"),
            "age_bands": named("age_bands"),
            "genders": named("genders"),
            "risk_levels": named("risk_levels"),
            "actions": named("actions"),
            "channels": named("channels"),
            "counties": [
                {
                    "code": county.code,
                    "name": self.county_name(county.code, lang),
                    "municipalities": [
                        {"code": m.code, "name": self.municipality_name(m.code, lang)}
                        for m in self.municipalities.values()
                        if m.county_code == county.code
                    ],
                }
                for county in self.counties.values()
            ],
            "case_statuses": named("case_statuses"),
            "referral_statuses": named("referral_statuses"),
            "service_statuses": named("service_statuses"),
            "service_categories": named("service_categories"),
        }


# Reference data changes with a migration, not while serving: one read per process and
# minute is plenty (the contact record is saved every few seconds while chatting).
_CACHE: weakref.WeakKeyDictionary[Any, tuple[float, Taxonomy]] = weakref.WeakKeyDictionary()
CACHE_SECONDS = 60.0


async def load(db: async_sessionmaker[AsyncSession]) -> Taxonomy:
    cached = _CACHE.get(db)
    if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    loaded = await _read(db)
    _CACHE[db] = (time.monotonic(), loaded)
    return loaded


async def _read(db: async_sessionmaker[AsyncSession]) -> Taxonomy:
    async with db() as session:
        categories = list(
            (
                await session.execute(
                    select(ChiCategory).order_by(ChiCategory.position, ChiCategory.code)  # type: ignore[arg-type]
                )
            ).scalars()
        )
        counties = list(
            (await session.execute(select(County).order_by(County.position))).scalars()  # type: ignore[arg-type]
        )
        municipalities = list(
            (
                await session.execute(
                    select(Municipality).order_by(Municipality.position, Municipality.code)  # type: ignore[arg-type]
                )
            ).scalars()
        )
    ordered: dict[str, ChiCategory] = {}
    for parent in (c for c in categories if c.parent_code is None):
        ordered[parent.code] = parent
        ordered.update((c.code, c) for c in categories if c.parent_code == parent.code)
    county_order = {c.code: i for i, c in enumerate(counties)}
    by_county = sorted(municipalities, key=lambda m: (county_order[m.county_code], m.position))
    versions = sorted({c.version for c in categories})
    return Taxonomy(
        version="+".join(
            [*versions, data_file(AREAS_FILE)["version"], data_file(CODES_FILE)["version"]]
        ),
        categories=ordered,
        counties={c.code: c for c in counties},
        municipalities={m.code: m for m in by_county},
    )
