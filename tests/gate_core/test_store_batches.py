"""A decision batch's writes (SqlStore.mutate_many): on PostgreSQL one statement per table over
one JSON parameter (gate_core.sql.json_rows), on SQLite an executemany. Both must store exactly
what the gates the batch returns say, and the PostgreSQL update must find each gate by its key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from gate_core import AlreadyDecided, DecisionRequest, Gatekeeper, GateStatus, SqlStore, Verdict
from gate_core._store._schema import audit_log, decisions, gates
from gate_core._store._sql import _pg_update_gates
from gate_core.sql import json_rows
from gate_core.testing import ManualClock, actor, example_directory, example_policy
from tests.gate_core.conftest import pii_export


def test_a_batch_stores_what_its_gates_say(gatekeeper: Gatekeeper, store: SqlStore) -> None:
    opened = [gatekeeper.open(pii_export(reason=f"r{i}"), submitted_by=actor("alice")) for i in range(12)]
    stale = gatekeeper.open(pii_export(reason="stale"), submitted_by=actor("alice"))
    gatekeeper.reject(stale.id, actor=actor("carol"), reason="no")
    results = gatekeeper.decide_many(
        [
            DecisionRequest(g.id, actor("bob"), Verdict.APPROVE, comment=f"ok {i} ✓")
            for i, g in enumerate(opened)
        ]
        + [DecisionRequest(stale.id, actor("bob"), Verdict.APPROVE)]  # refused: nothing written for it
    )
    *decided, refused = results
    assert isinstance(refused, AlreadyDecided)
    with store.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(gates).where(gates.c.id.in_([g.id for g in opened])))}
        stored = {r.gate_id: r for r in conn.execute(select(decisions).where(decisions.c.gate_id.in_(rows)))}
        stale_row = conn.execute(
            select(gates.c.status, gates.c.decided_by).where(gates.c.id == stale.id)
        ).one()
    for gate in decided:
        assert not isinstance(gate, Exception)
        row = rows[gate.id]
        assert (row.status, row.decided_at, row.decided_by) == (gate.status.value, gate.decided_at, '["bob"]')
        decision = gate.decisions[-1]
        assert (stored[gate.id].at, stored[gate.id].comment, stored[gate.id].break_glass) == (
            decision.at,
            decision.comment,
            False,
        )
        assert gate.status is GateStatus.APPROVED
    assert (stale_row.status, stale_row.decided_by) == ("REJECTED", '["carol"]')
    assert gatekeeper.audit.verify().ok


def test_json_rows_refuses_a_naive_time() -> None:
    """PostgreSQL would read a time without an offset in the session's zone: refused, as UtcDateTime does."""
    assert json_rows([{"at": datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC)}]) == (
        '[{"at":"2026-01-05T09:00:00.123456+00:00"}]'
    )
    with pytest.raises(ValueError, match="naive"):
        json_rows([{"at": datetime(2026, 1, 5, 9, 0)}])


def test_the_batched_compare_and_set_probes_the_primary_key(postgres_url: str) -> None:
    """A gates table that grew by thousands since it was last analyzed (a burst of gates before
    autovacuum gets to it) is where a join condition the planner cannot see through costs most:
    written through the populated record (``g.id = r.id``), this update hash-joined a scan of the
    whole table for every batch. With the key read straight from the JSON it probes the primary
    key per row, analyzed or not."""
    store = SqlStore.open(postgres_url)
    seed = Gatekeeper(store, example_directory(), example_policy()).open(
        pii_export(), submitted_by=actor("alice")
    )
    engine = store.engine
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO gh_gates SELECT (jsonb_populate_record(g, jsonb_build_object("
                    "'id', 'g' || i, 'idempotency_key', NULL))).* "
                    "FROM gh_gates AS g, generate_series(1, 3000) AS i WHERE g.id = :seed"
                ),
                {"seed": seed.id},
            )
            explain = text(f"EXPLAIN {_pg_update_gates(('status',)).text}")
            rows = [{"b_id": seed.id, "b_status": "PENDING", "new_status": "APPROVED"}]
            plan = "\n".join(r[0] for r in conn.execute(explain, {"rows": json_rows(rows)}))
    finally:
        engine.dispose()
    assert "Index Scan using pk_gh_gates on gh_gates" in plan, plan
    assert "Seq Scan on gh_gates" not in plan, plan


def test_an_audit_batch_keeps_its_times_to_the_microsecond(
    gatekeeper: Gatekeeper, store: SqlStore, clock: ManualClock
) -> None:
    """Verify checks each entry's ``at`` column against its body: the JSON form must not round it."""
    opened = [gatekeeper.open(pii_export(reason=f"t{i}"), submitted_by=actor("alice")) for i in range(3)]
    clock.advance(microseconds=123_457)
    [first, *_] = gatekeeper.decide_many(
        [DecisionRequest(g.id, actor("bob"), Verdict.APPROVE) for g in opened]
    )
    assert not isinstance(first, Exception)
    with store.engine.connect() as conn:
        newest = conn.execute(select(audit_log.c.at).order_by(audit_log.c.seq.desc()).limit(1)).scalar_one()
        decided_at = conn.execute(select(gates.c.decided_at).where(gates.c.id == first.id)).scalar_one()
    assert newest == decided_at == first.decided_at
    assert decided_at.microsecond == 123_457
    assert gatekeeper.audit.verify().ok
