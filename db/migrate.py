"""Alembic, driven from code: `alo116 migrate` and the tests call `upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Apply migrations (runs its own event loop: call it outside one, or in a thread)."""
    command.upgrade(alembic_config(database_url), revision)


def upgrade_on(connection: Connection, revision: str = "heads") -> None:
    """Apply migrations on an open synchronous connection (from AsyncConnection.run_sync)."""
    url = connection.engine.url.render_as_string(hide_password=False)
    command.upgrade(alembic_config(url, connection), revision)
