"""API tokens record the channel their issuer used and, for service tokens, the pipelines they
may open gates for (issue 14: credentials belong to their owner); idempotency keys are scoped to
the submitting principal (the column now holds ``scoped_idempotency_key(submitted_by, key)``, and
existing rows are rewritten so that retries of runs from before the upgrade still find their gate).

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
    from gate_core._store._sql import scoped_idempotency_key

    conn = op.get_bind()
    gates = sa.table("gh_gates", sa.column("id"), sa.column("submitted_by"), sa.column("idempotency_key"))
    rows = conn.execute(
        sa.select(gates.c.id, gates.c.submitted_by, gates.c.idempotency_key).where(
            gates.c.idempotency_key.is_not(None)
        )
    ).all()
    for gate_id, submitted_by, key in rows:
        conn.execute(
            gates.update()
            .where(gates.c.id == gate_id)
            .values(idempotency_key=scoped_idempotency_key(submitted_by, key))
        )


def downgrade() -> None:
    # Scoped keys stay scoped: the original key is still in each gate's stored request, and a
    # downgraded store simply no longer finds gates by their old keys (retries open new gates).
    with op.batch_alter_table("gh_api_tokens") as batch:
        batch.drop_column("pipelines")
        batch.drop_column("created_via")
