"""Alembic environment for the gate store. Run through ``gate_core._store._migrate.MIGRATIONS``
(a ``gate_core.sql.SchemaMigrations``), which passes a live connection and the version table in
``config.attributes``; offline SQL generation is not supported."""

from __future__ import annotations

from alembic import context

from gate_core._store._schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through gate_core (gatehouse init / the store opens itself)")
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=context.config.attributes["version_table"],
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
