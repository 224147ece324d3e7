"""LineageStore: access events in the gate store's database — recording, reading, retention.

Recording is batched: ``record_many`` writes events and their tag rows in one transaction
(PostgreSQL: ``COPY``, the fastest path psycopg has; SQLite: one ``executemany`` per table) and
then derives the dataset edges of the runs it touched. Event ids are the idempotency key: a batch
sent twice (a retried HTTP call) records each event once.

Queries live in ``lineage._queries``; the store exposes them as methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from sqlalchemy import ColumnElement, Connection, Engine, and_, delete, func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gate_core import Actor, DatasetRef, NotFound, SqlStore, StoreError, StoreUnavailable
from lineage import _migrate, _queries
from lineage._codec import (
    EVENT_COLUMNS,
    EVENT_PG_TYPES,
    TAG_COLUMNS,
    TAG_PG_TYPES,
    Row,
    event_from_row,
    rows_of_events,
    tag_values,
)
from lineage._db import Database
from lineage._edges import RunKey, hold_history, link_runs, track
from lineage._models import AccessEvent, Operation
from lineage._schema import edges, event_tags, events, purge, task_datasets

if TYPE_CHECKING:
    from gate_core import Gatekeeper
    from lineage._queries import AccessRows, LineageGraph

log = logging.getLogger("gatehouse.lineage")
RETENTION_EVENT = "lineage.retention_purged"
Also = Callable[[Connection], None]


def _older(before: datetime) -> ColumnElement[bool]:
    """Events older than ``before``, through the (operation, at) index: one range per operation."""
    return and_(events.c.operation.in_([op.value for op in Operation]), events.c.at < before)


@dataclass(frozen=True, slots=True)
class _Recorded:
    count: int  # new events
    long_tasks: set[RunKey]  # tasks the batch took past lineage._edges.TRACK_AFTER events


class _KnownIds(Exception):
    """COPY met an event id already recorded: redo the batch the careful way."""


class LineageStore:
    """Access events on SQLite or PostgreSQL, next to the gate store (same database)."""

    def __init__(self, engine: Engine, *, owns_engine: bool = False) -> None:
        self.db = Database(engine)
        self._owns_engine = owns_engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, timeout_s: float = 30.0) -> LineageStore:
        """Open (and migrate) the lineage tables in the database at ``url`` — normally the gate
        store's ``Settings.database_url``. The engine is built exactly as the gate store builds it."""
        engine = SqlStore.open(url, migrate=False, timeout_s=timeout_s).engine
        store = cls(engine, owns_engine=True)
        if migrate:
            store.migrate()
        return store

    @classmethod
    def for_gate_store(cls, gate_store: SqlStore, *, migrate: bool = True) -> LineageStore:
        """Share a running gate store's engine and pool (the service, the CLI's purge)."""
        store = cls(gate_store.engine)
        if migrate:
            store.migrate()
        return store

    def migrate(self) -> None:
        with self.db.read():  # maps an unreachable database to StoreUnavailable
            pass
        _migrate.MIGRATIONS.upgrade(self.db.engine)

    @property
    def engine(self) -> Engine:
        return self.db.engine

    def close(self) -> None:
        if self._owns_engine:
            self.db.engine.dispose()

    # ------------------------------------------------------------ recording

    def record(self, event: AccessEvent) -> int:
        return self.record_many([event])

    def record_many(self, batch: Sequence[AccessEvent], also: Also | None = None) -> int:
        """Record a batch in one transaction; returns how many were new (a repeated id is skipped).

        ``also(conn)`` writes what belongs with the batch (the receiver's run mappings and column
        edges) in that same transaction: one commit a batch, and none of it without the rest. It
        may run more than once (a retried transaction), so it must be idempotent."""
        batch = list({e.id: e for e in reversed(batch)}.values())[::-1]  # one row per id, first wins
        if not batch:
            if also is not None:
                self.db.retrying(lambda: self._also(also))
            return 0
        event_rows = rows_of_events(batch)
        tag_rows = [t for e in batch for t in tag_values(e)]
        recorded = self._record(batch, event_rows, tag_rows, also)
        if recorded.long_tasks:
            # after the commit, in a transaction of its own (lineage._edges); if it fails the
            # tasks stay short, and the next batch of each tries again
            try:
                self.db.retrying(lambda: self._track(recorded.long_tasks))
            except (StoreError, SQLAlchemyError):
                log.warning(
                    "could not start keeping %d tasks' datasets; retried on their next batch",
                    len(recorded.long_tasks),
                    exc_info=True,
                )
        return recorded.count

    def _record(
        self, batch: Sequence[AccessEvent], event_rows: list[Row], tag_rows: list[Row], also: Also | None
    ) -> _Recorded:
        if self.db.dialect == "postgresql":
            try:
                return self.db.retrying(lambda: self._copy(batch, event_rows, tag_rows, also))
            except _KnownIds:
                log.debug("batch repeats recorded event ids; recording the new ones only")
        try:
            return self.db.retrying(lambda: self._insert(batch, event_rows, tag_rows, also))
        except IntegrityError as exc:  # another writer recorded some of these ids just now
            raise StoreError(
                "access events with these ids were being recorded concurrently; send again"
            ) from exc

    def _track(self, tasks: set[RunKey]) -> None:
        with self.db.begin() as conn:
            track(conn, tasks)

    def _also(self, also: Also) -> None:
        with self.db.begin() as conn:
            also(conn)

    def _copy(
        self, batch: Sequence[AccessEvent], event_rows: list[Row], tag_rows: list[Row], also: Also | None
    ) -> _Recorded:
        """PostgreSQL: COPY both tables (the raw psycopg connection of this very transaction)."""
        import psycopg  # only PostgreSQL users pay for the import

        with self.db.begin() as conn:
            hold_history(conn)
            raw = conn.connection.driver_connection
            assert raw is not None
            try:
                with raw.cursor() as cursor:
                    for table, columns, types, rows in (
                        (events.name, EVENT_COLUMNS, EVENT_PG_TYPES, event_rows),
                        (event_tags.name, TAG_COLUMNS, TAG_PG_TYPES, tag_rows),
                    ):
                        if rows:
                            # Binary: the server parses nothing; psycopg's C dumpers pack the rows.
                            sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
                            with cursor.copy(sql) as copy:
                                copy.set_types(types)
                                for row in rows:
                                    copy.write_row(row)
            except psycopg.errors.UniqueViolation as exc:
                raise _KnownIds from exc
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(f"database unavailable: {str(exc).strip().splitlines()[0]}") from exc
            except psycopg.Error as exc:
                raise StoreError(f"database error: {str(exc).strip().splitlines()[0]}") from exc
            long_tasks = link_runs(conn, batch)
            if also is not None:
                also(conn)
        return _Recorded(len(batch), long_tasks)

    def _insert(
        self, batch: Sequence[AccessEvent], event_rows: list[Row], tag_rows: list[Row], also: Also | None
    ) -> _Recorded:
        """SQLite, and PostgreSQL for a batch that repeats ids: skip the ids already recorded."""
        long_tasks: set[RunKey] = set()
        with self.db.begin() as conn:
            hold_history(conn)
            known = set(
                conn.execute(select(events.c.id).where(events.c.id.in_([r[0] for r in event_rows]))).scalars()
            )
            new_rows = [dict(zip(EVENT_COLUMNS, r, strict=True)) for r in event_rows if r[0] not in known]
            if new_rows:
                conn.execute(insert(events), new_rows)
                fresh = [dict(zip(TAG_COLUMNS, r, strict=True)) for r in tag_rows if r[0] not in known]
                if fresh:
                    conn.execute(insert(event_tags), fresh)
                long_tasks = link_runs(conn, [e for e in batch if e.id not in known])
            if also is not None:
                also(conn)
        return _Recorded(len(new_rows), long_tasks)

    # ------------------------------------------------------------ reading events back

    def get(self, event_id: str) -> AccessEvent:
        with self.db.read() as conn:
            row = conn.execute(select(events).where(events.c.id == event_id)).first()
        if row is None:
            raise NotFound(f"no access event with id {event_id!r}")
        return event_from_row(row)

    def iter_events(self, *, since: datetime | None = None, batch: int = 1000) -> Iterator[AccessEvent]:
        """Every event oldest first (e.g. to replay into OpenLineage), in pages by (at, id)."""
        after: tuple[datetime, str] | None = None
        while True:
            stmt = select(events).order_by(events.c.at, events.c.id).limit(batch)
            if since is not None:
                stmt = stmt.where(events.c.at >= since)
            if after is not None:
                stmt = stmt.where(
                    (events.c.at > after[0]) | ((events.c.at == after[0]) & (events.c.id > after[1]))
                )
            with self.db.read() as conn:
                rows = conn.execute(stmt).all()
            yield from (event_from_row(r) for r in rows)
            if len(rows) < batch:
                return
            after = (rows[-1].at, rows[-1].id)

    def count(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())

    # ------------------------------------------------------------ retention

    def purge(
        self,
        *,
        before: datetime,
        gatekeeper: Gatekeeper,
        actor: Actor,
        retention: str = "",
        batch_size: int = 5000,
    ) -> int:
        """Delete events older than ``before`` in batches, each its own short transaction.

        The gate audit log gets a ``lineage.retention_purged`` entry (count, cutoff) FIRST: if
        it cannot be written nothing is deleted, so no purge ever goes unaudited."""
        with self.db.read() as conn:
            due = int(
                conn.execute(select(func.count()).select_from(events).where(_older(before))).scalar_one()
            )
        gatekeeper.audit.record(
            RETENTION_EVENT,
            actor=actor,
            payload={"count": due, "cutoff": before.isoformat(), "retention": retention},
        )
        deleted = 0
        while True:
            done = self.db.retrying(lambda: self._purge_batch(before, batch_size))
            deleted += done
            if done < batch_size:
                break
        with self.db.begin() as conn:
            hold_history(conn)  # no task starts keeping rows from events this purge just deleted
            conn.execute(delete(edges).where(edges.c.last_seen_at < before))
            # a task's dataset whose newest event went: the events left would not give it either
            # (no index on last_at: a purge is rare, the table far smaller than the events)
            conn.execute(delete(task_datasets).where(task_datasets.c.last_at < before))
        log.info("lineage retention: purged %d events before %s", deleted, before.isoformat())
        return deleted

    def _purge_batch(self, before: datetime, batch_size: int) -> int:
        with self.db.begin() as conn:
            # Opens the append-only triggers' door for rows older than the cutoff, for this
            # transaction only: the row is gone again before commit.
            conn.execute(insert(purge).values(id=1, cutoff=before))
            ids = list(conn.execute(select(events.c.id).where(_older(before)).limit(batch_size)).scalars())
            if ids:
                conn.execute(delete(event_tags).where(event_tags.c.event_id.in_(ids)))
                conn.execute(delete(events).where(events.c.id.in_(ids)))
            conn.execute(delete(purge))
        return len(ids)

    # ------------------------------------------------------------ governance queries

    def accessed(
        self, dataset: str | DatasetRef, *, since: datetime | None = None, limit: int = 1000
    ) -> AccessRows:
        """Who accessed a dataset, newest first: by whom, in which run, how, under which approval."""
        with self.db.read() as conn:
            return _queries.accessed(conn, dataset, since=since, limit=limit)

    def run(self, run_id: str, *, orchestrator: str | None = None, limit: int = 1000) -> AccessRows:
        """Everything one run touched, in order."""
        with self.db.read() as conn:
            return _queries.run(conn, run_id, orchestrator=orchestrator, limit=limit)

    def gate(self, gate_id: str, *, limit: int = 1000) -> AccessRows:
        """Everything done under one gate's approval, in order."""
        with self.db.read() as conn:
            return _queries.gate(conn, gate_id, limit=limit)

    def exports(self, tag: str, *, since: datetime | None = None, limit: int = 1000) -> AccessRows:
        """Exports of datasets carrying ``tag`` (dataset or column tag), newest first."""
        with self.db.read() as conn:
            return _queries.exports(conn, tag, since=since, limit=limit)

    def violations(
        self, *, since: datetime | None = None, gate_id: str | None = None, limit: int = 1000
    ) -> _queries.Violations:
        """Out-of-scope findings (``lineage._scope``), newest first."""
        with self.db.read() as conn:
            return _queries.violations(conn, since=since, gate_id=gate_id, limit=limit)

    def graph(
        self,
        dataset: str | DatasetRef,
        *,
        direction: Literal["upstream", "downstream", "both"] = "both",
        depth: int = 3,
    ) -> LineageGraph:
        """Datasets upstream and/or downstream of ``dataset``, up to ``depth`` hops."""
        with self.db.read() as conn:
            return _queries.graph(conn, dataset, direction=direction, depth=depth)
