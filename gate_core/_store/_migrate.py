"""Bring a database to the newest schema. Safe to call from many processes at once."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

_LOCK_ID = 0x6761746568  # pg_advisory_lock key: "gateh"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", "gate_core._store:migrations")
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": "gh_alembic_version"})
    return context.get_current_revision()


def upgrade(engine: Engine) -> None:
    """Upgrade to head unless already there. On PostgreSQL an advisory lock stops two replicas
    starting together from migrating at once."""
    with engine.connect() as connection:
        if current_revision(connection) == head_revision():
            return
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
            if current_revision(connection) == head_revision():
                return
        config = _config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
