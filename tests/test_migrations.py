"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlmodel import SQLModel

import db.models  # noqa: F401  (puts the tables on SQLModel.metadata)
from db.engine import create_engine
from db.migrate import alembic_config, upgrade
from tests.conftest import _pg_admin, _pg_url


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


async def _schema_diff(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_diff)
    finally:
        await engine.dispose()


def test_migrations_on_an_empty_sqlite_file_match_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    upgrade(url)
    assert asyncio.run(_schema_diff(url)) == []


@pytest.mark.postgres
def test_migrations_on_an_empty_postgres_database_match_the_models(postgres_database: str) -> None:
    name = "alo116_migrations_check"
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        url = _pg_url(name)
        upgrade(url)
        assert asyncio.run(_schema_diff(url)) == []
        upgrade(url)  # applying again changes nothing
        heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
        assert asyncio.run(_versions(url)) == heads
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _versions(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return {str(version) for version in rows.scalars()}
    finally:
        await engine.dispose()
