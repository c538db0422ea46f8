"""Directory import and export, as JSON (nested, HSDS-shaped) and as one flat CSV sheet.

Both formats carry ids, so an export imported again changes nothing, and an edited
sheet updates the entries it names and adds the rows without ids. An import is checked
whole and written in one transaction: one bad cell and nothing is saved.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat_server import audit, directory
from chat_server.accounts import StaffIdentity
from chat_server.fields import an_id, invalid
from chat_server.taxonomy import Taxonomy
from db.casework import DIRECTORY_DEMO_FILE, Location, Organization, Service, data_file

FORMAT = "alo116-directory"
MAX_ORGANIZATIONS = 5000
ORG_COLUMNS = ("id", *directory.ORGANIZATION_FIELDS)
SERVICE_COLUMNS = ("id", *[f for f in directory.SERVICE_FIELDS if f != "location_ids"])
LOCATION_COLUMNS = ("id", *directory.LOCATION_FIELDS)
CSV_COLUMNS = (
    *(f"organization_{c}" for c in ORG_COLUMNS),
    *(f"service_{c}" for c in SERVICE_COLUMNS),
    *(f"location_{c}" for c in LOCATION_COLUMNS),
)
# Cells a spreadsheet would run as a formula are written with a leading apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# --- export -------------------------------------------------------------------------------


async def export_json(db: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    async with db() as session:
        items = await directory.entries(session)
    return {"format": FORMAT, "version": 1, "organizations": [entry_json(e) for e in items]}


def entry_json(entry: directory.Entry) -> dict[str, Any]:
    o = entry.organization
    return {
        "id": str(o.id),
        **{key: getattr(o, key) for key in directory.ORGANIZATION_FIELDS},
        "locations": [location_row(loc) for loc in entry.locations],
        "services": [
            {**service_row(s), "location_ids": sorted(str(i) for i in entry.links.get(s.id, []))}
            for s in entry.services
        ],
    }


def service_row(service: Service) -> dict[str, Any]:
    return {"id": str(service.id), **{k: getattr(service, k) for k in SERVICE_COLUMNS[1:]}}


def location_row(location: Location) -> dict[str, Any]:
    values = {k: getattr(location, k) for k in LOCATION_COLUMNS[1:] if k != "municipality"}
    return {"id": str(location.id), **values, "municipality": location.municipality_code}


async def export_csv(db: async_sessionmaker[AsyncSession]) -> str:
    """One row per service and location it is offered at; lists joined with ';'."""
    data = await export_json(db)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for org in data["organizations"]:
        org_cells = [org[c] for c in ORG_COLUMNS]
        locations = {loc["id"]: loc for loc in org["locations"]}
        pairs: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
        used: set[str] = set()
        for service in org["services"]:
            located = [locations[i] for i in service["location_ids"]]
            used.update(service["location_ids"])
            pairs.extend((service, loc) for loc in located or [None])
        pairs.extend((None, loc) for loc in org["locations"] if loc["id"] not in used)
        for service, location in pairs or [(None, None)]:
            writer.writerow(
                [
                    cell(v)
                    for v in (
                        *org_cells,
                        *(
                            [service[c] for c in SERVICE_COLUMNS]
                            if service
                            else [""] * len(SERVICE_COLUMNS)
                        ),
                        *(
                            [location[c] for c in LOCATION_COLUMNS]
                            if location
                            else [""] * len(LOCATION_COLUMNS)
                        ),
                    )
                ]
            )
    return out.getvalue()


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = ";".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _uncell(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_STARTS) else value


# --- import -------------------------------------------------------------------------------


async def import_json(
    db: async_sessionmaker[AsyncSession],
    tax: Taxonomy,
    staff: StaffIdentity | None,
    payload: Any,
) -> dict[str, int]:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise invalid("format", f'the file must be {{"format": "{FORMAT}", "organizations": ...}}')
    organizations = payload.get("organizations")
    if not isinstance(organizations, list):
        raise invalid("organizations", "organizations must be a list")
    if len(organizations) > MAX_ORGANIZATIONS:
        raise invalid("organizations", f"at most {MAX_ORGANIZATIONS} organizations per import")
    plan = [_check_entry(tax, org, f"organizations[{i}].") for i, org in enumerate(organizations)]
    counts = {"organizations": 0, "services": 0, "locations": 0, "created": 0}
    async with db() as session, session.begin():
        for org_id, org_values, locations, services in plan:
            await _upsert(session, Organization, org_id, org_values, counts, "organizations")
            for loc_id, loc_values, path in locations:
                row = await _upsert(
                    session, Location, loc_id, {**loc_values, "organization_id": org_id}, counts
                )
                if row.organization_id != org_id:
                    raise invalid(path + "id", "this location belongs to another organization")
                counts["locations"] += 1
            await session.flush()
            for service_id, service_values, path in services:
                location_ids = service_values.pop("location_ids", [])
                service = await _upsert(
                    session,
                    Service,
                    service_id,
                    {**service_values, "organization_id": org_id},
                    counts,
                )
                if service.organization_id != org_id:
                    raise invalid(path + "id", "this service belongs to another organization")
                await session.flush()
                await directory.set_locations(session, service, location_ids, path)
                counts["services"] += 1
        audit.record(
            session,
            action="directory.import",
            actor_user_id=staff.id if staff else None,
            counts=dict(counts),
        )
    return counts


Planned = tuple[
    uuid.UUID,
    dict[str, Any],
    list[tuple[uuid.UUID, dict[str, Any], str]],
    list[tuple[uuid.UUID, dict[str, Any], str]],
]


def _check_entry(tax: Taxonomy, org: Any, path: str) -> Planned:
    if not isinstance(org, dict):
        raise invalid(path.rstrip("."), "each organization must be an object")
    body = {k: v for k, v in org.items() if k not in ("services", "locations")}
    values = directory.check_organization(body, path)
    if "name" not in values:
        raise invalid(path + "name", f"{path}name is required")
    locations = []
    for j, loc in enumerate(_list(org, "locations", path)):
        sub = f"{path}locations[{j}]."
        locations.append((_id(loc, sub), directory.check_location(tax, _obj(loc, sub), sub), sub))
    services = []
    for j, svc in enumerate(_list(org, "services", path)):
        sub = f"{path}services[{j}]."
        checked = directory.check_service(tax, _obj(svc, sub), sub)
        if "name" not in checked:
            raise invalid(sub + "name", f"{sub}name is required")
        services.append((_id(svc, sub), checked, sub))
    return _id(org, path), values, locations, services


def _list(org: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = org.get(key, [])
    if not isinstance(value, list):
        raise invalid(path + key, f"{path}{key} must be a list")
    return value


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(path.rstrip("."), "must be an object")
    return value


def _id(value: Mapping[str, Any], path: str) -> uuid.UUID:
    return an_id(value.get("id"), path + "id", required=False) or uuid.uuid4()


async def _upsert(
    session: AsyncSession,
    model: Any,
    key: uuid.UUID,
    values: dict[str, Any],
    counts: dict[str, int],
    counter: str | None = None,
) -> Any:
    row = await session.get(model, key, with_for_update=True)
    if row is None:
        row = model(id=key, **values)
        session.add(row)
        counts["created"] += 1
    else:
        for column, value in values.items():
            if column != "organization_id":
                setattr(row, column, value)
    if counter:
        counts[counter] += 1
    return row


async def import_csv(
    db: async_sessionmaker[AsyncSession], tax: Taxonomy, staff: StaffIdentity, text: str
) -> dict[str, int]:
    """Rows grouped back into organizations; rows without ids make new entries (grouped
    by organization name, service name, and location name and address). A bad cell is
    named by its row and column, e.g. rows[7].service_status."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    columns = reader.fieldnames or []
    if "organization_name" not in columns:
        raise invalid("columns", "the sheet has no organization_name column")
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if unknown:
        raise invalid("columns", f"unknown columns: {', '.join(unknown)}")
    organizations: dict[str, dict[str, Any]] = {}
    for n, raw in enumerate(reader, start=2):
        row = {k: _uncell(v or "") for k, v in raw.items() if k is not None}
        org = _group(row, "organization_", ORG_COLUMNS)
        directory.check_organization(org, f"rows[{n}].organization_")
        key = org.get("id") or f"name:{org.get('name', '').strip()}"
        entry = organizations.setdefault(key, {**org, "services": {}, "locations": {}})
        location_key = None
        if any(row.get(f"location_{c}") for c in LOCATION_COLUMNS):
            location = _group(row, "location_", LOCATION_COLUMNS)
            directory.check_location(tax, location, f"rows[{n}].location_")
            location_key = location.get("id") or (
                f"{location.get('name', '')}|{location.get('address', '')}"
            )
            entry["locations"].setdefault(location_key, location)
        if any(row.get(f"service_{c}") for c in SERVICE_COLUMNS):
            service = _group(row, "service_", SERVICE_COLUMNS)
            directory.check_service(tax, service, f"rows[{n}].service_")
            service_key = service.get("id") or f"name:{service.get('name', '')}"
            grouped = entry["services"].setdefault(service_key, {**service, "_locations": []})
            if location_key is not None:
                grouped["_locations"].append(location_key)
    payload = {"format": FORMAT, "organizations": [_nested(o) for o in organizations.values()]}
    return await import_json(db, tax, staff, payload)


def _group(row: Mapping[str, str], prefix: str, columns: tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {c: row[prefix + c] for c in columns if prefix + c in row}
    for key in ("id", "status", "location_type"):
        if not values.get(key):
            values.pop(key, None)  # a new entry, or the default
    return values


def _nested(org: dict[str, Any]) -> dict[str, Any]:
    locations = org.pop("locations")
    ids = {key: loc.setdefault("id", str(uuid.uuid4())) for key, loc in locations.items()}
    services = []
    for service in org.pop("services").values():
        keys = service.pop("_locations")
        services.append({**service, "location_ids": [ids[k] for k in dict.fromkeys(keys)]})
    return {**org, "locations": list(locations.values()), "services": services}


async def load_examples(
    db: async_sessionmaker[AsyncSession], tax: Taxonomy, staff: StaffIdentity | None
) -> dict[str, int]:
    """The demo directory from db/data: national bodies and one example per county.

    Idempotent (the entries have fixed ids); `alo116 demo` may call it on every start."""
    return await import_json(db, tax, staff, data_file(DIRECTORY_DEMO_FILE))
