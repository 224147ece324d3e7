"""Alembic environment for the gate store, run by ``gate_core._store._migrate.MIGRATIONS``."""

from __future__ import annotations

from gate_core._store._schema import metadata
from gate_core.sql import run_alembic_env

run_alembic_env(metadata, owner="gate_core (gatehouse init; the store migrates when it opens)")
