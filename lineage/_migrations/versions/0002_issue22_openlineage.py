"""Lineage: OpenLineage runs mapped to orchestrator runs, column-lineage edges, scope violations.

Revision ID: 0002_issue22_openlineage
Revises: 0001_lineage_events
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gate_core.sql import UtcDateTime

revision = "0002_issue22_openlineage"
down_revision = "0001_lineage_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gh_lineage_ol_runs",
        sa.Column("ol_run_id", sa.String(64), nullable=False),
        sa.Column("orchestrator", sa.String(100), nullable=False),
        sa.Column("pipeline", sa.String(500), nullable=False),
        sa.Column("run_id", sa.String(500), nullable=False),
        sa.Column("task_id", sa.String(500), nullable=False),
        sa.Column("seen_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("ol_run_id", name="pk_gh_lineage_ol_runs"),
    )
    op.create_table(
        "gh_lineage_column_edges",
        sa.Column("downstream", sa.String(1600), nullable=False),
        sa.Column("downstream_field", sa.String(500), nullable=False),
        sa.Column("upstream", sa.String(1600), nullable=False),
        sa.Column("upstream_field", sa.String(500), nullable=False),
        sa.Column("first_seen_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint(
            "downstream", "downstream_field", "upstream", "upstream_field", name="pk_gh_lineage_column_edges"
        ),
    )
    op.create_table(
        "gh_lineage_violations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("gate_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("dataset", sa.String(1600), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("orchestrator", sa.String(100), nullable=False),
        sa.Column("pipeline", sa.String(500), nullable=False),
        sa.Column("run_id", sa.String(500), nullable=False),
        sa.Column("task_id", sa.String(500), nullable=False),
        sa.Column("accessed_at", UtcDateTime, nullable=False),
        sa.Column("detail", sa.String(1000), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gh_lineage_violations"),
    )
    op.create_index("ix_gh_lineage_violations_at", "gh_lineage_violations", ["at"])
    op.create_index("ix_gh_lineage_violations_gate_id", "gh_lineage_violations", ["gate_id"])


def downgrade() -> None:
    for table in ("gh_lineage_violations", "gh_lineage_column_edges", "gh_lineage_ol_runs"):
        op.drop_table(table)
