"""API tokens (stored hashed), notification message references, reminder times.

Revision ID: 0002_api_tokens
Revises: 0001_gate_store
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gate_core.sql import UtcDateTime

revision = "0002_api_tokens"
down_revision = "0001_gate_store"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gh_api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("principal_id", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("expires_at", UtcDateTime),
        sa.Column("revoked_at", UtcDateTime),
    )
    op.create_index("ix_gh_api_tokens_principal_id", "gh_api_tokens", ["principal_id"])
    op.create_table(
        "gh_notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("gate_id", sa.String(32), sa.ForeignKey("gh_gates.id"), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("message_ref", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sent_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_gh_notifications_gate_id", "gh_notifications", ["gate_id"])
    with op.batch_alter_table("gh_gates") as batch:
        batch.add_column(sa.Column("remind_at", UtcDateTime))
        batch.add_column(sa.Column("reminded_at", UtcDateTime))
    op.create_index("ix_gh_gates_reminder", "gh_gates", ["status", "remind_at"])


def downgrade() -> None:
    op.drop_index("ix_gh_gates_reminder", "gh_gates")
    with op.batch_alter_table("gh_gates") as batch:
        batch.drop_column("reminded_at")
        batch.drop_column("remind_at")
    op.drop_table("gh_notifications")
    op.drop_table("gh_api_tokens")
