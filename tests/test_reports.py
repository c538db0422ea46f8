"""Report figures equal what the test counts itself from the contacts and chats it seeded,
with days and hours on the helpline's clock; the CSV exports have the promised columns."""

from __future__ import annotations

import csv
import io
import math
import random
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from chat_server import taxonomy
from chat_server.reports import CONTACT_COLUMNS, SUMMARY_COLUMNS
from db.casework import ContactRecord
from db.models import Conversation
from tests.casework_support import database, quick_staff, staff_http
from tests.conftest import LiveServer

TIRANE = ZoneInfo("Europe/Tirane")
# March 2025: Albania moves its clocks forward on the 30th; the range ends at local midnight.
START = datetime(2025, 3, 1, tzinfo=TIRANE)
END = datetime(2025, 4, 1, tzinfo=TIRANE)
CODES = ["violence.bullying", "violence.physical", "mental_health.self_harm", "family",
         "family.caregiver", "education.school", "non_counselling.thanks"]  # fmt: skip
MUNICIPALITIES = ["AL-11-04", "AL-11-01", "AL-10-04", "AL-12-07", None]


def nearest_rank(values: list[float], p: float) -> float:
    """The smallest value with at least p% of the values at or below it."""
    return min(v for v in values if sum(x <= v for x in values) >= p / 100 * len(values))


async def seed(
    live: LiveServer, rng: random.Random
) -> tuple[list[dict[str, Any]], list[Conversation]]:
    """Offline contacts through the API (and two just outside the range), and chats with
    their final records straight into the database."""
    contacts: list[dict[str, Any]] = []
    async with AsyncExitStack() as stack:
        _me, api, _ = await staff_http(live, "counsellor", stack)
        moments = [START + timedelta(minutes=rng.randrange(31 * 24 * 60)) for _ in range(24)]
        moments += [START + timedelta(minutes=1), END - timedelta(minutes=1)]  # the edges
        for i, at in enumerate(moments):
            body = {
                "channel": rng.choice(["phone", "post", "email", "in_person"]),
                "contact_type": rng.choice(taxonomy.codes("contact_types")),
                "categories": rng.sample(CODES, rng.randrange(0, 3)),
                "age_band": rng.choice([*taxonomy.codes("age_bands"), None]),
                "gender": rng.choice([*taxonomy.codes("genders"), None]),
                "municipality": MUNICIPALITIES[i % len(MUNICIPALITIES)],
                "actions": rng.sample(taxonomy.codes("actions"), rng.randrange(0, 3)),
                "risk_level": rng.choice(taxonomy.codes("risk_levels")),
                "contact_at": at.isoformat(),
            }
            answer = await api.post("/api/contacts", json=body)
            assert answer.status_code == 201, answer.text
            contacts.append({**body, "at": at})
        for outside in (START - timedelta(minutes=1), END):
            answer = await api.post(
                "/api/contacts",
                json={
                    "channel": "phone",
                    "contact_type": "silent",
                    "contact_at": outside.isoformat(),
                },
            )
            assert answer.status_code == 201

    counsellor, _cookie = await quick_staff(live, "counsellor")
    chats: list[Conversation] = []
    async with database(live) as db, db() as session, session.begin():
        for i in range(14):
            created = (START + timedelta(hours=rng.randrange(31 * 24))).astimezone(UTC)
            answered = i % 5 != 0 and i != 13
            ended = i != 13  # one child still waiting (and present): not in the abandonment rate
            assigned_at = created + timedelta(seconds=rng.randrange(5, 900)) if answered else None
            ended_at = (
                (assigned_at or created) + timedelta(seconds=rng.randrange(60, 3600))
                if ended
                else None
            )
            conversation = Conversation(
                status="ended" if ended else ("active" if answered else "queued"),
                child_token_hash=f"report-{i}-{rng.random()}",
                created_at=created,
                queued_at=created,
                assigned_user_id=counsellor.id if answered else None,
                assigned_at=assigned_at,
                ended_at=ended_at,
                end_reason=("counsellor_ended" if answered else "abandoned") if ended else None,
                feedback_rating=rng.choice([None, 1, 3, 4, 5, 5]) if answered and ended else None,
                feedback_helped=rng.choice([None, True, False]) if answered and ended else None,
            )
            session.add(conversation)
            chats.append(conversation)
        await session.flush()
        for conversation in chats:
            if conversation.assigned_at is None:
                continue
            categories = rng.sample(CODES, 1)
            session.add(
                ContactRecord(
                    conversation_id=conversation.id,
                    channel="chat",
                    contact_type="counselling",
                    categories=categories,
                    age_band="13-15",
                    gender="girl",
                    status="final",
                    counsellor_user_id=counsellor.id,
                    contact_at=conversation.created_at,
                )
            )
            contacts.append(
                {"channel": "chat", "contact_type": "counselling", "categories": categories,
                 "age_band": "13-15", "gender": "girl", "municipality": None, "actions": [],
                 "risk_level": "none", "at": conversation.created_at}
            )  # fmt: skip
        # A draft in the range is not counted as a contact.
        session.add(ContactRecord(channel="phone", contact_at=START + timedelta(days=3)))
    return contacts, chats


async def test_report_figures_equal_the_counts_of_the_seeded_data(live: LiveServer) -> None:
    contacts, chats = await seed(live, random.Random(116111))
    async with AsyncExitStack() as stack:
        _s, supervisor, _ = await staff_http(live, "supervisor", stack)
        _c, counsellor, _ = await staff_http(live, "counsellor", stack)
        period = {"from": "2025-03-01", "to": "2025-03-31"}
        answer = await supervisor.get("/api/reports/summary", params={**period, "lang": "en"})
        assert answer.status_code == 200, answer.text
        report = answer.json()
        summary_csv = await supervisor.get("/api/reports/summary.csv", params=period)
        contacts_csv = await supervisor.get("/api/reports/contacts.csv", params=period)
        assert (await counsellor.get("/api/reports/summary", params=period)).status_code == 403
        page = await supervisor.get("/console/reports", params={**period, "lang": "sq"})

    def table(rows: list[dict[str, Any]]) -> dict[str, int]:
        return {row["code"]: row["count"] for row in rows if row["count"]}

    counselling = {c["code"] for c in taxonomy.code_list("contact_types") if c["counselling"]}
    assert report["contacts"]["total"] == len(contacts)
    assert report["contacts"]["counselling"] == sum(
        c["contact_type"] in counselling for c in contacts
    )
    assert report["contacts"]["drafts_not_counted"] == 1
    assert table(report["by_channel"]) == Counter(c["channel"] for c in contacts)
    assert table(report["by_contact_type"]) == Counter(c["contact_type"] for c in contacts)
    assert table(report["by_age_band"]) == Counter(c["age_band"] or "unknown" for c in contacts)
    assert table(report["by_gender"]) == Counter(c["gender"] or "unknown" for c in contacts)
    assert table(report["by_municipality"]) == Counter(
        c["municipality"] or "unknown" for c in contacts
    )
    assert table(report["by_county"]) == Counter(
        c["municipality"][:5] if c["municipality"] else "unknown" for c in contacts
    )
    assert table(report["by_action"]) == Counter(a for c in contacts for a in c["actions"])
    assert table(report["by_risk_level"]) == Counter(c["risk_level"] for c in contacts)
    parents = Counter(p for c in contacts for p in {code.split(".")[0] for code in c["categories"]})
    assert {r["code"]: r["count"] for r in report["by_category"] if r["count"]} == parents
    subs = Counter(code for c in contacts for code in c["categories"] if "." in code)
    assert {
        s["code"]: s["count"]
        for r in report["by_category"]
        for s in r["subcategories"]
        if s["count"]
    } == subs
    assert [r["code"] for r in report["by_category"]][:2] == ["missing", "violence"]

    heat = [[0] * 24 for _ in range(7)]
    for c in contacts:
        local = c["at"].astimezone(TIRANE)
        heat[local.weekday()][local.hour] += 1
    assert report["heatmap"]["counts"] == heat
    assert report["heatmap"]["weekdays"][0] == "Monday"

    answered = [c for c in chats if c.assigned_at is not None]
    ended = [c for c in chats if c.ended_at is not None]
    waits = [(c.assigned_at - c.created_at).total_seconds() for c in answered]  # type: ignore[operator]
    handling = [(c.ended_at - c.assigned_at).total_seconds() for c in answered if c.ended_at]  # type: ignore[operator]
    figures = report["chats"]
    assert (figures["total"], figures["answered"]) == (len(chats), len(answered))
    abandoned = [c for c in ended if c.assigned_at is None]
    assert figures["abandoned"] == len(abandoned)
    assert math.isclose(figures["abandonment_rate"], round(len(abandoned) / len(ended), 4))
    assert figures["wait_seconds"]["p50"] == round(nearest_rank(waits, 50))
    assert figures["wait_seconds"]["p90"] == round(nearest_rank(waits, 90))
    assert figures["wait_seconds"]["max"] == round(max(waits))
    assert figures["handling_seconds"]["p50"] == round(nearest_rank(handling, 50))
    assert figures["handling_seconds"]["count"] == len(handling)
    ratings = [c.feedback_rating for c in chats if c.feedback_rating is not None]
    feedback = report["feedback"]
    assert feedback["count"] == len(ratings)
    assert feedback["average"] == round(sum(ratings) / len(ratings), 2)
    assert feedback["ratings"] == {str(n): ratings.count(n) for n in range(1, 6)}
    assert feedback["helped_yes"] == sum(c.feedback_helped is True for c in chats)

    rows = list(csv.reader(io.StringIO(summary_csv.text)))
    assert tuple(rows[0]) == SUMMARY_COLUMNS == ("section", "code", "parent_code", "name", "count")
    sections = Counter(r[0] for r in rows[1:])
    assert (
        sections["age_band"] == 9 and sections["category"] == 11 and sections["subcategory"] == 70
    )
    assert sections["municipality"] == 62 and sections["weekday_hour"] == 7 * 24
    assert [
        "age_band",
        "13-15",
        "",
        "13\u201315 vjeç",
        str(table(report["by_age_band"]).get("13-15", 0)),
    ] in rows
    assert [
        "subcategory",
        "violence.bullying",
        "violence",
        "Bulizëm",
        str(subs["violence.bullying"]),
    ] in rows
    assert ["contacts", "total", "", "total", str(len(contacts))] in rows

    lines = list(csv.DictReader(io.StringIO(contacts_csv.text)))
    assert tuple(csv.reader(io.StringIO(contacts_csv.text)).__next__()) == CONTACT_COLUMNS
    assert len(lines) == len(contacts)
    assert Counter(line["channel"] for line in lines) == Counter(c["channel"] for c in contacts)
    assert all(line["date"].startswith("2025-03-") for line in lines)
    assert "summary" not in lines[0]  # no free text leaves in the export

    assert page.status_code == 200
    assert "<svg" in page.text and "Kontaktet sipas ditës së javës dhe orës" in page.text
    assert 'style="' not in page.text  # the CSP forbids inline styles


async def test_bad_report_ranges_are_refused_naming_the_field(live: LiveServer) -> None:
    async with AsyncExitStack() as stack:
        _s, supervisor, _ = await staff_http(live, "supervisor", stack)
        cases = {
            ("2025-03-32", "2025-04-01"): "from",
            ("2025-03-01", ""): "to",
            ("2025-03-10", "2025-03-01"): "to",
            ("2024-01-01", "2025-03-01"): "to",
        }
        for (start, end), field in cases.items():
            answer = await supervisor.get("/api/reports/summary", params={"from": start, "to": end})
            assert (answer.status_code, answer.json()["field"]) == (422, field), answer.text
        page = await supervisor.get("/console/reports", params={"from": "soon", "to": "later"})
        assert page.status_code == 422 and 'aria-invalid="true"' in page.text
        empty = (
            await supervisor.get(
                "/api/reports/summary", params={"from": "2030-01-01", "to": "2030-01-31"}
            )
        ).json()
        assert empty["contacts"]["total"] == 0 and empty["chats"]["abandonment_rate"] is None
        assert empty["chats"]["wait_seconds"]["p50"] is None
