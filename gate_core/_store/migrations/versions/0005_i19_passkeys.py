"""Passkeys registered to sign decisions (issue 19); the audit log carries each one too.

Revision ID: 0005_i19_passkeys
Revises: 0004_i16_decision_requirement
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gate_core.sql import UtcDateTime

revision = "0005_i19_passkeys"
down_revision = "0004_i16_decision_requirement"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gh_passkeys",
        sa.Column("credential_id", sa.String(1400), primary_key=True),
        sa.Column("principal_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False),
        sa.Column("rp_id", sa.String(253), nullable=False),
        sa.Column("origin", sa.String(500), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("removed_at", UtcDateTime),
    )
    op.create_index("ix_gh_passkeys_principal_id", "gh_passkeys", ["principal_id"])
    # which passkey signed a decision (NULL: unsigned, and every decision before this migration)
    op.add_column("gh_decisions", sa.Column("passkey", sa.String(1400), nullable=True))


def downgrade() -> None:
    op.drop_column("gh_decisions", "passkey")
    op.drop_index("ix_gh_passkeys_principal_id", "gh_passkeys")
    op.drop_table("gh_passkeys")
