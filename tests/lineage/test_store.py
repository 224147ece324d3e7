"""Recording and the governance queries on a seeded database, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from alembic import command
from sqlalchemy import insert, select, text

from gate_core import Actor, AuthMethod, DatasetRef, Gatekeeper, NotFound, RunContext, StoreError
from lineage import AccessEvent, LineageInputError, LineageStore, MalformedDataset, Operation
from lineage._edges import TRACK_AFTER, task_key
from lineage._migrate import MIGRATIONS, VERSION_TABLE
from lineage._ol_claims import claim_key
from lineage._schema import ol_runs, task_datasets
from tests.lineage.seed import Seeded, seed


@pytest.fixture
def seeded(gatekeeper: Gatekeeper, lstore: LineageStore) -> Seeded:
    return seed(gatekeeper, lstore)


def _event(
    dataset: str, op: Operation, run_id: str = "r", task: str = "t", at: datetime | None = None
) -> AccessEvent:
    return AccessEvent(
        dataset=DatasetRef.parse(dataset),
        operation=op,
        run=RunContext(orchestrator="airflow", pipeline="p", run_id=run_id, task_id=task),
        actor="alice",
        **({"at": at} if at else {}),
    )


def test_who_accessed_a_dataset_with_run_operation_and_approval(seeded: Seeded, lstore: LineageStore) -> None:
    rows = lstore.accessed("warehouse/customers").rows
    assert [(r.run_id, r.operation.value, r.orchestrator) for r in rows] == [
        ("manual__1", "read", "airflow"),
        ("b7c1", "read", "prefect"),
        ("manual__0", "read", "airflow"),
    ]
    assert rows[0].actor == "alice" and rows[0].tags == ["email", "name", "pii"]
    assert rows[0].pipeline == "customer_export" and rows[0].task_id == "extract"

    recent = lstore.accessed(DatasetRef.parse("warehouse/customers"), since=seeded.now - timedelta(days=30))
    assert [r.run_id for r in recent.rows] == ["manual__1", "b7c1"]

    approved = lstore.accessed("s3://exports/customers.csv").rows
    assert [(r.gate_id, r.approval, r.decided_by) for r in approved] == [(seeded.g1, "APPROVED", ["bob"])]


def test_everything_a_run_touched_in_order(seeded: Seeded, lstore: LineageStore) -> None:
    rows = lstore.run("manual__1").rows
    assert [(r.task_id, r.operation.value, r.dataset) for r in rows] == [
        ("extract", "read", "warehouse/customers"),
        ("extract", "write", "warehouse/customers_clean"),
        ("export", "read", "warehouse/customers_clean"),
        ("export", "export", "s3://exports/customers.csv"),
    ]
    assert lstore.run("manual__1", orchestrator="prefect").rows == []
    assert len(lstore.run("b7c1", orchestrator="prefect").rows) == 3


def test_everything_a_gate_approved(seeded: Seeded, lstore: LineageStore) -> None:
    rows = lstore.gate(seeded.g1).rows
    assert [(r.operation.value, r.dataset) for r in rows] == [
        ("read", "warehouse/customers_clean"),
        ("export", "s3://exports/customers.csv"),
    ]
    assert {(r.approval, tuple(r.decided_by)) for r in rows} == {("APPROVED", ("bob",))}
    rejected = lstore.gate(seeded.g2).rows
    assert [(r.dataset, r.approval, r.decided_by, r.actor) for r in rejected] == [
        ("s3://partner/report.csv", "REJECTED", ["carol"], "etl-bot"),
    ]
    assert lstore.gate("gNOSUCHGATE").rows == []


def test_exports_of_datasets_tagged_in_a_window(seeded: Seeded, lstore: LineageStore) -> None:
    every = lstore.exports("pii").rows
    assert [r.dataset for r in every] == ["s3://exports/customers.csv", "s3://exports/customers-old.csv"]
    assert all(r.operation is Operation.EXPORT and "pii" in r.tags for r in every)
    assert [r.dataset for r in lstore.exports("PII", since=seeded.now - timedelta(days=30)).rows] == [
        "s3://exports/customers.csv"
    ]
    assert [r.dataset for r in lstore.exports("email").rows] == [r.dataset for r in every]
    assert lstore.exports("phi").rows == []


def test_graph_downstream_upstream_and_depth(seeded: Seeded, lstore: LineageStore) -> None:
    down = lstore.graph("warehouse/customers", direction="downstream", depth=5)
    assert {(e.upstream, e.downstream, e.depth) for e in down.edges} == {
        ("warehouse/customers", "warehouse/customers_clean", 1),
        ("warehouse/customers_clean", "s3://exports/customers.csv", 2),
        ("warehouse/customers", "warehouse/report_daily", 1),
        ("warehouse/report_daily", "s3://partner/report.csv", 2),
        ("warehouse/customers", "s3://exports/customers-old.csv", 1),
    }
    assert {n.dataset for n in down.nodes if n.direction == "downstream"} == {
        "warehouse/customers_clean",
        "s3://exports/customers.csv",
        "warehouse/report_daily",
        "s3://partner/report.csv",
        "s3://exports/customers-old.csv",
    }
    one_hop = lstore.graph("warehouse/customers", direction="downstream", depth=1)
    assert {e.downstream for e in one_hop.edges} == {
        "warehouse/customers_clean",
        "warehouse/report_daily",
        "s3://exports/customers-old.csv",
    }
    up = lstore.graph("s3://partner/report.csv", direction="upstream", depth=5)
    assert {(e.upstream, e.downstream) for e in up.edges} == {
        ("warehouse/report_daily", "s3://partner/report.csv"),
        ("warehouse/orders", "warehouse/report_daily"),
        ("warehouse/customers", "warehouse/report_daily"),
    }
    both = lstore.graph("warehouse/report_daily")
    assert {n.direction for n in both.nodes} == {"root", "upstream", "downstream"}


def test_graph_walks_long_chains_and_stops_on_cycles(lstore: LineageStore) -> None:
    chain = [f"lake/step{i}" for i in range(8)]
    batch = []
    for i, (src, dst) in enumerate(itertools.pairwise(chain)):
        batch += [_event(src, Operation.READ, f"run{i}"), _event(dst, Operation.WRITE, f"run{i}")]
    batch += [_event("lake/step7", Operation.READ, "loop"), _event("lake/step0", Operation.WRITE, "loop")]
    lstore.record_many(batch)
    five = lstore.graph("lake/step0", direction="downstream", depth=5)
    assert sorted(n.dataset for n in five.nodes if n.direction == "downstream") == chain[1:6]
    whole = lstore.graph("lake/step0", direction="downstream", depth=10)
    assert len(whole.edges) == 8 and not whole.truncated  # the loop edge back to step0 is walked once
    assert max(e.depth for e in whole.edges) == 8


def test_edges_need_a_shared_run_and_task(lstore: LineageStore) -> None:
    lstore.record_many(
        [
            _event("a/in", Operation.READ, "r1", "t1"),
            _event("a/out", Operation.WRITE, "r1", "t2"),  # another task: no edge
            _event("a/other", Operation.WRITE, "r2", "t1"),  # another run: no edge
            _event("a/in", Operation.DELETE, "r1", "t1"),
        ]
    )
    assert lstore.graph("a/in").edges == []
    lstore.record(_event("a/late", Operation.EXPORT, "r1", "t1"))  # a later batch still links
    assert [(e.upstream, e.downstream) for e in lstore.graph("a/in").edges] == [("a/in", "a/late")]


def _task_datasets(lstore: LineageStore) -> set[tuple[str, str, str, datetime]]:
    with lstore.engine.connect() as conn:
        rows = conn.execute(select(task_datasets)).all()
    return {(r.task_key, r.dataset, r.operation, r.last_at) for r in rows}


def _statements_of(lstore: LineageStore, work: Callable[[], object]) -> list[str]:
    statements: list[str] = []

    def remember(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(" ".join(statement.split()))

    sqlalchemy.event.listen(lstore.engine, "before_cursor_execute", remember)
    try:
        work()
    finally:
        sqlalchemy.event.remove(lstore.engine, "before_cursor_execute", remember)
    return statements


def test_a_long_tasks_edges_are_derived_without_reading_its_events(lstore: LineageStore) -> None:
    """A task past TRACK_AFTER events has its rows in gh_lineage_task_datasets (one per dataset and
    operation): recording its next batch reads those, and the events table only to skip ids."""
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    reads = [_event("h/in", Operation.READ, at=t0 + timedelta(minutes=i)) for i in range(TRACK_AFTER + 1)]
    lstore.record_many(reads)
    statements = _statements_of(
        lstore, lambda: lstore.record_many([_event("h/out", Operation.WRITE, at=t0 + timedelta(hours=2))])
    )
    reads_of_events = [s for s in statements if "FROM gh_lineage_events" in s]
    assert all("gh_lineage_events.id IN" in s for s in reads_of_events), reads_of_events
    [edge] = lstore.graph("h/in").edges
    assert (edge.upstream, edge.downstream, edge.last_seen_at) == ("h/in", "h/out", t0 + timedelta(hours=2))
    # sixty-five reads of one dataset are one row, at the newest of them
    assert {(d, o, at) for _, d, o, at in _task_datasets(lstore)} == {
        ("h/in", "read", t0 + timedelta(minutes=TRACK_AFTER)),
        ("h/out", "write", t0 + timedelta(hours=2)),
    }


def test_a_short_task_writes_no_rows_and_still_links_across_batches(lstore: LineageStore) -> None:
    lstore.record_many([_event("s/a", Operation.READ), _event("s/b", Operation.READ)])
    lstore.record(_event("s/out", Operation.EXPORT))
    assert _task_datasets(lstore) == set()
    assert {(e.upstream, e.downstream) for e in lstore.graph("s/out").edges} == {
        ("s/a", "s/out"),
        ("s/b", "s/out"),
    }


def test_a_task_growing_long_over_batches_gets_rows_for_all_it_touched(lstore: LineageStore) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    half = TRACK_AFTER // 2 + 1
    lstore.record_many([_event("g/a", Operation.READ, at=t0 + timedelta(seconds=i)) for i in range(half)])
    assert _task_datasets(lstore) == set()
    lstore.record_many([_event("g/b", Operation.READ, at=t0 + timedelta(minutes=i)) for i in range(half)])
    assert {(d, o) for _, d, o, _ in _task_datasets(lstore)} == {("g/a", "read"), ("g/b", "read")}
    lstore.record(_event("g/out", Operation.WRITE, at=t0 + timedelta(hours=2)))
    assert {e.upstream for e in lstore.graph("g/out", direction="upstream").edges} == {"g/a", "g/b"}


def test_a_task_gets_its_rows_only_after_every_batch_reading_its_events_committed(
    lstore: LineageStore,
) -> None:
    """Batch A takes a task past TRACK_AFTER while batch B of the same task is still uncommitted
    (B read the task's events, so it wrote no rows): A's rows must include what B recorded, or
    B's dataset would be lost to every later edge. On PostgreSQL an advisory lock orders the two;
    on SQLite the database's write lock does."""
    in_b = threading.Event()
    release_b = threading.Event()

    def slow(_conn: object) -> None:
        in_b.set()
        assert release_b.wait(30)

    b = threading.Thread(
        target=lstore.record_many, args=([_event("x/slow", Operation.READ)],), kwargs={"also": slow}
    )
    b.start()
    try:
        assert in_b.wait(30)
        fast = [_event("x/fast", Operation.READ) for _ in range(TRACK_AFTER + 1)]
        a = threading.Thread(target=lstore.record_many, args=(fast,))
        a.start()
        a.join(1.0)
        assert a.is_alive()  # A committed its events, and waits for B before giving the task rows
    finally:
        release_b.set()
        b.join(30)
    a.join(30)
    assert {d for _, d, _, _ in _task_datasets(lstore)} == {"x/slow", "x/fast"}
    lstore.record(_event("x/out", Operation.WRITE))
    assert {e.upstream for e in lstore.graph("x/out", direction="upstream").edges} == {"x/slow", "x/fast"}


def test_the_task_table_is_filled_from_the_events_recorded_before_it(lstore: LineageStore) -> None:
    """Migration 0004 fills gh_lineage_task_datasets from the events already stored, for every
    task, short or long (a task with rows has rows for all it touched): an edge from a read before
    the upgrade to a write after it shows."""
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    lstore.record_many(
        [
            _event("m/in", Operation.READ, at=t0),
            _event("m/in", Operation.READ, at=t0 + timedelta(minutes=5)),
            _event("m/other", Operation.EXPORT, "r2", "t9", at=t0),
            _event("m/gone", Operation.DELETE, at=t0),  # deletes make no edges, and no rows
            _event("m/norun", Operation.READ, "", at=t0),  # nor do events without a run
        ]
    )
    assert _task_datasets(lstore) == set()  # short tasks
    with lstore.engine.begin() as conn:
        config = MIGRATIONS.config()
        config.attributes["connection"] = conn
        config.attributes["version_table"] = VERSION_TABLE
        command.downgrade(config, "0003_events_run_task_index")
        assert "gh_lineage_task_datasets" not in sqlalchemy.inspect(conn).get_table_names()
    lstore.migrate()
    assert _task_datasets(lstore) == {
        (task_key("r", "airflow", "t"), "m/in", "read", t0 + timedelta(minutes=5)),
        (task_key("r2", "airflow", "t9"), "m/other", "export", t0),
    }
    lstore.record(_event("m/out", Operation.WRITE, at=t0 + timedelta(hours=1)))
    assert [(e.upstream, e.downstream) for e in lstore.graph("m/in").edges] == [("m/in", "m/out")]


def test_migration_0005_keeps_each_stored_runid_as_one_claim(lstore: LineageStore) -> None:
    """A runId mapped before 0005 is one claim of it after, keyed as the receiver keys claims; a
    second claim of the same runId can then be stored beside it."""
    config = MIGRATIONS.config()
    config.attributes["version_table"] = VERSION_TABLE
    now = datetime(2026, 3, 1, tzinfo=UTC)
    with lstore.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004_task_datasets")
        conn.execute(
            text(
                "INSERT INTO gh_lineage_ol_runs "
                "(ol_run_id, orchestrator, pipeline, run_id, task_id, seen_at) "
                "VALUES ('0176a8c2-fe01-7439-87e6-56a1a1b4029f', 'airflow', 'dag', 'manual__1', 'load', :at)"
            ),
            {"at": now},
        )
    lstore.migrate()
    first = RunContext(orchestrator="airflow", pipeline="dag", run_id="manual__1", task_id="load")
    second = first.model_copy(update={"pipeline": "decoy"})
    with lstore.engine.begin() as conn:
        conn.execute(
            insert(ol_runs).values(
                ol_run_id="0176a8c2-fe01-7439-87e6-56a1a1b4029f",
                orchestrator="airflow",
                pipeline="decoy",
                run_id="manual__1",
                task_id="load",
                seen_at=now,
                run_key=claim_key(second),
            )
        )
        keys = set(conn.execute(select(ol_runs.c.run_key)).scalars())
    assert keys == {claim_key(first), claim_key(second)}


def test_a_purged_tasks_datasets_link_no_more(
    seeded: Seeded, gatekeeper: Gatekeeper, lstore: LineageStore
) -> None:
    """What a purge removed from the events no longer makes edges: the task's rows older than the
    cutoff go with them, and a newer access keeps its row."""
    t0 = seeded.now - timedelta(days=90)
    old_read = _event("p/old_in", Operation.READ, "long", "t", at=t0)
    lstore.record_many([old_read, _event("p/kept_in", Operation.READ, "long", "t", at=seeded.now)])
    carol = Actor(principal_id="carol", via=AuthMethod.LOCAL_OS_USER)
    lstore.purge(before=seeded.now - timedelta(days=30), gatekeeper=gatekeeper, actor=carol)
    assert "p/old_in" not in {d for _, d, _, _ in _task_datasets(lstore)}
    lstore.record(_event("p/out", Operation.WRITE, "long", "t", at=seeded.now))
    assert {e.upstream for e in lstore.graph("p/out", direction="upstream").edges} == {"p/kept_in"}


def test_record_many_is_idempotent_per_event_id(lstore: LineageStore) -> None:
    batch = [_event("w/x", Operation.READ), _event("w/y", Operation.WRITE)]
    assert lstore.record_many(batch) == 2
    assert lstore.record_many(batch) == 0  # a retried batch
    assert lstore.record_many([*batch, _event("w/z", Operation.EXPORT), batch[0]]) == 1
    assert lstore.count() == 3
    assert {e.id for e in lstore.iter_events()} == {batch[0].id, batch[1].id} | {
        e.id for e in lstore.iter_events() if e.dataset.name == "z"
    }


def test_events_read_back_exactly(seeded: Seeded, lstore: LineageStore) -> None:
    stored = list(lstore.iter_events(batch=4))
    assert sorted(stored, key=lambda e: e.id) == sorted(seeded.events, key=lambda e: e.id)
    assert lstore.get(seeded.events[0].id) == seeded.events[0]
    with pytest.raises(NotFound):
        lstore.get("eNOPE")
    recent = list(lstore.iter_events(since=seeded.now - timedelta(days=1)))
    assert len(recent) == 6


def test_limits_say_when_results_were_cut(seeded: Seeded, lstore: LineageStore) -> None:
    cut = lstore.accessed("warehouse/customers", limit=2)
    assert len(cut.rows) == 2 and cut.truncated
    assert not lstore.accessed("warehouse/customers", limit=3).truncated
    with pytest.raises(LineageInputError, match="limit"):
        lstore.run("x", limit=0)
    with pytest.raises(LineageInputError, match="depth"):
        lstore.graph("a/b", depth=11)
    with pytest.raises(LineageInputError, match="direction"):
        lstore.graph("a/b", direction="sideways")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["customers", "/customers", "warehouse/", "", "a/b\x00c", "a/" + "é" * 700])
def test_malformed_dataset_names_are_refused_clearly(lstore: LineageStore, bad: str) -> None:
    with pytest.raises(MalformedDataset, match="NAMESPACE/NAME"):
        lstore.accessed(bad)


# ---------------------------------------------------------------- append-only and retention


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE gh_lineage_events SET actor = 'mallory'",
        "DELETE FROM gh_lineage_events",
        "UPDATE gh_lineage_event_tags SET tag = 'public'",
        "DELETE FROM gh_lineage_event_tags",
    ],
)
def test_events_are_append_only(seeded: Seeded, lstore: LineageStore, statement: str) -> None:
    with pytest.raises(Exception, match="append-only"), lstore.engine.begin() as conn:
        conn.execute(text(statement))
    assert lstore.count() == len(seeded.events)


def test_truncate_is_refused_on_postgresql(seeded: Seeded, lstore: LineageStore) -> None:
    if lstore.engine.dialect.name != "postgresql":
        assert lstore.engine.dialect.name == "sqlite"  # SQLite has no TRUNCATE; DELETE is covered above
        return
    with pytest.raises(Exception, match="append-only"), lstore.engine.begin() as conn:
        conn.execute(text("TRUNCATE gh_lineage_events"))


def test_purge_deletes_only_old_events_and_is_audited(
    seeded: Seeded, gatekeeper: Gatekeeper, lstore: LineageStore
) -> None:
    head_before, _ = gatekeeper.store.audit_head()
    cutoff = seeded.now - timedelta(days=30)
    carol = Actor(principal_id="carol", via=AuthMethod.LOCAL_OS_USER)
    deleted = lstore.purge(before=cutoff, gatekeeper=gatekeeper, actor=carol, retention="30d", batch_size=1)
    assert deleted == 2
    assert lstore.count() == len(seeded.events) - 2
    assert [r.run_id for r in lstore.accessed("warehouse/customers").rows] == ["manual__1", "b7c1"]
    assert lstore.exports("pii").rows[-1].dataset == "s3://exports/customers.csv"
    # the old run's edge went with it; edges still seen recently stay
    down = {e.downstream for e in lstore.graph("warehouse/customers", direction="downstream", depth=1).edges}
    assert down == {"warehouse/customers_clean", "warehouse/report_daily"}

    entries = list(gatekeeper.store.audit_entries(after_seq=head_before))
    assert [e.event for e in entries] == ["lineage.retention_purged"]
    body = entries[0].decoded()
    assert body["payload"] == {"count": 2, "cutoff": cutoff.isoformat(), "retention": "30d"}
    assert body["actor"]["principal_id"] == "carol"
    assert gatekeeper.audit.verify().ok
    # the door closes again: a plain DELETE of what is left is still refused
    with pytest.raises(Exception, match="append-only"), lstore.engine.begin() as conn:
        conn.execute(text("DELETE FROM gh_lineage_events"))


def test_purge_is_refused_unless_it_can_be_audited(
    seeded: Seeded, gatekeeper: Gatekeeper, lstore: LineageStore
) -> None:
    with pytest.raises(Exception, match="area"):
        gatekeeper.audit.record(
            "gate.approved", actor=Actor(principal_id="x", via=AuthMethod.SYSTEM), payload={}
        )
    before = lstore.count()

    class BrokenAudit:
        def record(self, *_args: object, **_kwargs: object) -> None:
            raise StoreError("audit log unavailable")

    class Broken:
        audit = BrokenAudit()

    with pytest.raises(StoreError):
        lstore.purge(
            before=datetime.now(UTC),
            gatekeeper=Broken(),  # type: ignore[arg-type]
            actor=Actor(principal_id="c", via=AuthMethod.SYSTEM),
        )
    assert lstore.count() == before  # nothing deleted without its audit entry
