"""The referral directory, shaped on Open Referral HSDS: organizations offer services at
locations. Staff search it; administrators keep it. Import and export: directory_io."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from chat_server import audit, taxonomy
from chat_server.accounts import StaffIdentity
from chat_server.errors import Refused
from chat_server.fields import a_bool, an_id, an_int, invalid, text, text_list
from chat_server.taxonomy import NATIONWIDE, Taxonomy
from db.casework import Location, Organization, Service, ServiceAtLocation
from db.models import utcnow

ORGANIZATION_FIELDS = (
    "name",
    "alternate_name",
    "description",
    "email",
    "url",
    "example",
    "verification",
)
SERVICE_FIELDS = (
    "name",
    "description",
    "status",
    "minimum_age",
    "maximum_age",
    "eligibility",
    "application_process",
    "categories",
    "service_areas",
    "phones",
    "email",
    "url",
    "location_ids",
)
LOCATION_FIELDS = (
    "name",
    "location_type",
    "address",
    "municipality",
    "phones",
    "email",
    "hours",
    "description",
)


@dataclass
class Entry:
    """One organization with its services and locations, as the pages and exports need it."""

    organization: Organization
    services: list[Service] = field(default_factory=list)
    locations: list[Location] = field(default_factory=list)
    links: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)  # service -> locations


# --- checking one record (also used by the import, with a path prefix) ---------------------


def check_organization(data: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    _known(data, ORGANIZATION_FIELDS, path)
    values: dict[str, Any] = {}
    limits = {"name": 200, "alternate_name": 200, "description": 4000, "email": 200, "url": 300}
    for key, limit in limits.items():
        if key in data:
            values[key] = text(data[key], path + key, max_length=limit, required=key == "name")
    if "verification" in data:
        values["verification"] = text(data["verification"], path + "verification", max_length=300)
    if "example" in data:
        values["example"] = a_bool(data["example"], path + "example")
    return values


def check_service(tax: Taxonomy, data: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    _known(data, SERVICE_FIELDS, path)
    values: dict[str, Any] = {}
    limits = {
        "name": 200,
        "description": 4000,
        "eligibility": 2000,
        "application_process": 2000,
        "email": 200,
        "url": 300,
    }
    for key, limit in limits.items():
        if key in data:
            values[key] = text(data[key], path + key, max_length=limit, required=key == "name")
    if "status" in data:
        values["status"] = taxonomy.check_code(
            "service_statuses", data["status"], path + "status", required=True
        )
    for key in ("minimum_age", "maximum_age"):
        if key in data:
            values[key] = an_int(data[key], path + key, low=0, high=120)
    low, high = values.get("minimum_age"), values.get("maximum_age")
    if low is not None and high is not None and low > high:
        raise invalid(path + "maximum_age", "maximum_age is below minimum_age")
    if "categories" in data:
        values["categories"] = taxonomy.check_codes(
            "service_categories", data["categories"], path + "categories"
        )
    if "service_areas" in data:
        values["service_areas"] = tax.check_areas(data["service_areas"], path + "service_areas")
    if "phones" in data:
        values["phones"] = text_list(data["phones"], path + "phones", max_items=10, max_length=40)
    if "location_ids" in data:
        ids = text_list(data["location_ids"], path + "location_ids", max_items=50, max_length=40)
        values["location_ids"] = [an_id(i, path + "location_ids") for i in ids]
    return values


def check_location(tax: Taxonomy, data: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    _known(data, LOCATION_FIELDS, path)
    values: dict[str, Any] = {}
    for key, limit in {"name": 200, "address": 300, "email": 200, "hours": 200}.items():
        if key in data:
            values[key] = text(data[key], path + key, max_length=limit)
    if "description" in data:
        values["description"] = text(data["description"], path + "description", max_length=4000)
    if "location_type" in data:
        values["location_type"] = taxonomy.check_code(
            "location_types", data["location_type"], path + "location_type", required=True
        )
    if "municipality" in data:
        values["municipality_code"] = tax.check_municipality(
            data["municipality"], path + "municipality"
        )
    if "phones" in data:
        values["phones"] = text_list(data["phones"], path + "phones", max_items=10, max_length=40)
    return values


def _known(data: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in data:
        if key not in allowed and key != "id":
            raise invalid(path + key, f"{path + key!r} is not a directory field")


# --- reading --------------------------------------------------------------------------------


async def entries(session: AsyncSession) -> list[Entry]:
    """The whole directory, sorted so that exports are stable."""
    organizations = (
        await session.execute(
            select(Organization).order_by(col(Organization.name), col(Organization.id))
        )
    ).scalars()
    by_id = {o.id: Entry(o) for o in organizations}
    for service in (
        await session.execute(select(Service).order_by(col(Service.name), col(Service.id)))
    ).scalars():
        by_id[service.organization_id].services.append(service)
    for location in (
        await session.execute(select(Location).order_by(col(Location.name), col(Location.id)))
    ).scalars():
        by_id[location.organization_id].locations.append(location)
    owner = {s.id: e for e in by_id.values() for s in e.services}
    links = await session.execute(
        select(ServiceAtLocation).order_by(col(ServiceAtLocation.location_id))
    )
    for link in links.scalars():
        owner[link.service_id].links.setdefault(link.service_id, []).append(link.location_id)
    return list(by_id.values())


def serves(tax: Taxonomy, service: Service, locations: list[Location], municipality: str) -> bool:
    areas = set(service.service_areas)
    county = tax.county_of(municipality)
    if NATIONWIDE in areas or municipality in areas or (county is not None and county in areas):
        return True
    return any(location.municipality_code == municipality for location in locations)


async def search(
    db: async_sessionmaker[AsyncSession],
    tax: Taxonomy,
    *,
    q: str = "",
    municipality: str | None = None,
    category: str | None = None,
    include_inactive: bool = False,
) -> list[tuple[Service, Entry]]:
    """Services matching every given filter; the directory is small, so it is read whole
    and matched here, alike on both databases and with Albanian letters folded."""
    municipality = tax.check_municipality(municipality) if municipality else None
    category = taxonomy.check_code("service_categories", category, "category")
    words = q.casefold().split()
    async with db() as session:
        directory = await entries(session)
    found: list[tuple[Service, Entry]] = []
    for entry in directory:
        for service in entry.services:
            if service.status != "active" and not include_inactive:
                continue
            located = [loc for loc in entry.locations if loc.id in entry.links.get(service.id, [])]
            if municipality and not serves(tax, service, located, municipality):
                continue
            if category and category not in service.categories:
                continue
            haystack = " ".join(
                [
                    service.name,
                    service.description,
                    entry.organization.name,
                    entry.organization.alternate_name,
                    *(loc.address for loc in located),
                ]
            ).casefold()
            if all(word in haystack for word in words):
                found.append((service, entry))
    # The nearest first: services of the municipality, then its county, then national.
    if municipality:
        found.sort(key=lambda item: _distance(tax, item[0], municipality))
    return found


def _distance(tax: Taxonomy, service: Service, municipality: str) -> int:
    areas = set(service.service_areas)
    if municipality in areas:
        return 0
    if tax.county_of(municipality) in areas:
        return 1
    return 2 if NATIONWIDE in areas else 0


async def entry(db: async_sessionmaker[AsyncSession], organization_id: uuid.UUID) -> Entry:
    async with db() as session:
        for item in await entries(session):
            if item.organization.id == organization_id:
                return item
    raise Refused("not_found", f"no organization {str(organization_id)!r}")


async def active_services(db: async_sessionmaker[AsyncSession]) -> list[tuple[Service, str]]:
    async with db() as session:
        rows = await session.execute(
            select(Service, col(Organization.name))
            .join(Organization, col(Organization.id) == col(Service.organization_id))
            .where(col(Service.status) == "active")
            .order_by(col(Organization.name), col(Service.name))
        )
        return [(row[0], row[1]) for row in rows]


# --- keeping it (administrators) -------------------------------------------------------------


async def save_organization(
    db: async_sessionmaker[AsyncSession],
    staff: StaffIdentity,
    data: Mapping[str, Any],
    organization_id: uuid.UUID | None = None,
) -> Organization:
    values = check_organization(data)
    async with db() as session, session.begin():
        if organization_id is None:
            if "name" not in values:
                raise invalid("name", "name is required")
            organization = Organization(**values)
            session.add(organization)
        else:
            organization = await _get(session, Organization, organization_id)
            for key, value in values.items():
                setattr(organization, key, value)
        organization.updated_at = utcnow()
        _audit(session, staff, "organization", organization.id, created=organization_id is None)
    return organization


async def save_service(
    db: async_sessionmaker[AsyncSession],
    tax: Taxonomy,
    staff: StaffIdentity,
    data: Mapping[str, Any],
    *,
    organization_id: uuid.UUID | None = None,
    service_id: uuid.UUID | None = None,
) -> Service:
    values = check_service(tax, data)
    location_ids: list[uuid.UUID] | None = values.pop("location_ids", None)
    async with db() as session, session.begin():
        if service_id is None:
            assert organization_id is not None
            await _get(session, Organization, organization_id)
            if "name" not in values:
                raise invalid("name", "name is required")
            service = Service(organization_id=organization_id, **values)
            session.add(service)
            await session.flush()
        else:
            service = await _get(session, Service, service_id)
            for key, value in values.items():
                setattr(service, key, value)
        low, high = service.minimum_age, service.maximum_age
        if low is not None and high is not None and low > high:
            raise invalid("maximum_age", "maximum_age is below minimum_age")
        if location_ids is not None:
            await set_locations(session, service, location_ids)
        service.updated_at = utcnow()
        _audit(session, staff, "service", service.id, created=service_id is None)
    return service


async def save_location(
    db: async_sessionmaker[AsyncSession],
    tax: Taxonomy,
    staff: StaffIdentity,
    data: Mapping[str, Any],
    *,
    organization_id: uuid.UUID | None = None,
    location_id: uuid.UUID | None = None,
) -> Location:
    values = check_location(tax, data)
    async with db() as session, session.begin():
        if location_id is None:
            assert organization_id is not None
            await _get(session, Organization, organization_id)
            location = Location(organization_id=organization_id, **values)
            session.add(location)
        else:
            location = await _get(session, Location, location_id)
            for key, value in values.items():
                setattr(location, key, value)
        _audit(session, staff, "location", location.id, created=location_id is None)
    return location


async def set_locations(
    session: AsyncSession, service: Service, location_ids: list[uuid.UUID], path: str = ""
) -> None:
    """Where the service is offered: locations of its own organization only."""
    for location_id in location_ids:
        location = await session.get(Location, location_id)
        if location is None or location.organization_id != service.organization_id:
            raise invalid(
                path + "location_ids",
                f"no location {str(location_id)!r} of the service's organization",
            )
    await session.execute(
        delete(ServiceAtLocation).where(col(ServiceAtLocation.service_id) == service.id)
    )
    session.add_all(
        ServiceAtLocation(service_id=service.id, location_id=i) for i in dict.fromkeys(location_ids)
    )


async def _get(session: AsyncSession, model: Any, key: uuid.UUID) -> Any:
    row = await session.get(model, key, with_for_update=True)
    if row is None:
        raise Refused("not_found", f"no {model.__tablename__[:-1]} {str(key)!r}")
    return row


def _audit(
    session: AsyncSession, staff: StaffIdentity, kind: str, key: uuid.UUID, *, created: bool
) -> None:
    action = f"directory.{kind}_{'create' if created else 'update'}"
    audit.record(session, action=action, actor_user_id=staff.id, target=f"{kind}:{key}")


def service_json(tax: Taxonomy, service: Service, item: Entry) -> dict[str, Any]:
    located = [loc for loc in item.locations if loc.id in item.links.get(service.id, [])]
    organization = item.organization
    return {
        **_service_fields(service),
        "organization": {
            "id": str(organization.id),
            "name": organization.name,
            "alternate_name": organization.alternate_name,
            "url": organization.url,
            "email": organization.email,
            "example": organization.example,
            "verification": organization.verification,
        },
        "locations": [location_json(tax, loc) for loc in located],
    }


def _service_fields(service: Service) -> dict[str, Any]:
    return {
        "id": str(service.id),
        "name": service.name,
        "description": service.description,
        "status": service.status,
        "minimum_age": service.minimum_age,
        "maximum_age": service.maximum_age,
        "eligibility": service.eligibility,
        "application_process": service.application_process,
        "categories": list(service.categories),
        "service_areas": list(service.service_areas),
        "phones": list(service.phones),
        "email": service.email,
        "url": service.url,
    }


def location_json(tax: Taxonomy, location: Location) -> dict[str, Any]:
    return {
        "id": str(location.id),
        "name": location.name,
        "location_type": location.location_type,
        "address": location.address,
        "municipality": location.municipality_code,
        "county": tax.county_of(location.municipality_code),
        "phones": list(location.phones),
        "email": location.email,
        "hours": location.hours,
        "description": location.description,
    }
