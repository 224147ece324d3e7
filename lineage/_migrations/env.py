"""Alembic environment for the lineage tables, run by ``lineage._migrate.MIGRATIONS``. The version
table is the lineage package's own, so the gate store's history (``gh_alembic_version``) and this
one evolve independently in one database."""

from __future__ import annotations

from gate_core.sql import run_alembic_env
from lineage._schema import metadata

run_alembic_env(metadata, owner="lineage (LineageStore.open migrates itself)")
