"""IdP subject links: the IdP identity (issuer + sub) behind each decision made via oidc, so
``gatehouse show``, the console and the API name the account that proved it (issue 15).

Revision ID: 0009_i15_decision_subject
Revises: 0008_i18_scim_directory
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_i15_decision_subject"
down_revision = "0008_i18_scim_directory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for every decision before it, and for every decision not made through the IdP
    op.add_column("gh_decisions", sa.Column("issuer", sa.String(500), nullable=True))
    op.add_column("gh_decisions", sa.Column("subject", sa.String(255), nullable=True))


def downgrade() -> None:
    op.drop_column("gh_decisions", "subject")
    op.drop_column("gh_decisions", "issuer")
