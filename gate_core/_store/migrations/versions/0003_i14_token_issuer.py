"""API tokens record the channel their issuer used and, for service tokens, the pipelines they
may open gates for (issue 14: credentials belong to their owner).

Tokens that exist already keep ``created_via`` NULL: their issuer was never authenticated (any
``$USER`` could mint one), and a decision with one whose principal did not issue it is refused.

Revision ID: 0003_i14_token_issuer
Revises: 0002_api_tokens
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_i14_token_issuer"
down_revision = "0002_api_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gh_api_tokens") as batch:
        batch.add_column(sa.Column("created_via", sa.String(32)))
        batch.add_column(sa.Column("pipelines", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("gh_api_tokens") as batch:
        batch.drop_column("pipelines")
        batch.drop_column("created_via")
