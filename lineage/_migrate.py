"""The lineage tables' schema history (``_migrations/``), kept apart from the gate store's by its
own version table, so the two evolve independently in one database."""

from __future__ import annotations

from gate_core.sql import SchemaMigrations

HEAD = "0005_ol_run_claims"
VERSION_TABLE = "gh_lineage_alembic_version"

MIGRATIONS = SchemaMigrations(
    script_location="lineage:_migrations",
    version_table=VERSION_TABLE,
    head=HEAD,
    lock_id=0x6C696E65,  # "line"
)
