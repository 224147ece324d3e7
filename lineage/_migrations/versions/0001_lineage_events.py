"""Lineage: access events, their tags, dataset edges, append-only triggers with a retention door.

Revision ID: 0001_lineage_events
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gate_core.sql import UtcDateTime

revision = "0001_lineage_events"
down_revision = None
branch_labels = None
depends_on = None

REFUSED = "lineage is append-only (see: gatehouse lineage purge)"

# A DELETE passes only inside a purge transaction, and only for rows older than its cutoff.
_PG_GUARD = """
CREATE OR REPLACE FUNCTION gh_lineage_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF EXISTS (SELECT 1 FROM gh_lineage_purge WHERE OLD.at < cutoff) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'gatehouse: % on % refused: lineage is append-only (see: gatehouse lineage purge)',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def _append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION gh_lineage_guard()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION gh_lineage_guard()"
        )
        return
    message = f"gatehouse: %s on {table} refused: {REFUSED}"
    op.execute(
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{message % 'UPDATE'}'); END"
    )
    when = "WHEN NOT EXISTS (SELECT 1 FROM gh_lineage_purge WHERE OLD.at < cutoff)"
    op.execute(
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} {when} "
        f"BEGIN SELECT RAISE(ABORT, '{message % 'DELETE'}'); END"
    )


def upgrade() -> None:
    op.create_table(
        "gh_lineage_events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("dataset", sa.String(1600), nullable=False),
        sa.Column("namespace", sa.String(500), nullable=False),
        sa.Column("name", sa.String(1000), nullable=False),
        sa.Column("dataset_tags", sa.Text, nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("columns", sa.Text, nullable=False),
        sa.Column("row_count", sa.BigInteger),
        sa.Column("bytes", sa.BigInteger),
        sa.Column("fingerprint", sa.String(140)),
        sa.Column("orchestrator", sa.String(100), nullable=False),
        sa.Column("pipeline", sa.String(500), nullable=False),
        sa.Column("run_id", sa.String(500), nullable=False),
        sa.Column("task_id", sa.String(500), nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("run_url", sa.String(2000)),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("submitted_by", sa.String(200)),
        sa.Column("gate_id", sa.String(40)),
        sa.PrimaryKeyConstraint("id", name="pk_gh_lineage_events"),
    )
    op.create_index("ix_gh_lineage_events_dataset_at", "gh_lineage_events", ["dataset", "at"])
    op.create_index("ix_gh_lineage_events_run", "gh_lineage_events", ["run_id", "orchestrator"])
    gated = sa.text("gate_id IS NOT NULL")
    op.create_index(
        "ix_gh_lineage_events_gate_id",
        "gh_lineage_events",
        ["gate_id"],
        postgresql_where=gated,
        sqlite_where=gated,
    )
    op.create_index("ix_gh_lineage_events_operation_at", "gh_lineage_events", ["operation", "at"])

    op.create_table(
        "gh_lineage_event_tags",
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("tag", sa.String(100), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("event_id", "tag", name="pk_gh_lineage_event_tags"),
    )
    op.create_index("ix_gh_lineage_event_tags_tag", "gh_lineage_event_tags", ["tag", "operation", "at"])

    op.create_table(
        "gh_lineage_edges",
        sa.Column("upstream", sa.String(1600), nullable=False),
        sa.Column("downstream", sa.String(1600), nullable=False),
        sa.Column("first_seen_at", UtcDateTime, nullable=False),
        sa.Column("last_seen_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("upstream", "downstream", name="pk_gh_lineage_edges"),
    )
    op.create_index("ix_gh_lineage_edges_downstream", "gh_lineage_edges", ["downstream", "upstream"])
    op.create_index("ix_gh_lineage_edges_last_seen_at", "gh_lineage_edges", ["last_seen_at"])

    op.create_table(
        "gh_lineage_purge",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("cutoff", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gh_lineage_purge"),
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GUARD)
    for table in ("gh_lineage_events", "gh_lineage_event_tags"):
        _append_only(table)


def downgrade() -> None:
    for table in ("gh_lineage_purge", "gh_lineage_edges", "gh_lineage_event_tags", "gh_lineage_events"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS gh_lineage_guard()")
