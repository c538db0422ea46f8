"""The library: canned responses and information resources that counsellors read and
administrators keep (JSON API and CSRF-protected pages), and the colleagues a chat can be
transferred to. Through a real server, on both databases."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import col

from chat_server import library
from db.library import CannedResponse
from db.models import AuditEvent
from tests.casework_support import chat, csrf_of, database, http, on_duty, staff_http
from tests.conftest import ROOT, LiveServer

DEMO = json.loads((ROOT / "db" / "data" / "library_demo.v1.json").read_text(encoding="utf-8"))


async def test_counsellors_read_what_administrators_keep(live: LiveServer) -> None:
    async with AsyncExitStack() as stack:
        _admin, admin, _ = await staff_http(live, "admin", stack)
        _me, counsellor, _ = await staff_http(live, "counsellor", stack)

        loaded = await admin.post("/api/library/examples", json={})
        assert loaded.status_code == 200, loaded.text
        assert loaded.json() == {
            "canned_responses": len(DEMO["canned_responses"]),
            "info_resources": len(DEMO["info_resources"]),
        }
        again = await admin.post("/api/library/examples", json={})
        assert again.json() == {"canned_responses": 0, "info_resources": 0}

        shelf = (await counsellor.get("/api/library")).json()
        assert shelf["topics"] == list(library.TOPICS)
        assert len(shelf["canned"]) == len(DEMO["canned_responses"])
        assert {c["lang"] for c in shelf["canned"]} == {"sq", "en"}
        assert not any(c["reviewed"] for c in shelf["canned"]), "demo content is to review"
        topics = {r["topic"] for r in shelf["resources"]}
        assert {"tobacco", "drugs", "sexual_health", "growing_up"} <= topics
        english = (await counsellor.get("/api/library", params={"lang": "en"})).json()
        assert {c["lang"] for c in english["canned"] + english["resources"]} == {"en"}

        created = await admin.post(
            "/api/library/canned",
            json={"lang": "sq", "title": "Pushim", "body": "Merr frymë thellë.", "tags": ["qetë"]},
        )
        assert created.status_code == 201, created.text
        item = created.json()
        assert (item["reviewed"], item["active"], item["tags"]) == (True, True, ["qetë"])

        refused = await counsellor.post(
            "/api/library/canned", json={"lang": "sq", "title": "x", "body": "y"}
        )
        assert refused.status_code == 403
        refused = await counsellor.patch(f"/api/library/canned/{item['id']}", json={"title": "z"})
        assert refused.status_code == 403

        retired = await admin.patch(f"/api/library/canned/{item['id']}", json={"active": False})
        assert retired.status_code == 200 and retired.json()["title"] == "Pushim"
        shown = {c["id"] for c in (await counsellor.get("/api/library")).json()["canned"]}
        assert item["id"] not in shown
        asked_for_all = (await counsellor.get("/api/library", params={"all": "1"})).json()
        assert item["id"] not in {c["id"] for c in asked_for_all["canned"]}
        everything = (await admin.get("/api/library", params={"all": "1"})).json()
        assert item["id"] in {c["id"] for c in everything["canned"]}

        resource = await admin.post(
            "/api/library/resources",
            json={
                "lang": "en",
                "topic": "growing_up",
                "title": "Sleep",
                "body": "Teenagers need 8 to 10 hours of sleep.",
                "url": "https://alo116.example/sleep",
            },
        )
        assert resource.status_code == 201, resource.text
        assert resource.json()["url"] == "https://alo116.example/sleep"

        async with http(live) as anonymous:
            assert (await anonymous.get("/api/library")).status_code == 401

    async with database(live) as db, db() as session:
        actions = (
            await session.execute(
                select(col(AuditEvent.action), func.count()).group_by(col(AuditEvent.action))
            )
        ).all()
    assert dict(actions)["library.load_examples"] == 1  # the second load added nothing
    assert dict(actions)["library.canned_create"] == 1
    assert dict(actions)["library.canned_update"] == 1
    assert dict(actions)["library.resource_create"] == 1


async def test_bad_library_items_are_refused_and_nothing_is_saved(live: LiveServer) -> None:
    async with AsyncExitStack() as stack:
        _admin, admin, _ = await staff_http(live, "admin", stack)
        cases = [
            ("/api/library/canned", {"lang": "sq", "body": "pa titull"}, "title"),
            ("/api/library/canned", {"lang": "de", "title": "t", "body": "b"}, "lang"),
            ("/api/library/canned", {"lang": "sq", "title": "t", "body": "  \n "}, "body"),
            ("/api/library/canned", {"lang": "sq", "title": "t", "body": "x" * 2001}, "body"),
            ("/api/library/canned", {"lang": "sq", "title": "t", "body": "b", "seq": 3}, "seq"),
            (
                "/api/library/resources",
                {"lang": "sq", "topic": "weather", "title": "t", "body": "b"},
                "topic",
            ),
            (
                "/api/library/resources",
                {"lang": "sq", "topic": "drugs", "title": "t", "body": "b", "url": "http://x"},
                "url",
            ),
        ]
        for path, body, field in cases:
            answer = await admin.post(path, json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.json()["field"] == field

        missing = await admin.patch(
            "/api/library/canned/00000000-0000-0000-0000-000000000000", json={"title": "t"}
        )
        assert missing.status_code == 404
        not_json = await admin.post("/api/library/canned", content=b"title=t")
        assert not_json.status_code == 415
        elsewhere = await admin.post(
            "/api/library/canned",
            json={"lang": "sq", "title": "t", "body": "b"},
            headers={"Origin": "https://evil.example"},
        )
        assert elsewhere.status_code == 403

    async with database(live) as db, db() as session:
        count = (await session.execute(select(func.count()).select_from(CannedResponse))).one()
    assert count == (0,)


async def test_the_admin_pages_save_only_with_the_sessions_csrf_token(live: LiveServer) -> None:
    async with AsyncExitStack() as stack:
        _admin, admin, _ = await staff_http(live, "admin", stack)
        _me, counsellor, _ = await staff_http(live, "counsellor", stack)

        page = await admin.get("/console/library", params={"lang": "en"})
        assert page.status_code == 200 and "Response library" in page.text
        token = csrf_of(page.text)
        assert (await counsellor.get("/console/library")).status_code == 403

        form = {"lang": "sq", "title": "Mirëmbrëma", "body": "Mirëmbrëma! Si je?", "active": "on"}
        forged = await admin.post("/console/library/canned/new", data=form)
        assert forged.status_code == 403
        saved = await admin.post("/console/library/canned/new", data={**form, "csrf": token})
        assert saved.status_code == 303
        assert "saved=canned" in saved.headers["location"]

        invalid = await admin.post(
            "/console/library/resources/new",
            data={"csrf": token, "lang": "sq", "topic": "", "title": "t", "body": "b"},
        )
        assert invalid.status_code == 422 and 'aria-invalid="true"' in invalid.text

        loaded = await admin.post("/console/library/examples", data={"csrf": token})
        assert loaded.status_code == 303
        listing = await admin.get("/console/library", params={"lang": "sq"})
        assert "Mirëmbrëma" in listing.text and "Për t'u rishikuar" in listing.text

        item = next(
            c
            for c in (await admin.get("/api/library")).json()["canned"]
            if c["title"] == "Mirëmbrëma"
        )
        edit = await admin.get(f"/console/library/canned/{item['id']}")
        assert edit.status_code == 200 and "Mirëmbrëma! Si je?" in edit.text
        retire = {"csrf": token, "lang": "sq", "title": "Mirëmbrëma", "body": "Mirëmbrëma!"}
        assert (
            await admin.post(f"/console/library/canned/{item['id']}", data=retire)
        ).status_code == 303
        shown = (await counsellor.get("/api/library")).json()["canned"]
        assert item["id"] not in {c["id"] for c in shown}, "unticked: no longer in use"


async def test_colleagues_to_transfer_to_are_the_available_others(live: LiveServer) -> None:
    ana = await on_duty(live, name="Ana")
    besnik = await on_duty(live, name="Besnik")
    drita = await on_duty(live, name="Drita")
    await drita.send(type="status", value="break")
    await drita.expect("me", status="break")
    await chat(live, besnik)

    async with http(live, ana.cookie) as api:
        colleagues = (await api.get("/api/staff/available")).json()
    assert colleagues == [
        {"id": str(besnik.identity.id), "name": "Besnik", "load": 1, "capacity": 3}  # type: ignore[union-attr]
    ]
    async with http(live, besnik.cookie) as api:
        names = [c["name"] for c in (await api.get("/api/staff/available")).json()]
    assert names == ["Ana"]
    async with http(live) as anonymous:
        assert (await anonymous.get("/api/staff/available")).status_code == 401


def test_the_demo_content_fits_a_message_and_is_marked_to_review() -> None:
    assert "TO REVIEW" in DEMO["note"]
    for item in DEMO["canned_responses"] + DEMO["info_resources"]:
        assert item["lang"] in library.LANGS
        assert 0 < len(item["body"]) <= library.BODY_MAX
    for lang in library.LANGS:
        topics = {r["topic"] for r in DEMO["info_resources"] if r["lang"] == lang}
        assert topics == set(library.TOPICS), lang
    assert Path(ROOT / "db" / "data" / "library_demo.v1.json").is_file()
