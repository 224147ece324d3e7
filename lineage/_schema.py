"""Lineage tables, in the gate store's database (prefix ``gh_lineage_``). The migrations in
``_migrations/`` create exactly these (a test compares them).

    gh_lineage_events       one narrow row per access; names, types, counts, hashes — no values
    gh_lineage_event_tags   (event, tag) with the event's operation and time copied in, so
                            "exports of pii since T" is one index range scan on both backends
    gh_lineage_edges        dataset → dataset, derived from runs (what a task read is upstream of
                            what it wrote or exported); a small table, so a depth-5 graph is a
                            recursive CTE over a few index lookups, however many events there are
    gh_lineage_task_datasets  per task of a run: each dataset it read, wrote or exported, and when
                            last; what deriving edges reads, so that recording a batch costs the
                            same however many events its tasks recorded before (a derived index
                            of the events, upserted like the edges)
    gh_lineage_purge        empty except inside a retention purge's own transaction: the
                            append-only triggers let DELETE through only for rows older than the
                            cutoff written there (nothing else ever sees the row: it is removed
                            before commit)

Events and tags are append-only (triggers refuse UPDATE, DELETE outside a purge, and TRUNCATE on
PostgreSQL). Edges are a derived index and are upserted (last_seen_at moves forward).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

from gate_core.sql import UtcDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)
MAX_DATASET_BYTES = 1200  # two of these fit one PostgreSQL btree entry (edges' primary key)


events = Table(
    "gh_lineage_events",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("dataset", String(1600), nullable=False, doc="qualified name NAMESPACE/NAME"),
    Column("namespace", String(500), nullable=False),
    Column("name", String(1000), nullable=False),
    Column("dataset_tags", Text, nullable=False, doc="JSON list of the dataset's own tags"),
    Column("operation", String(16), nullable=False),
    Column("columns", Text, nullable=False, doc="JSON [{name, type, tags}] — never values"),
    Column("row_count", BigInteger),
    Column("bytes", BigInteger),
    Column("fingerprint", String(140)),
    Column("orchestrator", String(100), nullable=False),
    Column("pipeline", String(500), nullable=False),
    Column("run_id", String(500), nullable=False),
    Column("task_id", String(500), nullable=False),
    Column("try_number", Integer, nullable=False),
    Column("run_url", String(2000)),
    Column("actor", String(200), nullable=False),
    Column("submitted_by", String(200)),
    Column("gate_id", String(40)),
    Index("ix_gh_lineage_events_dataset_at", "dataset", "at"),
    # A task's edges read that task's rows (lineage._edges); first 40 characters of the task id:
    # the worst case of the three stays below PostgreSQL's 2704-byte btree entry (migration 0003).
    Index("ix_gh_lineage_events_run_task", "run_id", "orchestrator", text("substr(task_id, 1, 40)")),
    # Partial: most accesses run under no gate, and they need no entry in this index.
    Index(
        "ix_gh_lineage_events_gate_id",
        "gate_id",
        postgresql_where=text("gate_id IS NOT NULL"),
        sqlite_where=text("gate_id IS NOT NULL"),
    ),
    # Also the retention purge's index (one range per operation): no separate index on time.
    Index("ix_gh_lineage_events_operation_at", "operation", "at"),
)

event_tags = Table(
    "gh_lineage_event_tags",
    metadata,
    Column("event_id", String(40), nullable=False),
    Column("tag", String(100), nullable=False),
    Column("operation", String(16), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("event_id", "tag"),
    Index("ix_gh_lineage_event_tags_tag", "tag", "operation", "at"),
)

edges = Table(
    "gh_lineage_edges",
    metadata,
    Column("upstream", String(1600), nullable=False),
    Column("downstream", String(1600), nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("upstream", "downstream"),
    Index("ix_gh_lineage_edges_downstream", "downstream", "upstream"),
    Index("ix_gh_lineage_edges_last_seen_at", "last_seen_at"),
)

task_datasets = Table(
    "gh_lineage_task_datasets",
    metadata,
    # The task as one fixed-width key (lineage._edges.task_key): run id, orchestrator and task id
    # whole would not fit a PostgreSQL btree entry next to the dataset (see migration 0003).
    Column("task_key", String(64), nullable=False, doc="sha256 hex of run id, orchestrator, task id"),
    Column("dataset", String(1600), nullable=False, doc="qualified name NAMESPACE/NAME"),
    Column("operation", String(16), nullable=False, doc="read, write or export"),
    Column("last_at", UtcDateTime, nullable=False, doc="the newest access of the three"),
    PrimaryKeyConstraint("task_key", "dataset", "operation"),
)

purge = Table(
    "gh_lineage_purge",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("cutoff", UtcDateTime, nullable=False),
)

APPEND_ONLY_TABLES = ("gh_lineage_events", "gh_lineage_event_tags")

ol_runs = Table(
    "gh_lineage_ol_runs",
    metadata,
    Column("ol_run_id", String(64), nullable=False, doc="an OpenLineage runId (a UUID)"),
    Column("orchestrator", String(100), nullable=False),
    Column("pipeline", String(500), nullable=False),
    Column("run_id", String(500), nullable=False),
    Column("task_id", String(500), nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
    # one row per claim: runIds can be computed in advance, so a runId may come with several runs
    # (lineage._ol_ingest); the claimed run as one fixed-width key (the four whole would not fit
    # a PostgreSQL btree entry next to the runId)
    Column(
        "run_key", String(64), nullable=False, doc="sha256 hex of orchestrator, pipeline, run id, task id"
    ),
    Column("claimed_by", String(200), nullable=False, server_default="", doc="the sender's principal"),
    PrimaryKeyConstraint("ol_run_id", "run_key"),
)

column_edges = Table(
    "gh_lineage_column_edges",
    metadata,
    Column("downstream", String(1600), nullable=False),
    Column("downstream_field", String(500), nullable=False),
    Column("upstream", String(1600), nullable=False),
    Column("upstream_field", String(500), nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("downstream", "downstream_field", "upstream", "upstream_field"),
)

violations = Table(
    "gh_lineage_violations",
    metadata,
    Column("id", String(40), nullable=False, doc="hash of gate, kind, dataset, operation: one per finding"),
    Column("at", UtcDateTime, nullable=False, doc="when it was found"),
    Column("gate_id", String(40), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("dataset", String(1600), nullable=False),
    Column("operation", String(16), nullable=False),
    Column("tags", Text, nullable=False, doc="JSON list: the tags that made it relevant"),
    Column("orchestrator", String(100), nullable=False),
    Column("pipeline", String(500), nullable=False),
    Column("run_id", String(500), nullable=False),
    Column("task_id", String(500), nullable=False),
    Column("accessed_at", UtcDateTime, nullable=False),
    Column("detail", String(1000), nullable=False),
    PrimaryKeyConstraint("id"),
    Index("ix_gh_lineage_violations_at", "at"),
    Index("ix_gh_lineage_violations_gate_id", "gate_id"),
)
