"""Lineage: the run index also narrows by task, so deriving a task's edges reads that task's rows.

Recording derives edges per (run, orchestrator, task) from what that task accessed so far; with
the index on (run_id, orchestrator) alone it read every row of the run — a DAG run with 20 tasks
and thousands of accesses was read in full for each event of one of its tasks. The task enters
the key as its first 40 characters: a PostgreSQL btree entry holds at most 2704 bytes, and
run_id (500) + orchestrator (100) + the whole task_id (500) could pass that in 4-byte UTF-8; the
prefix keeps the worst case below it. The new index serves every query the old one served (same
leading columns), so the old one goes.

Revision ID: 0003_events_run_task_index
Revises: 0002_issue22_openlineage
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_events_run_task_index"
down_revision = "0002_issue22_openlineage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_gh_lineage_events_run_task",
        "gh_lineage_events",
        ["run_id", "orchestrator", sa.text("substr(task_id, 1, 40)")],
    )
    op.drop_index("ix_gh_lineage_events_run", table_name="gh_lineage_events")


def downgrade() -> None:
    op.create_index("ix_gh_lineage_events_run", "gh_lineage_events", ["run_id", "orchestrator"])
    op.drop_index("ix_gh_lineage_events_run_task", table_name="gh_lineage_events")
