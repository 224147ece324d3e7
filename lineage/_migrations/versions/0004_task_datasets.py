"""Lineage: what each task of a run read, wrote and exported, and when last — kept as events arrive.

Deriving a batch's edges read every earlier event of each task the batch touched, so recording
cost grew with a task's history (a long-running task's thousandth event read the 999 before it).
This table holds one row per (task, dataset, operation) with its newest time: deriving reads those
rows instead, the same for the first event of a task and the millionth. It is filled here from the
events already recorded, so edges derived after the upgrade are the ones the events would give.

The task is one fixed-width key, the sha256 (hex) of run id, orchestrator and task id joined by
NUL (none of them can hold NUL: lineage._models refuses it): the three whole, next to a dataset
name, would not fit a PostgreSQL btree entry (see 0003). The key is computed here, not imported:
a migration must keep doing what it did when it was written.

Revision ID: 0004_task_datasets
Revises: 0003_events_run_task_index
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

from gate_core.sql import UtcDateTime

revision = "0004_task_datasets"
down_revision = "0003_events_run_task_index"
branch_labels = None
depends_on = None

_ROWS_PER_INSERT = 5000


def _task_key(run_id: str, orchestrator: str, task_id: str) -> str:
    return hashlib.sha256(f"{run_id}\x00{orchestrator}\x00{task_id}".encode()).hexdigest()


def upgrade() -> None:
    task_datasets = op.create_table(
        "gh_lineage_task_datasets",
        sa.Column("task_key", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(1600), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("last_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("task_key", "dataset", "operation", name="pk_gh_lineage_task_datasets"),
    )
    assert task_datasets is not None
    events = sa.table(
        "gh_lineage_events",
        sa.column("run_id", sa.String),
        sa.column("orchestrator", sa.String),
        sa.column("task_id", sa.String),
        sa.column("dataset", sa.String),
        sa.column("operation", sa.String),
        sa.column("at", UtcDateTime),
    )
    # what deriving edges ever read: events with a run id, and not deletes
    grouped = (
        sa.select(
            events.c.run_id,
            events.c.orchestrator,
            events.c.task_id,
            events.c.dataset,
            events.c.operation,
            sa.func.max(events.c.at).label("last_at"),
        )
        .where(events.c.run_id != "", events.c.operation.in_(["read", "write", "export"]))
        .group_by(
            events.c.run_id, events.c.orchestrator, events.c.task_id, events.c.dataset, events.c.operation
        )
    )
    bind = op.get_bind()
    # streamed (a server-side cursor on PostgreSQL): the statement's option, not the connection's,
    # which would turn the inserts and Alembic's own version update into cursors too
    result = bind.execute(grouped.execution_options(stream_results=True, yield_per=_ROWS_PER_INSERT))
    for rows in result.partitions():
        bind.execute(
            sa.insert(task_datasets),
            [
                {
                    "task_key": _task_key(r.run_id, r.orchestrator, r.task_id),
                    "dataset": r.dataset,
                    "operation": r.operation,
                    "last_at": r.last_at,
                }
                for r in rows
            ],
        )


def downgrade() -> None:
    op.drop_table("gh_lineage_task_datasets")
