"""Alembic environment for the lineage tables. Run through ``lineage._migrate.MIGRATIONS``, which
passes a live connection and the version table in ``config.attributes``; offline SQL is not supported.

The version table is the lineage package's own, so the gate store's history (``gh_alembic_version``)
and this one evolve independently in one database."""

from __future__ import annotations

from alembic import context

from lineage._schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run lineage migrations through lineage (LineageStore.open migrates itself)")
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=context.config.attributes["version_table"],
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
