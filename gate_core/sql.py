"""SQL building blocks for packages that keep their own tables in the gate store's database.

lineage is one such package: its tables live beside the gate store's, versioned by their own
Alembic history and version table, and its timestamps behave exactly like the store's.

    UtcDateTime        a column type: aware UTC datetimes in, aware UTC datetimes out, on every backend
    SchemaMigrations   one Alembic history: ``upgrade(engine)`` brings it to head, once, even when
                       many processes start together
    run_alembic_env    the whole body of such a history's ``env.py``
    json_rows          a batch of rows as one JSON parameter for PostgreSQL's ``json_*_recordset``

Alembic is imported only when a database actually needs upgrading: the usual start-up costs one
query against ``head`` (each package keeps a test that ``head`` equals its newest migration).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, DateTime, Dialect, Engine, MetaData, TypeDecorator, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["SchemaMigrations", "UtcDateTime", "json_rows", "run_alembic_env"]


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite stores naive text; the zone is restored)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _aware_isoformat(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # as UtcDateTime: PostgreSQL would read it in the session's zone
            raise ValueError("naive datetimes are not stored; use an aware UTC datetime")
        return value.isoformat()  # with its offset: PostgreSQL reads it as that instant
    raise TypeError(f"{type(value).__name__} is not JSON")


def json_rows(rows: Any) -> str:
    """Rows as one JSON text parameter for PostgreSQL (``json_populate_recordset``,
    ``json_to_recordset``, ``json_array_elements``): one statement and one plan however many rows,
    encoded by orjson in C. An executemany costs psycopg a Python round of binding and pipelining
    per row, and an array parameter a Python dump per element — either costs more than the
    database's own work on a batch."""
    try:
        encoded = orjson.dumps(rows, default=_aware_isoformat, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except orjson.JSONEncodeError as exc:  # say what _aware_isoformat refused, not orjson's wrapper
        raise ValueError(f"rows cannot be sent as JSON: {exc.__cause__ or exc}") from exc
    return encoded.decode()


@dataclass(frozen=True)
class SchemaMigrations:
    """One Alembic history in a shared database.

    ``lock_id`` keys a PostgreSQL advisory lock, so replicas starting together migrate once; each
    history needs its own key (and its own ``version_table``).
    """

    script_location: str  # "package:folder" or "package.module:folder"
    version_table: str
    head: str
    lock_id: int

    def config(self) -> Config:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", self.script_location)
        return config

    def script_head(self) -> str | None:
        """The newest revision in the scripts (for the test that keeps ``head`` honest)."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.config()).get_current_head()

    def current_revision(self, connection: Connection) -> str | None:
        if not inspect(connection).has_table(self.version_table):
            return None
        query = text(f"SELECT version_num FROM {self.version_table}")  # noqa: S608 - our own constant
        return connection.execute(query).scalar()

    def upgrade(self, engine: Engine) -> None:
        """Upgrade to head unless already there; on PostgreSQL under the advisory lock."""
        with engine.connect() as connection:
            if self.current_revision(connection) == self.head:
                return
        from alembic import command

        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self.lock_id})
                if self.current_revision(connection) == self.head:
                    return
            config = self.config()
            config.attributes["connection"] = connection
            config.attributes["version_table"] = self.version_table
            command.upgrade(config, "head")


def run_alembic_env(metadata: MetaData, owner: str) -> None:
    """Run a ``SchemaMigrations`` history's migrations: the body of its ``env.py``. Online only,
    on the connection and version table ``upgrade`` passes; offline SQL is not supported."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(f"run these migrations through {owner}")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=context.config.attributes["version_table"],
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()
