"""Witness cosignatures on the audit log's checkpoints (C2SP tlog-cosignature), append-only.

Revision ID: 0007_i17w_cosignatures
Revises: 0006_i17p_merkle_nodes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gate_core.sql import UtcDateTime

revision = "0007_i17w_cosignatures"
down_revision = "0006_i17p_merkle_nodes"
branch_labels = None
depends_on = None

TABLE = "gh_audit_cosignatures"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("witness", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("cosigned_at", sa.BigInteger, nullable=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_gh_audit_cosignatures_size", TABLE, ["size"])
    op.create_index("ix_gh_audit_cosignatures_witness", TABLE, ["witness"])
    # Append-only like the log and its checkpoints (gh_refuse_audit_change comes from 0001).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION gh_refuse_audit_change()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION gh_refuse_audit_change()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{verb.lower()} BEFORE {verb} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, 'gatehouse: {verb} on {TABLE} refused: "
                "the audit trail is append-only'); END"
            )


def downgrade() -> None:
    op.drop_table(TABLE)
