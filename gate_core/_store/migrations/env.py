"""Alembic environment for the gate store. Run through ``gate_core._store.migrate``, which passes a
live connection in ``config.attributes["connection"]``; offline SQL generation is not supported."""

from __future__ import annotations

from alembic import context

from gate_core._store._schema import metadata

VERSION_TABLE = (
    "gh_alembic_version"  # not Airflow's or Prefect's alembic_version, should they share a database
)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through gate_core (gatehouse init / the store opens itself)")
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
