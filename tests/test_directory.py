"""The referral directory: administrators keep it, everyone searches it, and it goes out
and comes back in as JSON and CSV unchanged. (On PostgreSQL the directory tables outlive
a test, so every assertion looks only at what that test made.)"""

from __future__ import annotations

import csv
import io
import secrets
from contextlib import AsyncExitStack

import httpx

from chat_server.directory_io import CSV_COLUMNS
from tests.casework_support import csrf_of, staff_http
from tests.conftest import LiveServer


async def _org(admin: httpx.AsyncClient, name: str) -> str:
    answer = await admin.post("/api/directory/organizations", json={"name": name})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def test_administrators_keep_the_directory_and_staff_search_it(live: LiveServer) -> None:
    tag = secrets.token_hex(3)
    async with AsyncExitStack() as stack:
        _a, admin, _ = await staff_http(live, "admin", stack)
        _c, counsellor, _ = await staff_http(live, "counsellor", stack)
        org_id = await _org(admin, f"Qendra {tag}")
        location = await admin.post(
            f"/api/directory/organizations/{org_id}/locations",
            json={"name": "Zyra", "address": "Rruga e Kavajës", "municipality": "AL-11-02",
                  "phones": ["+355 4 000 000"], "hours": "08-16"},
        )  # fmt: skip
        assert location.status_code == 201, location.text
        location_id = location.json()["id"]
        local = await admin.post(
            f"/api/directory/organizations/{org_id}/services",
            json={"name": f"Psikolog {tag}", "categories": ["mental_health"], "service_areas": [],
                  "minimum_age": 6, "maximum_age": 17, "location_ids": [location_id]},
        )  # fmt: skip
        assert local.status_code == 201, local.text
        county = await admin.post(
            f"/api/directory/organizations/{org_id}/services",
            json={"name": f"Strehë {tag}", "categories": ["shelter"], "service_areas": ["AL-12"]},
        )
        closed = await admin.post(
            f"/api/directory/organizations/{org_id}/services",
            json={
                "name": f"Mbyllur {tag}",
                "status": "temporarily_closed",
                "service_areas": ["AL"],
            },
        )

        async def names(**params: str) -> list[str]:
            answer = await counsellor.get("/api/directory/services", params={"q": tag, **params})
            assert answer.status_code == 200, answer.text
            return sorted(s["name"] for s in answer.json()["services"])

        assert await names() == sorted([f"Psikolog {tag}", f"Strehë {tag}"])
        assert await names(municipality="AL-11-02") == [f"Psikolog {tag}"]  # by its location
        assert await names(municipality="AL-12-05") == [f"Strehë {tag}"]  # by its county
        assert await names(category="shelter") == [f"Strehë {tag}"]
        assert await names(include_inactive="true", municipality="AL-01-01") == [f"Mbyllur {tag}"]
        found = await counsellor.get("/api/directory/services", params={"q": f"psikolog {tag}"})
        service = found.json()["services"][0]
        assert service["organization"]["name"] == f"Qendra {tag}"
        assert service["locations"][0]["county"] == "AL-11"
        assert service["locations"][0]["phones"] == ["+355 4 000 000"]

        changed = await admin.patch(
            f"/api/directory/services/{closed.json()['id']}", json={"status": "active"}
        )
        assert changed.status_code == 200 and changed.json()["status"] == "active"
        assert f"Mbyllur {tag}" in await names()

        bad = {
            "service_areas": {"service_areas": ["AL-99"]},
            "status": {"status": "open"},
            "maximum_age": {"minimum_age": 12, "maximum_age": 8},
            "categories": {"categories": ["circus"]},
            "name": {"name": ""},
            "colour": {"colour": "red"},
        }
        for field, body in bad.items():
            answer = await admin.patch(f"/api/directory/services/{county.json()['id']}", json=body)
            assert (answer.status_code, answer.json()["field"]) == (422, field), answer.text
        other_org = await _org(admin, f"Tjetër {tag}")
        foreign = await admin.post(
            f"/api/directory/organizations/{other_org}/services",
            json={"name": "x", "location_ids": [location_id]},
        )
        assert (foreign.status_code, foreign.json()["field"]) == (422, "location_ids")
        bad_place = await admin.patch(
            f"/api/directory/locations/{location_id}", json={"municipality": "AL-11-99"}
        )
        assert (bad_place.status_code, bad_place.json()["field"]) == (422, "municipality")
        assert (
            await counsellor.post("/api/directory/organizations", json={"name": "x"})
        ).status_code == 403
        bad_search = await counsellor.get("/api/directory/services", params={"category": "x"})
        assert (bad_search.status_code, bad_search.json()["field"]) == (422, "category")


async def test_the_example_directory_covers_every_county(live: LiveServer) -> None:
    async with AsyncExitStack() as stack:
        _a, admin, _ = await staff_http(live, "admin", stack)
        loaded = await admin.post("/api/directory/examples", json={})
        assert loaded.status_code == 200, loaded.text
        data = (await admin.get("/api/directory/export")).json()
        kukes = await admin.get(
            "/api/directory/services",
            params={"municipality": "AL-07-02", "category": "child_protection"},
        )
    examples = [o for o in data["organizations"] if o["name"].startswith("Njësia për Mbrojtjen")]
    assert len(examples) == 12 and all(o["example"] for o in examples)
    counties = {o["locations"][0]["municipality"][:5] for o in examples}
    assert len(counties) == 12
    names = [o["name"] for o in data["organizations"]]
    assert any("ASHDMF" in n for n in names) and "CRCA/ECPAT Shqipëri" in names
    first = kukes.json()["services"][0]
    assert first["organization"]["name"].endswith("Bashkia Kukës")  # the nearest first
    assert first["organization"]["verification"]


async def test_the_directory_round_trips_through_json_and_csv(live: LiveServer) -> None:
    async with AsyncExitStack() as stack:
        _a, admin, _ = await staff_http(live, "admin", stack)
        await admin.post("/api/directory/examples", json={})
        tag = secrets.token_hex(3)
        org_id = await _org(admin, f"=Formula {tag}")  # a cell a spreadsheet would run
        await admin.post(
            f"/api/directory/organizations/{org_id}/locations", json={"name": "Pa shërbim"}
        )

        exported = (await admin.get("/api/directory/export", params={"format": "json"})).json()
        counts = (await admin.post("/api/directory/import", json=exported)).json()
        assert counts["created"] == 0 and counts["organizations"] == len(exported["organizations"])
        assert (await admin.get("/api/directory/export")).json() == exported

        sheet = await admin.get("/api/directory/export", params={"format": "csv"})
        assert sheet.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(sheet.text)))
        assert tuple(rows[0]) == CSV_COLUMNS
        assert rows[0][:3] == [
            "organization_id",
            "organization_name",
            "organization_alternate_name",
        ]
        assert "service_status" in rows[0] and "location_municipality" in rows[0]
        assert any(r[1] == f"'=Formula {tag}" for r in rows[1:])  # defused, and restored below
        again = await admin.post(
            "/api/directory/import", json={"format": "csv", "data": sheet.text}
        )
        assert again.status_code == 200 and again.json()["created"] == 0, again.text
        assert (
            await admin.get("/api/directory/export", params={"format": "csv"})
        ).text == sheet.text
        assert (await admin.get("/api/directory/export")).json() == exported

        # A row added in a spreadsheet, without ids, becomes a new entry.
        header = ",".join(CSV_COLUMNS)
        new_row = {c: "" for c in CSV_COLUMNS} | {
            "organization_name": f"E re {tag}",
            "service_name": f"Shërbim {tag}",
            "service_categories": "health;mental_health",
            "service_areas": "AL-03",
            "location_name": "Qendra",
            "location_municipality": "AL-03-03",
        }
        added = await admin.post(
            "/api/directory/import",
            json={"format": "csv", "data": header + "\r\n" + ",".join(new_row.values()) + "\r\n"},
        )
        assert added.json()["created"] == 3, added.text
        found = await admin.get("/api/directory/services", params={"q": f"shërbim {tag}"})
        service = found.json()["services"][0]
        assert service["categories"] == ["health", "mental_health"]
        assert service["locations"][0]["municipality"] == "AL-03-03"

        # One bad cell and nothing is saved; the error names its row and column.
        before = (await admin.get("/api/directory/export")).json()
        lines = sheet.text.split("\r\n")
        cells = next(csv.reader([lines[3]]))
        cells[CSV_COLUMNS.index("service_status")] = "sometimes"
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerow(cells)
        broken = "\r\n".join([lines[0], lines[1], lines[2], out.getvalue().strip()])
        refused = await admin.post("/api/directory/import", json={"format": "csv", "data": broken})
        assert (refused.status_code, refused.json()["field"]) == (422, "rows[4].service_status")
        bad_json = await admin.post(
            "/api/directory/import",
            json={
                **exported,
                "organizations": [{**exported["organizations"][0], "url": "x" * 301}],
            },
        )
        assert (bad_json.status_code, bad_json.json()["field"]) == (422, "organizations[0].url")
        assert (await admin.get("/api/directory/export")).json() == before
        wrong = await admin.post("/api/directory/import", json={"organizations": []})
        assert (wrong.status_code, wrong.json()["field"]) == (422, "format")


async def test_the_directory_pages_edit_and_import_through_csrf_forms(live: LiveServer) -> None:
    tag = secrets.token_hex(3)
    async with AsyncExitStack() as stack:
        _a, admin, _ = await staff_http(live, "admin", stack)
        _c, counsellor, _ = await staff_http(live, "counsellor", stack)
        new = await admin.get("/console/directory/organizations/new", params={"lang": "en"})
        assert new.status_code == 200 and "New organisation" in new.text
        token = csrf_of(new.text)
        created = await admin.post(
            "/console/directory/organizations?lang=en",
            data={"csrf": token, "name": f"Qendra {tag}", "example": "1", "url": ""},
        )
        assert created.status_code == 303, created.text
        org_page = created.headers["location"]
        org_id = org_page.split("/")[-1].split("?")[0]
        place = await admin.post(
            "/console/directory/locations",
            data={"csrf": token, "organization_id": org_id, "name": "Zyra",
                  "location_type": "physical", "municipality": "AL-05-02",
                  "phones": "0800 1;0800 2"},
        )  # fmt: skip
        assert place.status_code == 303, place.text
        entry = (await admin.get(f"/api/directory/organizations/{org_id}")).json()
        location_id = entry["locations"][0]["id"]
        assert entry["example"] is True and entry["locations"][0]["phones"] == ["0800 1", "0800 2"]
        bad = await admin.post(
            "/console/directory/services?lang=en",
            data={"csrf": token, "organization_id": org_id, "name": f"Shërbim {tag}",
                  "status": "active", "service_areas": "AL-05, Atlantis"},
        )  # fmt: skip
        assert bad.status_code == 422 and "Atlantis" in bad.text
        good = await admin.post(
            "/console/directory/services",
            data={"csrf": token, "organization_id": org_id, "name": f"Shërbim {tag}",
                  "status": "active", "service_areas": "AL-05", "categories": ["health", "ngo"],
                  "location_ids": [location_id]},
        )  # fmt: skip
        assert good.status_code == 303, good.text
        page = await admin.get(org_page)
        assert page.status_code == 200 and f"Shërbim {tag}" in page.text
        found = await counsellor.get(
            "/console/directory", params={"q": tag, "municipality": "AL-05-07"}
        )
        assert f"Shërbim {tag}" in found.text and "Gjirokastër" in found.text

        transfer = await admin.get("/console/directory/transfer", params={"lang": "en"})
        assert transfer.status_code == 200
        exported = (await admin.get("/api/directory/export", params={"format": "csv"})).text
        imported = await admin.post(
            "/console/directory/transfer?lang=en",
            data={"csrf": token, "format": "csv", "data": exported},
        )
        assert imported.status_code == 200 and "Imported" in imported.text
        broken = await admin.post(
            "/console/directory/transfer?lang=en",
            data={"csrf": token, "format": "json", "data": "{not json"},
        )
        assert broken.status_code == 422 and "Contents:" in broken.text
        assert (await counsellor.get("/console/directory/transfer")).status_code == 403
