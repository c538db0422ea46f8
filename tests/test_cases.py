"""Cases: a chat handed over to a case, a second chat linked, notes, a referral tracked to
its outcome, closing and reopening, and case numbers that never collide."""

from __future__ import annotations

import asyncio
import re
from contextlib import AsyncExitStack
from typing import Any

import httpx

from chat_server.cases import today
from tests.casework_support import chat, http, on_duty, staff_http
from tests.conftest import LiveServer


async def make_services(admin: httpx.AsyncClient) -> dict[str, str]:
    """One organization with an active and an inactive service."""
    org = await admin.post(
        "/api/directory/organizations",
        json={"name": "NjMF Tiranë (test)", "example": True, "verification": "to verify"},
    )
    assert org.status_code == 201, org.text
    org_id = org.json()["id"]
    ids = {}
    for status in ("active", "inactive"):
        service = await admin.post(
            f"/api/directory/organizations/{org_id}/services",
            json={
                "name": f"Case management ({status})",
                "status": status,
                "categories": ["child_protection"],
            },
        )
        assert service.status_code == 201, service.text
        ids[status] = service.json()["id"]
    return ids


async def test_a_chat_goes_all_the_way_to_a_tracked_referral(live: LiveServer) -> None:
    counsellor = await on_duty(live, name="Ana")
    child, first = await chat(live, counsellor, {"age_band": "13-15", "gender": "girl"})
    await child.send(type="send", client_id="c1", body="Më ngacmojnë në shkollë")
    await child.expect("ack", client_id="c1")
    async with AsyncExitStack() as stack:
        api = await stack.enter_async_context(http(live, counsellor.cookie))
        _admin, admin, _ = await staff_http(live, "admin", stack)
        _sup, supervisor, _ = await staff_http(live, "supervisor", stack)
        services = await make_services(admin)

        await api.put(
            f"/api/records/{first}",
            json={"contact_type": "counselling", "categories": ["violence.bullying"],
                  "municipality": "AL-11-04", "summary": "Bulizëm në shkollë."},
        )  # fmt: skip
        opened = await api.post(
            "/api/cases", json={"conversation_id": first, "pseudonym": "Lulja", "follow_up_on": ""}
        )
        assert opened.status_code == 201, opened.text
        case = opened.json()
        number = case["number"]
        assert re.fullmatch(rf"{today().year}-\d{{6}}", number)
        assert (case["status"], case["pseudonym"], case["age_band"], case["gender"]) == (
            "open", "Lulja", "13-15", "girl",
        )  # fmt: skip
        assert (case["municipality"], case["summary"]) == ("AL-11-04", "Bulizëm në shkollë.")
        assert case["assigned_to"]["name"] == "Ana"
        assert [c["conversation_id"] for c in case["contacts"]] == [first]

        # The same child comes back in a second chat, linked to the same case.
        _child2, second = await chat(live, counsellor)
        await api.put(f"/api/records/{second}", json={"contact_type": "information"})
        linked = await api.post(f"/api/cases/{number}/contacts", json={"conversation_id": second})
        assert linked.status_code == 201 and linked.json()["case_id"] == case["id"]
        twice = await api.post(
            f"/api/cases/{case['id']}/contacts", json={"conversation_id": second}
        )
        assert (twice.status_code, twice.json()["field"]) == (409, "record_id")

        record_id = case["contacts"][0]["id"]
        transcript = (await api.get(f"/api/cases/{number}/contacts/{record_id}/transcript")).json()
        assert [m["body"] for m in transcript["messages"]] == ["Më ngacmojnë në shkollë"]

        note = await api.post(f"/api/cases/{number}/notes", json={"body": "Foli me mësuesen."})
        assert note.status_code == 201 and note.json()["kind"] == "note"

        # The referral: refused to an inactive service, then sent and followed to its end.
        inactive = await api.post(
            f"/api/cases/{number}/referrals",
            json={"service_id": services["inactive"], "reason": "x"},
        )
        assert (inactive.status_code, inactive.json()["field"]) == (422, "service_id")
        sent = await api.post(
            f"/api/cases/{number}/referrals",
            json={"service_id": services["active"], "reason": "Vlerësim rreziku",
                  "contact_person": "Znj. Hoxha", "follow_up_on": today().isoformat()},
        )  # fmt: skip
        assert sent.status_code == 201, sent.text
        referral = sent.json()
        assert (referral["status"], referral["referred_on"]) == ("sent", today().isoformat())
        due = (await api.get("/api/followups")).json()
        assert [r["id"] for r in due["referrals"]] == [referral["id"]]
        assert due["referrals"][0]["case_number"] == number

        for status in ("acknowledged", "in_progress"):
            step = await api.patch(f"/api/referrals/{referral['id']}", json={"status": status})
            assert step.status_code == 200 and step.json()["status"] == status
        back = await api.patch(f"/api/referrals/{referral['id']}", json={"status": "sent"})
        assert (back.status_code, back.json()["field"]) == (409, "status")
        done = await api.patch(
            f"/api/referrals/{referral['id']}",
            json={"status": "completed", "outcome": "Plan mbrojtjeje i hartuar."},
        )
        assert done.json()["status"] == "completed"
        after = await api.patch(f"/api/referrals/{referral['id']}", json={"status": "declined"})
        assert (after.status_code, after.json()["field"]) == (409, "status")
        assert (await api.get("/api/followups")).json()["referrals"] == []

        full = (await api.get(f"/api/cases/{number}")).json()
        assert len(full["contacts"]) == 2
        assert [e["kind"] for e in full["timeline"]] == [
            "opened", "contact_linked", "contact_linked", "note", "referral",
            "referral_status", "referral_status", "referral_status",
        ]  # fmt: skip
        assert full["referrals"][0]["outcome"] == "Plan mbrojtjeje i hartuar."
        assert full["referrals"][0]["organization"] == "NjMF Tiranë (test)"

        # Only a supervisor closes; a closed case changes no more until reopened.
        refused = await api.patch(f"/api/cases/{number}", json={"status": "closed"})
        assert (refused.status_code, refused.json()["field"]) == (403, "status")
        assert (await api.patch(f"/api/cases/{number}", json={"status": "in_progress"})).is_success
        closed = await supervisor.patch(f"/api/cases/{number}", json={"status": "closed"})
        assert closed.status_code == 200 and closed.json()["closed_at"]
        for attempt in (
            api.patch(f"/api/cases/{number}", json={"summary": "more"}),
            api.post(f"/api/cases/{number}/notes", json={"body": "more"}),
            api.post(
                f"/api/cases/{number}/referrals",
                json={"service_id": services["active"], "reason": "again"},
            ),
        ):
            answer = await attempt
            assert (answer.status_code, answer.json()["field"]) == (409, "status"), answer.text
        reopen = await api.patch(f"/api/cases/{number}", json={"status": "open"})
        assert reopen.status_code == 403
        reopened = await supervisor.patch(f"/api/cases/{number}", json={"status": "open"})
        assert reopened.json()["status"] == "open" and reopened.json()["closed_at"] is None


async def test_bad_case_input_is_refused_naming_the_field(live: LiveServer) -> None:
    async with AsyncExitStack() as stack:
        _me, api, _ = await staff_http(live, "counsellor", stack)
        number = (await api.post("/api/cases", json={"pseudonym": "Arbi"})).json()["number"]
        bad: dict[str, dict[str, Any]] = {
            "pseudonym": {"pseudonym": "x" * 81},
            "municipality": {"municipality": "Tirana"},
            "follow_up_on": {"follow_up_on": "2026-02-30"},
            "risk_level": {"risk_level": "some"},
            "status": {"status": "archived"},
            "assigned_user_id": {"assigned_user_id": "00000000-0000-0000-0000-000000000000"},
            "summary": {"summary": "x" * 4001},
            "colour": {"colour": "red"},
        }
        for field, body in bad.items():
            answer = await api.patch(f"/api/cases/{number}", json=body)
            assert (answer.status_code, answer.json()["field"]) == (422, field), answer.text
            created = await api.post("/api/cases", json=body)
            assert created.status_code == 422, (field, created.text)
        note = await api.post(f"/api/cases/{number}/notes", json={"body": "  "})
        assert (note.status_code, note.json()["field"]) == (422, "body")
        referral_errors = {
            "service_id": {"service_id": "not-an-id", "reason": "r"},
            "reason": {"service_id": "00000000-0000-0000-0000-000000000000", "reason": ""},
            "referred_on": {"service_id": "00000000-0000-0000-0000-000000000000", "reason": "r",
                            "referred_on": "yesterday"},
        }  # fmt: skip
        for field, body in referral_errors.items():
            answer = await api.post(f"/api/cases/{number}/referrals", json=body)
            assert (answer.status_code, answer.json()["field"]) == (422, field), answer.text
        unknown = await api.post(
            f"/api/cases/{number}/referrals",
            json={"service_id": "00000000-0000-0000-0000-000000000000", "reason": "r"},
        )
        assert (unknown.status_code, unknown.json()["field"]) == (422, "service_id")
        assert (await api.get("/api/cases/2000-000001")).status_code == 404
        case = (await api.get(f"/api/cases/{number}")).json()
        assert case["pseudonym"] == "Arbi" and [e["kind"] for e in case["timeline"]] == ["opened"]


async def test_case_numbers_are_unique_when_opened_at_once(live: LiveServer) -> None:
    async with AsyncExitStack() as stack:
        clients = [(await staff_http(live, "counsellor", stack))[1] for _ in range(3)]
        answers = await asyncio.gather(
            *(clients[i % 3].post("/api/cases", json={"pseudonym": f"P{i}"}) for i in range(12))
        )
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
    numbers = sorted(a.json()["number"] for a in answers)
    serials = [int(n.split("-")[1]) for n in numbers]
    assert len(set(numbers)) == 12
    assert serials == list(range(serials[0], serials[0] + 12))  # and without gaps


async def test_cases_are_found_by_number_pseudonym_and_municipality(live: LiveServer) -> None:
    async with AsyncExitStack() as stack:
        _me, api, _ = await staff_http(live, "counsellor", stack)
        a = await api.post("/api/cases", json={"pseudonym": "Drita", "municipality": "AL-12-07"})
        b = await api.post("/api/cases", json={"pseudonym": "Sokol", "municipality": "AL-06-03"})
        a_number, b_number = a.json()["number"], b.json()["number"]

        async def numbers(**params: str) -> list[str]:
            answer = await api.get("/api/cases", params=params)
            assert answer.status_code == 200, answer.text
            return sorted(c["number"] for c in answer.json()["cases"])

        assert await numbers(q="drita") == [a_number]
        assert await numbers(q=b_number) == [b_number]
        assert await numbers(municipality="AL-06-03") == [b_number]
        assert await numbers(status="open") == sorted([a_number, b_number])
        assert await numbers(status="closed") == []
        bad = await api.get("/api/cases", params={"municipality": "nowhere"})
        assert (bad.status_code, bad.json()["field"]) == (422, "municipality")
