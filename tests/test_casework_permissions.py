"""Who may do what: a role matrix over every casework endpoint, denied access audited,
and the server-rendered pages behind a session and a CSRF token bound to it."""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from typing import Any

import httpx
from sqlalchemy import select
from sqlmodel import col

from chat_server.cases import today
from db.models import AuditEvent
from tests.casework_support import chat, csrf_of, database, http, on_duty, staff_http
from tests.conftest import LiveServer


async def test_the_role_matrix_over_every_endpoint(live: LiveServer) -> None:
    a = await on_duty(live, name="Ana")
    child, cid = await chat(live, a)
    await child.send(type="send", client_id="m1", body="Ndihmë")
    await child.expect("ack", client_id="m1")
    async with AsyncExitStack() as stack:
        api_a = await stack.enter_async_context(http(live, a.cookie))
        b_id, api_b, _ = await staff_http(live, "counsellor", stack, name="Besnik")
        _s, api_s, _ = await staff_http(live, "supervisor", stack)
        _d, api_d, _ = await staff_http(live, "admin", stack)
        anon = await stack.enter_async_context(http(live))
        by_role = {"A": api_a, "B": api_b, "supervisor": api_s, "admin": api_d, "anonymous": anon}

        org = (await api_d.post("/api/directory/organizations", json={"name": "Matrica"})).json()
        service = await api_d.post(
            f"/api/directory/organizations/{org['id']}/services", json={"name": "Ndihmë"}
        )
        service_id = service.json()["id"]
        record = (
            await api_a.put(f"/api/records/{cid}", json={"contact_type": "counselling"})
        ).json()
        case = (await api_a.post("/api/cases", json={"conversation_id": cid})).json()
        n = case["number"]
        referral = await api_a.post(
            f"/api/cases/{n}/referrals",
            json={"service_id": service_id, "reason": "r", "follow_up_on": today().isoformat()},
        )
        referral_id = referral.json()["id"]
        export = (await api_d.get("/api/directory/export")).json()

        ok, no, out = 200, 403, 401
        matrix: list[tuple[str, str, Any, dict[str, int]]] = [
            ("GET", "/api/taxonomy", None, {"A": ok, "B": ok, "supervisor": ok, "admin": ok}),
            ("GET", f"/api/records/{cid}", None, {"A": ok, "B": no, "supervisor": ok, "admin": ok}),
            ("PUT", f"/api/records/{cid}", {"summary": "s"}, {"A": ok, "B": no, "supervisor": ok}),
            ("POST", f"/api/records/{cid}/finalise", {}, {"B": no}),
            ("GET", f"/api/contacts/{record['id']}", None, {"A": ok, "B": no, "supervisor": ok}),
            (
                "POST",
                "/api/contacts",
                {"channel": "phone", "contact_type": "silent"},
                {"A": 201, "B": 201, "supervisor": 201, "admin": 201},
            ),
            ("GET", "/api/contacts/unfinished", None, {"A": ok, "B": ok, "supervisor": ok}),
            ("GET", "/api/cases", None, {"A": ok, "B": ok, "supervisor": ok, "admin": ok}),
            ("POST", "/api/cases", {}, {"A": 201, "B": 201, "supervisor": 201}),
            ("GET", f"/api/cases/{n}", None, {"A": ok, "B": no, "supervisor": ok, "admin": ok}),
            ("PATCH", f"/api/cases/{n}", {"summary": "p"}, {"A": ok, "B": no, "supervisor": ok}),
            (
                "POST",
                f"/api/cases/{n}/notes",
                {"body": "n"},
                {"A": 201, "B": no, "supervisor": 201},
            ),
            ("POST", f"/api/cases/{n}/contacts", {"record_id": record["id"]}, {"B": no}),
            (
                "GET",
                f"/api/cases/{n}/contacts/{record['id']}/transcript",
                None,
                {"A": ok, "B": no, "supervisor": ok},
            ),
            (
                "POST",
                f"/api/cases/{n}/referrals",
                {"service_id": service_id, "reason": "r"},
                {"A": 201, "B": no, "supervisor": 201},
            ),
            (
                "PATCH",
                f"/api/referrals/{referral_id}",
                {"outcome": "o"},
                {"A": ok, "B": no, "supervisor": ok},
            ),
            ("GET", "/api/followups", None, {"A": ok, "B": ok, "supervisor": ok}),
            (
                "GET",
                "/api/directory/services",
                None,
                {"A": ok, "B": ok, "supervisor": ok, "admin": ok},
            ),
            ("GET", f"/api/directory/organizations/{org['id']}", None, {"A": ok, "admin": ok}),
            (
                "POST",
                "/api/directory/organizations",
                {"name": "x"},
                {"A": no, "supervisor": no, "admin": 201},
            ),
            (
                "PATCH",
                f"/api/directory/organizations/{org['id']}",
                {"url": "u"},
                {"A": no, "supervisor": no, "admin": ok},
            ),
            (
                "POST",
                f"/api/directory/organizations/{org['id']}/services",
                {"name": "s"},
                {"A": no, "admin": 201},
            ),
            (
                "POST",
                f"/api/directory/organizations/{org['id']}/locations",
                {"name": "l"},
                {"A": no, "admin": 201},
            ),
            (
                "PATCH",
                f"/api/directory/services/{service_id}",
                {"url": "u"},
                {"A": no, "admin": ok},
            ),
            ("GET", "/api/directory/export", None, {"A": no, "supervisor": no, "admin": ok}),
            ("POST", "/api/directory/import", export, {"A": no, "supervisor": no, "admin": ok}),
            ("POST", "/api/directory/examples", {}, {"A": no, "supervisor": no}),
            (
                "GET",
                "/api/reports/summary?from=2025-01-01&to=2025-01-31",
                None,
                {"A": no, "B": no, "supervisor": ok, "admin": ok},
            ),
            (
                "GET",
                "/api/reports/summary.csv?from=2025-01-01&to=2025-01-31",
                None,
                {"A": no, "supervisor": ok},
            ),
            (
                "GET",
                "/api/reports/contacts.csv?from=2025-01-01&to=2025-01-31",
                None,
                {"A": no, "admin": ok},
            ),
        ]
        failures = []
        for method, path, body, expected in matrix:
            for role, status in {**expected, "anonymous": out}.items():
                answer = await by_role[role].request(method, path, json=body)
                if answer.status_code != status:
                    failures.append(
                        (method, path, role, status, answer.status_code, answer.text[:120])
                    )
        assert failures == []

        # Lists show only what each may see.
        assert [c["number"] for c in (await api_b.get("/api/cases")).json()["cases"]] == [
            c["number"] for c in (await api_b.get("/api/cases")).json()["cases"] if c["number"] != n
        ]
        assert n not in {c["number"] for c in (await api_b.get("/api/cases")).json()["cases"]}
        assert n in {c["number"] for c in (await api_s.get("/api/cases")).json()["cases"]}
        assert (await api_b.get("/api/followups")).json()["referrals"] == []
        assert len((await api_a.get("/api/followups")).json()["referrals"]) == 1

        # A hands the case over to B, who can then work on it.
        handed = await api_a.patch(f"/api/cases/{n}", json={"assigned_user_id": str(b_id.id)})
        assert handed.status_code == 200 and handed.json()["assigned_to"]["name"] == "Besnik"
        assert (await api_b.get(f"/api/cases/{n}")).status_code == 200
        assert (await api_a.get(f"/api/cases/{n}")).status_code == 200  # A opened it

    async with database(live) as db, db() as session:
        rows = (
            await session.execute(
                select(
                    col(AuditEvent.action), col(AuditEvent.target), col(AuditEvent.actor_user_id)
                )
            )
        ).all()
    denied = {
        (r.target or "").split(":")[0]
        for r in rows
        if r.action == "access.denied" and r.actor_user_id == b_id.id
    }
    assert {"case", "conversation", "record"} <= denied
    actions = {r.action for r in rows}
    assert {"case.view", "case.search", "transcript.view", "record.view", "referral.create",
            "referral.update", "directory.export", "directory.import", "report.view",
            "report.export"} <= actions  # fmt: skip


async def test_pages_need_a_session_and_forms_a_csrf_token_of_it(live: LiveServer) -> None:
    async with AsyncExitStack() as stack:
        _a, api_a, _ = await staff_http(live, "counsellor", stack, name="Ana")
        _b, api_b, _ = await staff_http(live, "counsellor", stack)
        anon = await stack.enter_async_context(http(live))
        number = (await api_a.post("/api/cases", json={"pseudonym": "Era"})).json()["number"]

        login = await anon.get("/console/cases")
        assert login.status_code == 303 and login.headers["location"].startswith("/console/login")
        assert (await api_b.get(f"/console/cases/{number}")).status_code == 403
        assert (await api_a.get("/console/directory/transfer")).status_code == 403
        assert (await api_a.get("/console/reports")).status_code == 403

        page = await api_a.get(f"/console/cases/{number}", params={"lang": "en"})
        assert page.status_code == 200 and number in page.text and "Add a note" in page.text
        assert "content-security-policy" in page.headers and 'style="' not in page.text
        token = csrf_of(page.text)
        sq = await api_a.get(f"/console/cases/{number}", params={"lang": "sq"})
        assert "Shto një shënim" in sq.text
        other_token = csrf_of((await api_b.get("/console/contacts/new")).text)

        async def post(client: httpx.AsyncClient, path: str, **fields: Any) -> httpx.Response:
            return await client.post(path, data=fields)

        done = await post(
            api_a, f"/console/cases/{number}/notes?lang=en", csrf=token, body="Shënim"
        )
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"/console/cases/{number}?lang=en&saved=1"
        assert (await post(api_a, f"/console/cases/{number}/notes", body="x")).status_code == 403
        stolen = await post(api_a, f"/console/cases/{number}/notes", csrf=other_token, body="x")
        assert stolen.status_code == 403
        cross = await api_a.post(
            f"/console/cases/{number}/notes",
            data={"csrf": token, "body": "x"},
            headers={"Origin": "https://evil.example"},
        )
        assert cross.status_code == 403
        empty = await post(api_a, f"/console/cases/{number}/notes?lang=en", csrf=token, body=" ")
        assert empty.status_code == 422 and "Note:" in empty.text and 'role="alert"' in empty.text
        notes = [
            e
            for e in (await api_a.get(f"/api/cases/{number}")).json()["timeline"]
            if e["kind"] == "note"
        ]
        assert [e["body"] for e in notes] == ["Shënim"]

        contact = await api_a.post(
            "/console/contacts",
            data={"csrf": token, "channel": "in_person", "contact_type": "information",
                  "categories": ["family.general", "peers.friends"], "actions": ["information"],
                  "contact_at": "2026-01-10T10:15", "municipality": "AL-02-01",
                  "risk_level": "low", "summary": "Erdhi me nënën."},
        )  # fmt: skip
        assert contact.status_code == 303, contact.text
        record_id = re.search(r"/console/contacts/([0-9a-f-]{36})", contact.headers["location"])
        assert record_id
        saved = (await api_a.get(f"/api/contacts/{record_id.group(1)}")).json()
        assert saved["categories"] == ["family.general", "peers.friends"]
        assert saved["contact_at"] == "2026-01-10T09:15:00Z"  # entered in Tirana time
        opened = await api_a.post(
            "/console/cases?lang=en",
            data={"csrf": token, "record_id": record_id.group(1), "pseudonym": "Iris"},
        )
        assert opened.status_code == 303
        case_page = await api_a.get(opened.headers["location"])
        assert "Iris" in case_page.text and "Linked contacts" in case_page.text
        for path in (
            "/console/cases",
            "/console/contacts/new",
            "/console/directory",
            "/console/cases/new",
        ):
            assert (await api_a.get(path)).status_code == 200, path
