"""The gates of a run, through ``gh_gates.run_key`` (migration 0010), on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from gate_core import GateFilter, Gatekeeper, RunContext, SqlStore
from gate_core._store._migrate import MIGRATIONS, VERSION_TABLE
from gate_core.testing import actor
from tests.gate_core.conftest import pii_export


def _run(run_id: str, pipeline: str = "customer_export") -> RunContext:
    return RunContext(orchestrator="airflow", pipeline=pipeline, run_id=run_id, task_id="approve")


def test_a_runs_gates_are_found_by_its_key_and_nothing_else(gatekeeper: Gatekeeper) -> None:
    bot = actor("etl-bot")
    mine = [gatekeeper.open(pii_export(run=_run("r1")), submitted_by=bot) for _ in range(2)]
    gatekeeper.open(pii_export(run=_run("r1", pipeline="other_dag")), submitted_by=bot)  # same id, other DAG
    gatekeeper.open(pii_export(run=_run("r2"), parameters={"run_id": "r1"}), submitted_by=bot)  # names r1
    gatekeeper.open(pii_export(), submitted_by=bot)  # outside any run
    key = _run("r1").key()
    assert key is not None and RunContext().key() is None
    found = gatekeeper.list(GateFilter(runs=(key,), limit=10))
    assert sorted(g.id for g in found) == sorted(g.id for g in mine)


def test_migration_0010_keys_the_gates_already_stored(gatekeeper: Gatekeeper, store: SqlStore) -> None:
    """Gates opened before the column existed get the key their request's run gives; a gate
    outside any run, and one whose stored request cannot be read, stay NULL and stop nothing."""
    bot = actor("etl-bot")
    in_run = gatekeeper.open(pii_export(run=_run("before")), submitted_by=bot)
    outside = gatekeeper.open(pii_export(), submitted_by=bot)
    broken = gatekeeper.open(pii_export(run=_run("broken")), submitted_by=bot)
    config = MIGRATIONS.config()
    config.attributes["version_table"] = VERSION_TABLE
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0009_i15_decision_subject")
        conn.execute(text("UPDATE gh_gates SET request = '{\"action\": ' WHERE id = :g"), {"g": broken.id})
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        keys = dict(conn.execute(text("SELECT id, run_key FROM gh_gates")).all())
    assert keys == {in_run.id: _run("before").key(), outside.id: None, broken.id: None}
