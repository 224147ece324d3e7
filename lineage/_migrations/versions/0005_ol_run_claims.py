"""Lineage: an OpenLineage runId may be claimed by more than one orchestrator run, and every claim
is kept (``gh_lineage_ol_runs`` keyed by runId and the claimed run).

Airflow's OpenLineage provider derives a task run's runId from dag id, task id, try number,
logical date and map index: for a scheduled run anyone can compute it in advance. With one row per
runId, whoever posted it first decided which run it belonged to — and so which run the Spark or
dbt jobs naming it as their parent belonged to: a decoy posted first took them out of the gated
run's scope check. Now each claim is a row; an event's own orchestrator facets decide its own
run, and a child is checked against its parent's claims (those by its own sender, the
``claimed_by`` principal, if any; else every one): see ``lineage._ol_claims``.

``run_key`` is the SHA-256 (hex) of orchestrator, pipeline, run id and task id joined by NUL —
as ``lineage._ol_claims.claim_key`` computes it; computed here, not imported: a migration must
keep doing what it did when it was written. The rows already stored are one claim each.

Revision ID: 0005_ol_run_claims
Revises: 0004_task_datasets
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0005_ol_run_claims"
down_revision = "0004_task_datasets"
branch_labels = None
depends_on = None

_ROWS_PER_UPDATE = 5000


def _key(orchestrator: str, pipeline: str, run_id: str, task_id: str) -> str:
    return hashlib.sha256(f"{orchestrator}\x00{pipeline}\x00{run_id}\x00{task_id}".encode()).hexdigest()


def upgrade() -> None:
    op.add_column("gh_lineage_ol_runs", sa.Column("run_key", sa.String(64), nullable=True))
    # who posted the claim: a child prefers its parent's claims by its own sender ("" before this)
    op.add_column(
        "gh_lineage_ol_runs", sa.Column("claimed_by", sa.String(200), nullable=False, server_default="")
    )
    runs = sa.table(
        "gh_lineage_ol_runs",
        sa.column("ol_run_id", sa.String),
        sa.column("orchestrator", sa.String),
        sa.column("pipeline", sa.String),
        sa.column("run_id", sa.String),
        sa.column("task_id", sa.String),
        sa.column("run_key", sa.String),
    )
    bind = op.get_bind()
    listed = sa.select(runs.c.ol_run_id, runs.c.orchestrator, runs.c.pipeline, runs.c.run_id, runs.c.task_id)
    # streamed (a server-side cursor on PostgreSQL): the statement's option, not the connection's
    result = bind.execute(listed.execution_options(stream_results=True, yield_per=_ROWS_PER_UPDATE))
    update = (
        sa.update(runs).where(runs.c.ol_run_id == sa.bindparam("ol_id")).values(run_key=sa.bindparam("key"))
    )
    for rows in result.partitions():
        bind.execute(update, [{"ol_id": r.ol_run_id, "key": _key(*r[1:])} for r in rows])
    with op.batch_alter_table("gh_lineage_ol_runs") as batch:  # SQLite: the table is rebuilt
        batch.alter_column("run_key", existing_type=sa.String(64), nullable=False)
        batch.drop_constraint("pk_gh_lineage_ol_runs", type_="primary")
        batch.create_primary_key("pk_gh_lineage_ol_runs", ["ol_run_id", "run_key"])


def downgrade() -> None:
    # back to one row per runId: the first claim of each (by when it was seen) stays
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "DELETE FROM gh_lineage_ol_runs WHERE EXISTS (SELECT 1 FROM gh_lineage_ol_runs AS o "
            "WHERE o.ol_run_id = gh_lineage_ol_runs.ol_run_id AND (o.seen_at < gh_lineage_ol_runs.seen_at "
            "OR (o.seen_at = gh_lineage_ol_runs.seen_at AND o.run_key < gh_lineage_ol_runs.run_key)))"
        )
    )
    with op.batch_alter_table("gh_lineage_ol_runs") as batch:
        batch.drop_constraint("pk_gh_lineage_ol_runs", type_="primary")
        batch.create_primary_key("pk_gh_lineage_ol_runs", ["ol_run_id"])
        batch.drop_column("claimed_by")
        batch.drop_column("run_key")
