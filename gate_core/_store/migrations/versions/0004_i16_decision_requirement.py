"""Multi-group approval: which of a gate's requirements each approval counts toward.

Revision ID: 0004_i16_decision_requirement
Revises: 0003_i14_token_issuer
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_i16_decision_requirement"
down_revision = "0003_i14_token_issuer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for every decision before it, and for gates with a single requirement
    op.add_column("gh_decisions", sa.Column("counts_for", sa.Integer, nullable=True))


def downgrade() -> None:
    op.drop_column("gh_decisions", "counts_for")
