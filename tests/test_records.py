"""The contact record: kept while chatting, finalised at the end; offline contacts; the
taxonomy it is recorded in. Through a real server, on both databases."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from chat_server import records
from chat_server.errors import Refused
from db.casework import ContactRecord
from db.models import AuditEvent, Conversation
from tests.casework_support import chat, csrf_of, database, http, on_duty, staff_http
from tests.conftest import LiveServer


async def test_the_taxonomy_lists_every_code_in_the_language_asked(live: LiveServer) -> None:
    async with AsyncExitStack() as stack:
        _me, api, _cookie = await staff_http(live, "counsellor", stack)
        en = (await api.get("/api/taxonomy", params={"lang": "en"})).json()
        sq = (await api.get("/api/taxonomy", params={"lang": "sq"})).json()
        async with http(live) as anonymous:
            assert (await anonymous.get("/api/taxonomy")).status_code == 401

    assert len(en["categories"]) == 11
    assert sum(len(c["children"]) for c in en["categories"]) == 70
    violence = next(c for c in en["categories"] if c["code"] == "violence")
    assert {"code": "violence.bullying", "name": "Bullying"} in violence["children"]
    assert violence["children"][-1] == {"code": "violence.other", "name": "Unspecified/Other"}
    assert next(c for c in sq["categories"] if c["code"] == "violence")["name"] == "Dhunë"
    assert len(en["counties"]) == 12
    assert sum(len(c["municipalities"]) for c in en["counties"]) == 61
    tirana = next(c for c in en["counties"] if c["code"] == "AL-11")
    assert {"code": "AL-11-04", "name": "Tirana"} in tirana["municipalities"]
    assert [t["code"] for t in en["contact_types"]] == [
        "counselling", "information", "silent", "blank", "prank", "abusive", "wrong_number",
        "testing",
    ]  # fmt: skip
    assert [t["counselling"] for t in en["contact_types"][:3]] == [True, True, False]
    assert [a["code"] for a in en["age_bands"]][-2:] == ["over-25", "unknown"]
    assert [g["code"] for g in en["genders"]] == ["girl", "boy", "non-binary", "unknown"]
    assert [r["code"] for r in en["risk_levels"]] == ["none", "low", "high", "imminent"]
    assert len(en["actions"]) == 10
    assert [c["code"] for c in en["channels"]] == ["chat", "phone", "post", "email", "in_person"]
    assert en["version"] == sq["version"] and "chi-v1" in en["version"]


async def test_a_chat_record_is_prefilled_kept_as_a_draft_and_finalised(live: LiveServer) -> None:
    counsellor = await on_duty(live, name="Ana")
    _child, cid = await chat(live, counsellor, {"age_band": "13-15", "gender": "girl"})
    async with http(live, counsellor.cookie) as api:
        draft = (await api.get(f"/api/records/{cid}")).json()
        assert draft["status"] == "draft" and draft["conversation_id"] == cid
        assert (draft["channel"], draft["age_band"], draft["gender"]) == ("chat", "13-15", "girl")
        assert (draft["contact_type"], draft["categories"], draft["risk_level"]) == (
            None,
            [],
            "none",
        )
        again = (await api.get(f"/api/records/{cid}")).json()
        assert again["id"] == draft["id"]  # one record per chat

        saved = await api.put(
            f"/api/records/{cid}",
            json={
                "categories": ["violence.bullying", "education.school"],
                "municipality": "AL-11-04",
                "summary": "Ngacmohet në shkollë.",
                "actions": ["counselling"],
            },
        )
        assert saved.status_code == 200, saved.text
        body = saved.json()
        assert body["categories"] == ["violence.bullying", "education.school"]
        assert (body["municipality"], body["actions"]) == ("AL-11-04", ["counselling"])

        early = await api.post(f"/api/records/{cid}/finalise", json={})
        assert (early.status_code, early.json()["field"]) == (422, "contact_type")

        await api.put(f"/api/records/{cid}", json={"contact_type": "counselling"})
        final = await api.post(f"/api/records/{cid}/finalise", json={})
        assert final.status_code == 200
        assert final.json()["status"] == "final" and final.json()["finalised_at"]
        twice = await api.post(f"/api/records/{cid}/finalise", json={})
        assert twice.json()["finalised_at"] == final.json()["finalised_at"]
        late = await api.put(f"/api/records/{cid}", json={"summary": "changed"})
        assert late.status_code == 409 and late.json()["error"] == "conflict"

    async with database(live) as db, db() as session:
        views = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                col(AuditEvent.action) == "record.view",
                col(AuditEvent.target) == f"record:{draft['id']}",
            )
        )
        assert views >= 2


async def test_bad_record_input_is_refused_naming_the_field(live: LiveServer) -> None:
    counsellor = await on_duty(live)
    _child, cid = await chat(live, counsellor)
    async with http(live, counsellor.cookie) as api:
        cases = {
            "categories": {"categories": ["violence.bullying", "nonsense"]},
            "contact_type": {"contact_type": "chatty"},
            "municipality": {"municipality": "AL-99-99"},
            "age_band": {"age_band": "5-8"},
            "risk_level": {"risk_level": "extreme"},
            "actions": {"actions": ["magic"]},
            "summary": {"summary": "x" * 4001},
            "colour": {"colour": "blue"},
        }
        for field, body in cases.items():
            answer = await api.put(f"/api/records/{cid}", json=body)
            assert answer.status_code == 422, (field, answer.text)
            assert answer.json()["field"] == field, answer.json()
        assert (await api.put(f"/api/records/{cid}", json={"summary": "é" * 4000})).is_success
        record = (await api.get(f"/api/records/{cid}")).json()
        assert record["categories"] == [] and record["contact_type"] is None  # nothing half-saved

        as_form = await api.put(f"/api/records/{cid}", content=b"summary=x")
        assert as_form.status_code == 415
        cross_site = await api.put(
            f"/api/records/{cid}", json={}, headers={"Origin": "https://evil.example"}
        )
        assert cross_site.status_code == 403
        missing = await api.get(f"/api/records/{uuid.uuid4()}")
        assert missing.status_code == 404


async def test_raising_the_risk_in_the_record_raises_the_chat(live: LiveServer) -> None:
    counsellor = await on_duty(live)
    _child, cid = await chat(live, counsellor)
    async with http(live, counsellor.cookie) as api:
        answer = await api.put(f"/api/records/{cid}", json={"risk_level": "imminent"})
        assert answer.status_code == 200 and answer.json()["risk_level"] == "imminent"
    event = await counsellor.expect("risk", conversation_id=cid)
    assert event["level"] == "imminent"
    async with database(live) as db, db() as session:
        conversation = await session.get(Conversation, uuid.UUID(cid))
        assert conversation is not None and conversation.risk_level == "imminent"
        assert conversation.priority == 3


async def test_a_chat_cannot_close_without_a_contact_type(live: LiveServer) -> None:
    counsellor = await on_duty(live)
    _child, cid = await chat(live, counsellor)
    conversation_id = uuid.UUID(cid)
    async with database(live) as db:
        with pytest.raises(Refused) as no_record:
            await records.require_contact_type(db, conversation_id)
        assert no_record.value.code == "conflict"
        assert no_record.value.context["field"] == "contact_type"
        async with http(live, counsellor.cookie) as api:
            await api.put(f"/api/records/{cid}", json={"summary": "..."})
            with pytest.raises(Refused):
                await records.require_contact_type(db, conversation_id)
            await records.finalise_for_conversation(db, conversation_id, counsellor.identity)
            assert (await api.get(f"/api/records/{cid}")).json()["status"] == "draft"
            await api.put(f"/api/records/{cid}", json={"contact_type": "silent"})
        await records.require_contact_type(db, conversation_id)
        await records.finalise_for_conversation(db, conversation_id, counsellor.identity)
        await records.finalise_for_conversation(db, conversation_id, None)  # idempotent
        async with db() as session:
            record = (
                await session.execute(
                    select(ContactRecord).where(
                        col(ContactRecord.conversation_id) == conversation_id
                    )
                )
            ).scalar_one()
            assert record.status == "final" and record.contact_type == "silent"


async def test_offline_contacts_are_recorded_final_with_their_channel(live: LiveServer) -> None:
    async with AsyncExitStack() as stack:
        _me, api, _cookie = await staff_http(live, "counsellor", stack)
        letter = await api.post(
            "/api/contacts",
            json={
                "channel": "post",
                "contact_type": "counselling",
                "categories": ["family.caregiver"],
                "age_band": "10-12",
                "gender": "boy",
                "municipality": "AL-10-04",
                "summary": "Letër nga një djalë.",
                "contact_at": "2026-01-15T09:30:00+01:00",
            },
        )
        assert letter.status_code == 201, letter.text
        body = letter.json()
        assert (body["channel"], body["status"], body["conversation_id"]) == ("post", "final", None)
        assert body["contact_at"] == "2026-01-15T08:30:00Z"
        assert (await api.get(f"/api/contacts/{body['id']}")).json()["id"] == body["id"]

        refusals = {
            "channel": {"channel": "chat", "contact_type": "counselling"},
            "contact_type": {"channel": "phone"},
            "contact_at": {
                "channel": "phone",
                "contact_type": "silent",
                "contact_at": "2026-13-01",
            },
            "categories": {"channel": "email", "contact_type": "prank", "categories": ["x.y"]},
        }
        for field, payload in refusals.items():
            answer = await api.post("/api/contacts", json=payload)
            assert (answer.status_code, answer.json()["field"]) == (422, field), answer.text
        future = await api.post(
            "/api/contacts",
            json={"channel": "phone", "contact_type": "silent", "contact_at": "2999-01-01T00:00Z"},
        )
        assert (future.status_code, future.json()["field"]) == (422, "contact_at")


async def test_a_chats_draft_is_finished_and_handed_over_on_the_pages(live: LiveServer) -> None:
    counsellor = await on_duty(live)
    _child, cid = await chat(live, counsellor, {"age_band": "16-17"})
    async with http(live, counsellor.cookie) as api:
        handover = await api.get("/console/cases/new", params={"conversation": cid, "lang": "en"})
        assert handover.status_code == 200 and "Open the case" in handover.text
        record_id = (await api.get(f"/api/records/{cid}")).json()["id"]
        page = await api.get(f"/console/contacts/{record_id}", params={"lang": "en"})
        assert page.status_code == 200 and "Save and finalise" in page.text
        token = csrf_of(page.text)
        form = {"csrf": token, "contact_type": "", "categories": ["peers.partner"],
                "risk_level": "high", "summary": "..."}  # fmt: skip
        refused = await api.post(
            f"/console/contacts/{record_id}?lang=en", data={**form, "finalise": "1"}
        )
        assert refused.status_code == 422 and "Contact type:" in refused.text
        saved = (await api.get(f"/api/records/{cid}")).json()
        assert saved["categories"] == ["peers.partner"] and saved["status"] == "draft"
        done = await api.post(
            f"/console/contacts/{record_id}",
            data={**form, "contact_type": "counselling", "finalise": "1"},
        )
        assert done.status_code == 303
        assert (await api.get(f"/api/records/{cid}")).json()["status"] == "final"
    assert (await counsellor.expect("risk", conversation_id=cid))["level"] == "high"
