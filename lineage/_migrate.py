"""Bring the lineage tables to the newest schema. Safe from many processes at once.

Alembic is imported only when the database actually needs upgrading: opening a store checks the
version with one query against ``HEAD`` (a test keeps ``HEAD`` equal to the newest migration).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

HEAD = "0001_lineage_events"
VERSION_TABLE = "gh_lineage_alembic_version"
_LOCK_ID = 0x6C696E65  # pg_advisory_xact_lock key: "line" (the gate store uses its own key)


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "lineage:_migrations")
    return config


def script_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()  # noqa: S608 - constant


def upgrade(engine: Engine) -> None:
    """Upgrade to head unless already there; on PostgreSQL under an advisory lock, so replicas
    starting together migrate once."""
    with engine.connect() as connection:
        if current_revision(connection) == HEAD:
            return
    from alembic import command

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
            if current_revision(connection) == HEAD:
                return
        config = _config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
