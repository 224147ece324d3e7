"""IdP subject links: the IdP identity (issuer + sub) behind each decision made via oidc, so
``gatehouse show``, the console and the API name the account that proved it (issue 15).

Revision ID: 0007_issue15_decision_subject
Revises: 0006_i17p_merkle_nodes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_issue15_decision_subject"
down_revision = "0006_i17p_merkle_nodes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for every decision before it, and for every decision not made through the IdP
    op.add_column("gh_decisions", sa.Column("issuer", sa.String(500), nullable=True))
    op.add_column("gh_decisions", sa.Column("subject", sa.String(255), nullable=True))


def downgrade() -> None:
    op.drop_column("gh_decisions", "subject")
    op.drop_column("gh_decisions", "issuer")
