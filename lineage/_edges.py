"""Dataset edges derived from runs: within one task of one run (orchestrator + run id + task id),
every dataset READ is upstream of every dataset WRITTEN or EXPORTED.

The task is part of the key on purpose: a run whose tasks are independent would otherwise link
everything any task read to everything any task wrote. A chain across tasks still shows — task A
writes staging, task B reads staging — as a path of length two, which graph queries walk. Events
without a run id (nothing to tie them together) make no edges.

Edges are kept distinct in a small table (first and last seen), so graph queries never scan
events. Recording a batch writes only edges that are new or whose last-seen time is more than an
hour behind. What each task touched so far comes from one of two places:

    a short task (at most TRACK_AFTER events: nearly every task of a batch pipeline) — its events,
        through the events' (run, task) index: a few rows, and nothing more to write per event;
    a long task (a streaming job, a receiver's long-running Spark task) — its rows in
        ``gh_lineage_task_datasets``, one per dataset and operation with the newest time, kept as
        its events arrive, so a batch's cost does not grow with the task's history.

A task moves from the first to the second once, right after the batch that took it past
TRACK_AFTER commits (``track``). On PostgreSQL that step takes an advisory lock exclusively and
every recording transaction takes it shared first: it runs only when no batch that read the task's
events (and so wrote no rows for it) is still uncommitted, and reads their events too. A task with
any row in the table has rows for everything it touched (migration 0004 filled it for every task
recorded before; retention deletes rows and events by the same cutoff).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select, text, tuple_

from gate_core.sql import UtcDateTime, json_rows
from lineage._models import AccessEvent, Operation
from lineage._schema import edges, task_datasets

RunKey = tuple[str, str, str]  # run_id, orchestrator, task_id
TaskDataset = tuple[str, str, str]  # task key, dataset, operation
_READ = Operation.READ.value
_OUTPUTS = (Operation.WRITE.value, Operation.EXPORT.value)
_LINKED = (_READ, *_OUTPUTS)
TOUCH_EVERY = timedelta(hours=1)  # how stale an edge's last_seen_at may get before it is refreshed
TRACK_AFTER = 64  # events of one task read from the events table before it gets its own rows
_CHUNK = 900  # ids per IN list or pair lookup: far below SQLite's bound-parameter limit
_HISTORY_LOCK = 0x6C696E6574  # "linet": recording (shared) against starting to track a task


def _key(event: AccessEvent) -> RunKey:
    return (event.run.run_id, event.run.orchestrator, event.run.task_id)


def task_key(run_id: str, orchestrator: str, task_id: str) -> str:
    """A task of a run as one fixed-width key (migration 0004 computes the same for the events it
    found; none of the three can hold NUL)."""
    return hashlib.sha256(f"{run_id}\x00{orchestrator}\x00{task_id}".encode()).hexdigest()


def hold_history(conn: Connection) -> None:
    """First statement of every recording transaction on PostgreSQL (see the module docstring);
    taken before any row lock, so waiting for it can close no cycle of waits."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": _HISTORY_LOCK})


def link_runs(conn: Connection, batch: Sequence[AccessEvent]) -> set[RunKey]:
    """Upsert the edges this batch creates (its events are already inserted). Returns the tasks
    that this batch took past TRACK_AFTER events: ``track`` them once it has committed."""
    touched: dict[RunKey, set[str]] = defaultdict(set)  # task → the datasets the batch touched
    latest: dict[tuple[RunKey, str, str], datetime] = {}
    for event in batch:
        if event.run.run_id and event.operation is not Operation.DELETE:
            key = _key(event)
            name = event.dataset.qualified_name
            touched[key].add(name)
            seen = (key, name, event.operation.value)
            latest[seen] = max(event.at, latest.get(seen, event.at))
    if not touched:
        return set()
    by_hash = {task_key(*key): key for key in touched}
    history: list[tuple[RunKey, str, str, datetime]] = []
    for hashed, dataset, operation, at in _task_datasets(conn, sorted(by_hash)):
        history.append((by_hash[hashed], dataset, operation, at))
    tracked = {key for key, _, _, _ in history}
    _remember(conn, {(task_key(*k), d, o): at for (k, d, o), at in latest.items() if k in tracked})
    history += [(k, d, o, at) for (k, d, o), at in latest.items() if k in tracked]
    counts: dict[RunKey, int] = defaultdict(int)
    for key, dataset, operation, at, n in _run_datasets(conn, [k for k in touched if k not in tracked]):
        history.append((key, dataset, operation, at))
        counts[key] += n
    reads: dict[RunKey, dict[str, datetime]] = defaultdict(dict)
    outputs: dict[RunKey, dict[str, datetime]] = defaultdict(dict)
    for key, dataset, operation, at in history:
        side = reads if operation == _READ else outputs if operation in _OUTPUTS else None
        if side is not None:
            seen_at = side[key]
            seen_at[dataset] = max(at, seen_at.get(dataset, at))
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
    return {key for key, n in counts.items() if n > TRACK_AFTER}


def track(conn: Connection, keys: Iterable[RunKey]) -> None:
    """Give these tasks their rows, from all their events committed so far (its own transaction,
    after the batch that took them past TRACK_AFTER committed)."""
    if conn.dialect.name == "postgresql":
        # bounded: every recording transaction queues behind this request while it waits; past
        # the bound it fails, the tasks stay short, and their next batch asks again
        conn.execute(text("SET LOCAL lock_timeout = '5s'"))
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _HISTORY_LOCK})
    rows = {
        (task_key(*key), dataset, operation): at
        for key, dataset, operation, at, _ in _run_datasets(conn, sorted(set(keys)))
        if operation in _LINKED
    }
    _remember(conn, rows)


# PostgreSQL gets a batch's rows as one JSON parameter (gate_core.sql.json_rows): one plan, however
# long the batch (a long IN list or row-value list costs more to plan than to run). Sorted rows:
# concurrent batches of one task take the row locks in one order and cannot deadlock. A row is
# rewritten only when the batch saw it later than stored (no dead row version for an older,
# retried or late event).
_PG_REMEMBER = text(
    "INSERT INTO gh_lineage_task_datasets (task_key, dataset, operation, last_at) "
    "SELECT k, d, o, t FROM json_to_recordset(CAST(:rows AS json)) "
    "AS r(k text, d text, o text, t timestamptz) "
    "ON CONFLICT (task_key, dataset, operation) DO UPDATE SET last_at = excluded.last_at "
    "WHERE gh_lineage_task_datasets.last_at < excluded.last_at"
)
# LATERAL: one primary-key probe per task, whatever the planner's statistics say (right after a
# bulk load they say little, and a plain "= ANY(array)" can turn into a scan of the whole table).
_PG_TASK_DATASETS = text(
    "SELECT t.task_key, t.dataset, t.operation, t.last_at "
    "FROM json_array_elements_text(CAST(:keys AS json)) AS k(key) CROSS JOIN LATERAL "
    "(SELECT * FROM gh_lineage_task_datasets WHERE task_key = k.key) AS t"
).columns(last_at=UtcDateTime)


# A short task's history from its events. LATERAL: one probe of the (run, orchestrator, task
# prefix) index per task (migration 0003), whatever the planner's statistics say; each task's rows
# grouped inside the probe, by dataset and operation only (one sort of all the tasks' rows by five
# wide text columns cost as much as reading them).
_PG_RUN_DATASETS = text(
    "SELECT k.r, k.o, k.t, e.dataset, e.operation, e.at, e.n "
    "FROM json_to_recordset(CAST(:keys AS json)) AS k(r text, o text, t text) "
    "CROSS JOIN LATERAL (SELECT dataset, operation, max(at) AS at, count(*) AS n FROM gh_lineage_events "
    "WHERE run_id = k.r AND orchestrator = k.o AND substr(task_id, 1, 40) = substr(k.t, 1, 40) "
    "AND task_id = k.t GROUP BY dataset, operation) AS e"
).columns(at=UtcDateTime)

# "+task_id": a plain "task_id = :t" lets SQLite substitute :t into substr(task_id, 1, 40), which
# then no longer matches the index's expression (the probe would read the whole run).
_LITE_RUN_DATASETS = text(
    "SELECT dataset, operation, max(at) AS at, count(*) AS n FROM gh_lineage_events "
    "WHERE run_id = :r AND orchestrator = :o AND substr(task_id, 1, 40) = :p AND +task_id = :t "
    "GROUP BY dataset, operation"
).columns(at=UtcDateTime)

# The edges this batch found that are stored already, and the upsert of the stale ones.
_PG_KNOWN = text(
    "SELECT e.upstream, e.downstream, e.last_seen_at "
    "FROM json_to_recordset(CAST(:pairs AS json)) AS p(u text, d text) "
    "CROSS JOIN LATERAL (SELECT * FROM gh_lineage_edges WHERE upstream = p.u AND downstream = p.d) AS e"
)

_PG_UPSERT = text(
    "INSERT INTO gh_lineage_edges (upstream, downstream, first_seen_at, last_seen_at) "
    "SELECT u, d, t, t FROM json_to_recordset(CAST(:rows AS json)) AS p(u text, d text, t timestamptz) "
    "ON CONFLICT (upstream, downstream) DO UPDATE SET "
    "first_seen_at = LEAST(gh_lineage_edges.first_seen_at, excluded.first_seen_at), "
    "last_seen_at = GREATEST(gh_lineage_edges.last_seen_at, excluded.last_seen_at)"
)


def _remember(conn: Connection, latest: dict[TaskDataset, datetime]) -> None:
    """Move each (task, dataset, operation)'s last time forward to the batch's, or add it."""
    if not latest:
        return
    ordered = sorted(latest.items())
    if conn.dialect.name == "postgresql":
        rows = [{"k": k, "d": d, "o": o, "t": at} for (k, d, o), at in ordered]
        conn.execute(_PG_REMEMBER, {"rows": json_rows(rows)})
        return
    from sqlalchemy.dialects import sqlite  # SQLite's own INSERT … ON CONFLICT

    lite = sqlite.insert(task_datasets)
    conn.execute(
        lite.on_conflict_do_update(
            index_elements=[task_datasets.c.task_key, task_datasets.c.dataset, task_datasets.c.operation],
            set_={"last_at": func.max(task_datasets.c.last_at, lite.excluded.last_at)},
        ),
        [{"task_key": k, "dataset": d, "operation": o, "last_at": at} for (k, d, o), at in ordered],
    )


def _task_datasets(conn: Connection, keys: list[str]) -> list[tuple[str, str, str, datetime]]:
    """Every dataset each of these tasks read, wrote or exported so far, and when last."""
    if conn.dialect.name == "postgresql":
        return [(k, d, o, at) for k, d, o, at in conn.execute(_PG_TASK_DATASETS, {"keys": json_rows(keys)})]
    found: list[tuple[str, str, str, datetime]] = []
    columns = (task_datasets.c.task_key, task_datasets.c.dataset, task_datasets.c.operation)
    for start in range(0, len(keys), _CHUNK):
        stmt = select(*columns, task_datasets.c.last_at).where(
            task_datasets.c.task_key.in_(keys[start : start + _CHUNK])
        )
        found += [(k, d, o, at) for k, d, o, at in conn.execute(stmt)]
    return found


def _run_datasets(conn: Connection, keys: list[RunKey]) -> list[tuple[RunKey, str, str, datetime, int]]:
    """Each dataset these tasks touched, by operation: the newest time and how many events."""
    if not keys:
        return []
    if conn.dialect.name == "postgresql":
        params = {"keys": json_rows([{"r": r, "o": o, "t": t} for r, o, t in keys])}
        return [((r, o, t), d, op, at, n) for r, o, t, d, op, at, n in conn.execute(_PG_RUN_DATASETS, params)]
    # SQLite: one execution per task of one cached statement (in-process, each costs microseconds;
    # an OR of many keys cost more to build and compile than to run)
    found: list[tuple[RunKey, str, str, datetime, int]] = []
    for key in keys:
        r, o, t = key
        params = {"r": r, "o": o, "p": t[:40], "t": t}
        found += [(key, d, op, at, n) for d, op, at, n in conn.execute(_LITE_RUN_DATASETS, params)]
    return found


def _not_fresh(conn: Connection, found: dict[tuple[str, str], datetime]) -> dict[tuple[str, str], datetime]:
    """Drop pairs already stored with a last-seen time within TOUCH_EVERY of now's: in steady
    state (the same jobs every day) recording writes no edge rows at all."""
    if not found:
        return found
    pairs = sorted(found)
    known: dict[tuple[str, str], datetime] = {}
    if conn.dialect.name == "postgresql":
        params = {"pairs": json_rows([{"u": u, "d": d} for u, d in pairs])}
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
        rows = [{"u": u, "d": d, "t": a} for (u, d), a in ordered]
        conn.execute(_PG_UPSERT, {"rows": json_rows(rows)})
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
