"""The provisioned directory (SCIM 2.0): a versioned change log of User and Group resources.

Revision ID: 0008_i18_scim_directory
Revises: 0007_i17w_cosignatures
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gate_core.sql import UtcDateTime

revision = "0008_i18_scim_directory"
down_revision = "0007_i17w_cosignatures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gh_directory_changes",
        sa.Column(
            "version",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("resource", sa.JSON),
        sa.Column("actor", sa.String(200), nullable=False),
    )
    op.create_index("ix_gh_directory_changes_at", "gh_directory_changes", ["at"])
    op.create_index("ix_gh_directory_changes_resource_id", "gh_directory_changes", ["resource_id"])


def downgrade() -> None:
    op.drop_table("gh_directory_changes")
