"""The gate store's schema history (``migrations/``); ``MIGRATIONS.upgrade(engine)`` runs on every
store open and costs one query when the database is already at ``HEAD``."""

from __future__ import annotations

from gate_core.sql import SchemaMigrations

HEAD = "0010_i22_gate_run_key"
VERSION_TABLE = "gh_alembic_version"  # not Airflow's or Prefect's alembic_version, should they share a DB

MIGRATIONS = SchemaMigrations(
    script_location="gate_core._store:migrations",
    version_table=VERSION_TABLE,
    head=HEAD,
    lock_id=0x6761746568,  # "gateh"
)
