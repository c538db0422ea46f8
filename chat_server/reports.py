"""Figures for a date range: contacts in the CHI categories and age bands, wait and
handling times, abandonment, the children's feedback, and when contacts arrive.

Days and hours are the helpline's (Europe/Tirane). Contacts are final contact records
counted by when the contact happened; chat times come from the conversations that
started in the range.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import taxonomy
from chat_server.cases import HELPLINE_TZ
from chat_server.directory_io import cell
from chat_server.fields import a_date, invalid
from chat_server.taxonomy import Taxonomy
from db.casework import CaseFile, ContactRecord
from db.models import Conversation

MAX_DAYS = 366
WEEKDAYS = {
    "sq": ("E hënë", "E martë", "E mërkurë", "E enjte", "E premte", "E shtunë", "E diel"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date  # inclusive

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        """The range in UTC: local midnight at the start to local midnight after the end."""
        tz = ZoneInfo(HELPLINE_TZ)
        low = datetime.combine(self.start, time(), tz).astimezone(UTC)
        high = datetime.combine(self.end + timedelta(days=1), time(), tz).astimezone(UTC)
        return low, high


def period(start: Any, end: Any) -> Period:
    first = a_date(start, "from", required=True)
    last = a_date(end, "to", required=True)
    assert first is not None and last is not None
    if last < first:
        raise invalid("to", f"to ({last}) is before from ({first})")
    if (last - first).days >= MAX_DAYS:
        raise invalid("to", f"a report covers at most {MAX_DAYS} days")
    return Period(first, last)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: a value that really occurred, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def summary(
    db: async_sessionmaker[AsyncSession], tax: Taxonomy, span: Period, lang: str = "en"
) -> dict[str, Any]:
    low, high = span.bounds
    tz = ZoneInfo(HELPLINE_TZ)
    async with db() as session:
        contacts = list(
            (
                await session.execute(
                    select(ContactRecord).where(
                        col(ContactRecord.status) == "final",
                        col(ContactRecord.contact_at) >= low,
                        col(ContactRecord.contact_at) < high,
                    )
                )
            ).scalars()
        )
        drafts = await _count_drafts(session, low, high)
        chats = (
            await session.execute(
                select(
                    col(Conversation.created_at),
                    col(Conversation.assigned_at),
                    col(Conversation.ended_at),
                    col(Conversation.status),
                    col(Conversation.feedback_rating),
                    col(Conversation.feedback_helped),
                ).where(col(Conversation.created_at) >= low, col(Conversation.created_at) < high)
            )
        ).all()

    counts: dict[str, Counter[str]] = {k: Counter() for k in _SECTIONS}
    heat = [[0] * 24 for _ in range(7)]
    counselling = set(c["code"] for c in taxonomy.code_list("contact_types") if c["counselling"])
    for r in contacts:
        counts["channel"][r.channel] += 1
        counts["contact_type"][r.contact_type or UNKNOWN] += 1
        for top in dict.fromkeys(tax.parent_of(code) for code in r.categories):
            counts["category"][top] += 1
        for code in dict.fromkeys(r.categories):
            if tax.parent_of(code) != code:
                counts["subcategory"][code] += 1
        counts["age_band"][r.age_band or UNKNOWN] += 1
        counts["gender"][r.gender or UNKNOWN] += 1
        counts["municipality"][r.municipality_code or UNKNOWN] += 1
        counts["county"][tax.county_of(r.municipality_code) or UNKNOWN] += 1
        for action in dict.fromkeys(r.actions):
            counts["action"][action] += 1
        counts["risk_level"][r.risk_level] += 1
        local = r.contact_at.astimezone(tz)
        heat[local.weekday()][local.hour] += 1

    answered = [c for c in chats if c.assigned_at is not None]
    abandoned = [c for c in chats if c.status == "ended" and c.assigned_at is None]
    ended = [c for c in chats if c.status == "ended"]
    waits = [(c.assigned_at - c.created_at).total_seconds() for c in answered]
    handling = [
        (c.ended_at - c.assigned_at).total_seconds() for c in answered if c.ended_at is not None
    ]
    ratings = [c.feedback_rating for c in chats if c.feedback_rating is not None]

    def rows(section: str, kind: str) -> list[dict[str, Any]]:
        items = [(i["code"], i[lang]) for i in taxonomy.code_list(kind)]
        if section in ("contact_type",) and counts[section][UNKNOWN]:
            items.append((UNKNOWN, UNKNOWN))
        return [{"code": c, "name": n, "count": counts[section][c]} for c, n in items]

    return {
        "from": span.start.isoformat(),
        "to": span.end.isoformat(),
        "timezone": HELPLINE_TZ,
        "taxonomy_version": tax.version,
        "contacts": {
            "total": len(contacts),
            "counselling": sum(1 for r in contacts if r.contact_type in counselling),
            "non_counselling": sum(1 for r in contacts if r.contact_type not in counselling),
            "drafts_not_counted": drafts,
        },
        "by_channel": rows("channel", "channels"),
        "by_contact_type": rows("contact_type", "contact_types"),
        "by_category": [
            {
                "code": top.code,
                "name": tax.category_name(top.code, lang),
                "count": counts["category"][top.code],
                "subcategories": [
                    {
                        "code": sub.code,
                        "name": tax.category_name(sub.code, lang),
                        "count": counts["subcategory"][sub.code],
                    }
                    for sub in tax.children(top.code)
                ],
            }
            for top in tax.top_categories()
        ],
        "by_age_band": rows("age_band", "age_bands"),
        "by_gender": rows("gender", "genders"),
        "by_county": [
            {"code": code, "name": tax.county_name(code, lang), "count": counts["county"][code]}
            for code in tax.counties
        ]
        + [{"code": UNKNOWN, "name": UNKNOWN, "count": counts["county"][UNKNOWN]}],
        "by_municipality": [
            {
                "code": code,
                "name": tax.municipality_name(code, lang),
                "county": m.county_code,
                "count": counts["municipality"][code],
            }
            for code, m in tax.municipalities.items()
        ]
        + [
            {
                "code": UNKNOWN,
                "name": UNKNOWN,
                "county": None,
                "count": counts["municipality"][UNKNOWN],
            }
        ],
        "by_action": rows("action", "actions"),
        "by_risk_level": rows("risk_level", "risk_levels"),
        "chats": {
            "total": len(chats),
            "answered": len(answered),
            "abandoned": len(abandoned),
            "abandonment_rate": round(len(abandoned) / len(ended), 4) if ended else None,
            "wait_seconds": _spread(waits),
            "handling_seconds": _spread(handling),
        },
        "feedback": {
            "count": len(ratings),
            "average": round(sum(ratings) / len(ratings), 2) if ratings else None,
            "ratings": {str(n): ratings.count(n) for n in range(1, 6)},
            "helped_yes": sum(1 for c in chats if c.feedback_helped is True),
            "helped_no": sum(1 for c in chats if c.feedback_helped is False),
            "response_rate": round(len(ratings) / len(answered), 4) if answered else None,
        },
        "heatmap": {"weekdays": list(WEEKDAYS[lang]), "hours": list(range(24)), "counts": heat},
    }


_SECTIONS = (
    "channel",
    "contact_type",
    "category",
    "subcategory",
    "age_band",
    "gender",
    "municipality",
    "county",
    "action",
    "risk_level",
)


def _spread(values: list[float]) -> dict[str, Any]:
    def rounded(v: float | None) -> int | None:
        return None if v is None else round(v)

    return {
        "count": len(values),
        "p50": rounded(percentile(values, 50)),
        "p90": rounded(percentile(values, 90)),
        "p95": rounded(percentile(values, 95)),
        "max": rounded(max(values)) if values else None,
    }


async def _count_drafts(session: AsyncSession, low: datetime, high: datetime) -> int:
    return int(
        (
            await session.execute(
                select(func.count())
                .select_from(ContactRecord)
                .where(
                    col(ContactRecord.status) == "draft",
                    col(ContactRecord.contact_at) >= low,
                    col(ContactRecord.contact_at) < high,
                )
            )
        ).scalar_one()
    )


# --- CSV ------------------------------------------------------------------------------------

SUMMARY_COLUMNS = ("section", "code", "parent_code", "name", "count")
CONTACT_COLUMNS = (
    "record_id",
    "date",
    "time",
    "weekday",
    "hour",
    "channel",
    "contact_type",
    "counselling",
    "categories",
    "subcategories",
    "age_band",
    "gender",
    "county",
    "municipality",
    "risk_level",
    "actions",
    "case_number",
)


def summary_csv(report: dict[str, Any]) -> str:
    """The figures as rows: section, code, parent code, name, count."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(SUMMARY_COLUMNS)

    def put(section: str, code: Any, name: Any, count: Any, parent: str = "") -> None:
        writer.writerow([cell(section), cell(code), cell(parent), cell(name), cell(count)])

    put("period", "from", report["from"], "")
    put("period", "to", report["to"], "")
    for key, value in report["contacts"].items():
        put("contacts", key, key, value)
    for section in ("channel", "contact_type"):
        for row in report[f"by_{section}"]:
            put(section, row["code"], row["name"], row["count"])
    for top in report["by_category"]:
        put("category", top["code"], top["name"], top["count"])
        for sub in top["subcategories"]:
            put("subcategory", sub["code"], sub["name"], sub["count"], top["code"])
    for section in ("age_band", "gender", "county"):
        for row in report[f"by_{section}"]:
            put(section, row["code"], row["name"], row["count"])
    for row in report["by_municipality"]:
        put("municipality", row["code"], row["name"], row["count"], row["county"] or "")
    for section in ("action", "risk_level"):
        for row in report[f"by_{section}"]:
            put(section, row["code"], row["name"], row["count"])
    chats = report["chats"]
    for key in ("total", "answered", "abandoned", "abandonment_rate"):
        put("chats", key, key, chats[key])
    for measure in ("wait_seconds", "handling_seconds"):
        for key, value in chats[measure].items():
            put(measure, key, key, value)
    feedback = report["feedback"]
    for key in ("count", "average", "helped_yes", "helped_no", "response_rate"):
        put("feedback", key, key, feedback[key])
    for rating, count in feedback["ratings"].items():
        put("feedback_rating", rating, rating, count)
    for day, hours in enumerate(report["heatmap"]["counts"], start=1):
        for hour, count in enumerate(hours):
            put(
                "weekday_hour",
                f"{day}-{hour:02d}",
                f"{report['heatmap']['weekdays'][day - 1]} {hour:02d}:00",
                count,
            )
    return out.getvalue()


async def contacts_csv(db: async_sessionmaker[AsyncSession], tax: Taxonomy, span: Period) -> str:
    """One row per final contact, in codes only: no summary text, no names."""
    low, high = span.bounds
    tz = ZoneInfo(HELPLINE_TZ)
    counselling = set(c["code"] for c in taxonomy.code_list("contact_types") if c["counselling"])
    async with db() as session:
        rows = await session.execute(
            select(ContactRecord, col(CaseFile.number))
            .outerjoin(CaseFile, col(CaseFile.id) == col(ContactRecord.case_id))
            .where(
                col(ContactRecord.status) == "final",
                col(ContactRecord.contact_at) >= low,
                col(ContactRecord.contact_at) < high,
            )
            .order_by(col(ContactRecord.contact_at), col(ContactRecord.id))
        )
        found = rows.all()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CONTACT_COLUMNS)
    for record, number in found:
        local = record.contact_at.astimezone(tz)
        tops = list(dict.fromkeys(tax.parent_of(c) for c in record.categories))
        subs = [c for c in dict.fromkeys(record.categories) if tax.parent_of(c) != c]
        writer.writerow(
            cell(v)
            for v in (
                record.id,
                local.date().isoformat(),
                local.strftime("%H:%M"),
                local.isoweekday(),
                local.hour,
                record.channel,
                record.contact_type,
                "yes" if record.contact_type in counselling else "no",
                tops,
                subs,
                record.age_band or UNKNOWN,
                record.gender or UNKNOWN,
                tax.county_of(record.municipality_code) or UNKNOWN,
                record.municipality_code or UNKNOWN,
                record.risk_level,
                list(record.actions),
                number or "",
            )
        )
    return out.getvalue()


# --- charts as inline SVG -------------------------------------------------------------------


def heatmap_svg(report: dict[str, Any], title: str) -> str:
    """Contacts by weekday and hour: darker is busier; each cell says its count."""
    counts: list[list[int]] = report["heatmap"]["counts"]
    days: list[str] = report["heatmap"]["weekdays"]
    top = max((max(row) for row in counts), default=0) or 1
    cell_w, cell_h, left, head = 34, 28, 96, 22
    width, height = left + 24 * cell_w + 2, head + 7 * cell_h + 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'class="chart heatmap" role="img" aria-labelledby="heatmap-title">',
        f'<title id="heatmap-title">{escape(title)}</title>',
    ]
    for hour in range(24):
        x = left + hour * cell_w + cell_w / 2
        parts.append(f'<text x="{x}" y="15" text-anchor="middle" class="axis">{hour:02d}</text>')
    for d, row in enumerate(counts):
        y = head + d * cell_h
        parts.append(
            f'<text x="{left - 8}" y="{y + cell_h / 2 + 4}" text-anchor="end" class="axis">'
            f"{escape(days[d])}</text>"
        )
        for hour, count in enumerate(row):
            share = count / top
            x = left + hour * cell_w
            parts.append(
                f"<g><title>{escape(days[d])} {hour:02d}:00: {count}</title>"
                f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'rx="3" fill="{_shade(share)}"/>'
            )
            if count:
                ink = "#ffffff" if share > 0.55 else "#1b2631"
                parts.append(
                    f'<text x="{x + cell_w / 2}" y="{y + cell_h / 2 + 4}" text-anchor="middle" '
                    f'fill="{ink}" class="value">{count}</text>'
                )
            parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def bars_svg(rows: list[tuple[str, int]], title: str) -> str:
    """Horizontal bars, longest first as given; labels on the left, counts on the right."""
    top = max((count for _label, count in rows), default=0) or 1
    bar_h, gap, left, right = 20, 6, 300, 50
    width = 760
    height = len(rows) * (bar_h + gap) + gap
    span = width - left - right
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'class="chart bars" role="img"><title>{escape(title)}</title>'
    ]
    for i, (label, count) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        w = max(2.0, span * count / top) if count else 0
        short = label if len(label) <= 44 else label[:42] + "…"
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" class="axis">'
            f"{escape(short)}</text>"
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="3" fill="#1d5b86"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 15}" class="value">{count}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _shade(share: float) -> str:
    """From the page's pale blue (nothing) to its primary blue (the busiest hour)."""
    low, high = (0xEE, 0xF3, 0xF8), (0x1D, 0x5B, 0x86)
    if share <= 0:
        return "#f7f9fb"
    mix = [round(a + (b - a) * (0.15 + 0.85 * share)) for a, b in zip(low, high, strict=True)]
    return "#" + "".join(f"{v:02x}" for v in mix)
