"""Dataset edges derived from runs: within one task of one run (orchestrator + run id + task id),
every dataset READ is upstream of every dataset WRITTEN or EXPORTED.

The task is part of the key on purpose: a run whose tasks are independent would otherwise link
everything any task read to everything any task wrote. A chain across tasks still shows — task A
writes staging, task B reads staging — as a path of length two, which graph queries walk. Events
without a run id (nothing to tie them together) make no edges.

Edges are kept distinct in a small table (first and last seen), so graph queries never scan
events. Recording a batch looks up only the runs that batch touched (index on run id), and
writes only edges that are new or whose last-seen time is more than an hour behind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select, text, tuple_

from gate_core.sql import UtcDateTime
from lineage._models import AccessEvent, Operation
from lineage._schema import edges

RunKey = tuple[str, str, str]  # run_id, orchestrator, task_id
_READ = Operation.READ.value
_OUTPUTS = (Operation.WRITE.value, Operation.EXPORT.value)
TOUCH_EVERY = timedelta(hours=1)  # how stale an edge's last_seen_at may get before it is refreshed
_CHUNK = 900  # ids per IN list or pair lookup: far below SQLite's bound-parameter limit


def _key(event: AccessEvent) -> RunKey:
    return (event.run.run_id, event.run.orchestrator, event.run.task_id)


def link_runs(conn: Connection, batch: Sequence[AccessEvent]) -> int:
    """Upsert the edges this batch creates (its events are already inserted). Returns how many."""
    touched: dict[RunKey, set[str]] = defaultdict(set)
    for event in batch:
        if event.run.run_id and event.operation is not Operation.DELETE:
            touched[_key(event)].add(event.dataset.qualified_name)
    if not touched:
        return 0
    reads: dict[RunKey, dict[str, datetime]] = defaultdict(dict)
    outputs: dict[RunKey, dict[str, datetime]] = defaultdict(dict)
    for run_id, orchestrator, task_id, dataset, operation, at in _run_datasets(conn, set(touched)):
        key = (run_id, orchestrator, task_id)
        side = reads if operation == _READ else outputs if operation in _OUTPUTS else None
        if side is not None and key in touched:
            seen = side[key]
            seen[dataset] = max(at, seen.get(dataset, at))
    found: dict[tuple[str, str], datetime] = {}
    for key, names in touched.items():
        for up, up_at in reads[key].items():
            for down, down_at in outputs[key].items():
                if up != down and (up in names or down in names):
                    at = max(up_at, down_at)
                    found[(up, down)] = max(at, found.get((up, down), at))
    stale = _not_fresh(conn, found)
    if stale:
        _upsert(conn, stale)
    return len(stale)


# PostgreSQL gets whole arrays as single parameters: one plan, however long the batch (a long
# IN list or row-value list costs more to plan than to run).
# LATERAL: one index probe per (run, task), whatever the planner's statistics say (right after a
# bulk load they say little, and a plain "= ANY(array)" then turns into a scan of the whole table).
# The probe matches the index's task prefix (migration 0003), so it reads that task's rows only,
# not the whole run's (a 20-task DAG run's every row, once per task, before). Each task's rows are
# grouped inside the probe, by dataset and operation only: one sort of all the batch's tasks' rows
# by five wide text columns cost as much as reading them (EXPLAIN ANALYZE, 60 tasks of 333 rows:
# 30 ms before, 18 ms after).
_PG_RUN_DATASETS = text(
    "SELECT k.r, k.o, k.t, e.dataset, e.operation, e.at "
    "FROM unnest(CAST(:runs AS text[]), CAST(:orchestrators AS text[]), CAST(:tasks AS text[])) "
    "AS k(r, o, t) "
    "CROSS JOIN LATERAL (SELECT dataset, operation, max(at) AS at FROM gh_lineage_events "
    "WHERE run_id = k.r AND orchestrator = k.o AND substr(task_id, 1, 40) = substr(k.t, 1, 40) "
    "AND task_id = k.t GROUP BY dataset, operation) AS e"
).columns(at=UtcDateTime)

_PG_KNOWN = text(
    "SELECT e.upstream, e.downstream, e.last_seen_at "
    "FROM unnest(CAST(:ups AS text[]), CAST(:downs AS text[])) AS p(u, d) "
    "CROSS JOIN LATERAL (SELECT * FROM gh_lineage_edges WHERE upstream = p.u AND downstream = p.d) AS e"
)
_PG_UPSERT = text(
    "INSERT INTO gh_lineage_edges (upstream, downstream, first_seen_at, last_seen_at) "
    "SELECT u, d, t, t FROM unnest(CAST(:ups AS text[]), CAST(:downs AS text[]), "
    "CAST(:ats AS timestamptz[])) AS p(u, d, t) ON CONFLICT (upstream, downstream) DO UPDATE SET "
    "first_seen_at = LEAST(gh_lineage_edges.first_seen_at, excluded.first_seen_at), "
    "last_seen_at = GREATEST(gh_lineage_edges.last_seen_at, excluded.last_seen_at)"
)


# "+task_id": a plain "task_id = :t" lets SQLite substitute :t into substr(task_id, 1, 40), which
# then no longer matches the index's expression (the probe would read the whole run again).
_LITE_RUN_DATASETS = text(
    "SELECT run_id, orchestrator, task_id, dataset, operation, max(at) AS at FROM gh_lineage_events "
    "WHERE run_id = :r AND orchestrator = :o AND substr(task_id, 1, 40) = :p AND +task_id = :t "
    "GROUP BY run_id, orchestrator, task_id, dataset, operation"
).columns(at=UtcDateTime)


def _run_datasets(conn: Connection, keys: set[RunKey]) -> list[tuple[str, str, str, str, str, datetime]]:
    """What each of these (run, orchestrator, task) read and wrote so far, through the run index."""
    if conn.dialect.name == "postgresql":
        ordered = sorted(keys)
        params = {
            "runs": [k[0] for k in ordered],
            "orchestrators": [k[1] for k in ordered],
            "tasks": [k[2] for k in ordered],
        }
        return [tuple(r) for r in conn.execute(_PG_RUN_DATASETS, params)]
    # SQLite: the same per-task probe, one execution per key of one cached statement (in-process,
    # each costs microseconds; an OR of many keys cost more to build and compile than to run)
    found = []
    for r, o, t in sorted(keys):
        found += [
            tuple(row) for row in conn.execute(_LITE_RUN_DATASETS, {"r": r, "o": o, "p": t[:40], "t": t})
        ]
    return found


def _not_fresh(conn: Connection, found: dict[tuple[str, str], datetime]) -> dict[tuple[str, str], datetime]:
    """Drop pairs already stored with a last-seen time within TOUCH_EVERY of now's: in steady
    state (the same jobs every day) recording writes no edge rows at all."""
    if not found:
        return found
    pairs = sorted(found)
    known: dict[tuple[str, str], datetime] = {}
    if conn.dialect.name == "postgresql":
        params = {"ups": [u for u, _ in pairs], "downs": [d for _, d in pairs]}
        known.update(((up, down), last) for up, down, last in conn.execute(_PG_KNOWN, params))
    else:
        for start in range(0, len(pairs), _CHUNK):
            stmt = select(edges.c.upstream, edges.c.downstream, edges.c.last_seen_at).where(
                tuple_(edges.c.upstream, edges.c.downstream).in_(pairs[start : start + _CHUNK])
            )
            known.update(((up, down), last) for up, down, last in conn.execute(stmt))
    return {pair: at for pair, at in found.items() if pair not in known or at - known[pair] > TOUCH_EVERY}


def _upsert(conn: Connection, found: dict[tuple[str, str], datetime]) -> None:
    # Sorted: concurrent batches take row locks in the same order and cannot deadlock each other.
    ordered = sorted(found.items())
    if conn.dialect.name == "postgresql":
        conn.execute(
            _PG_UPSERT,
            {
                "ups": [u for (u, _), _ in ordered],
                "downs": [d for (_, d), _ in ordered],
                "ats": [a for _, a in ordered],
            },
        )
        return
    from sqlalchemy.dialects import sqlite  # SQLite's own INSERT … ON CONFLICT

    lite = sqlite.insert(edges)
    conn.execute(
        lite.on_conflict_do_update(
            index_elements=[edges.c.upstream, edges.c.downstream],
            set_={
                "first_seen_at": func.min(edges.c.first_seen_at, lite.excluded.first_seen_at),
                "last_seen_at": func.max(edges.c.last_seen_at, lite.excluded.last_seen_at),
            },
        ),
        [{"upstream": u, "downstream": d, "first_seen_at": a, "last_seen_at": a} for (u, d), a in ordered],
    )
