"""Gate store: gates, decisions, the hash-chained audit log and its checkpoints.

Revision ID: 0001_gate_store
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gate_core.sql import UtcDateTime

revision = "0001_gate_store"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64

_PG_APPEND_ONLY = """
CREATE OR REPLACE FUNCTION gh_refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'gatehouse: % on % refused: the audit trail is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def _append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION gh_refuse_audit_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION gh_refuse_audit_change()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'gatehouse: {verb} on {table} refused: "
                "the audit trail is append-only'); END"
            )


def upgrade() -> None:
    op.create_table(
        "gh_gates",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("idempotency_key", sa.String(500)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target", sa.String(1000), nullable=False),
        sa.Column("environment", sa.String(100), nullable=False),
        sa.Column("requester", sa.String(200), nullable=False),
        sa.Column("submitted_by", sa.String(200), nullable=False),
        sa.Column("binding_hash", sa.String(64), nullable=False),
        sa.Column("policy_hash", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("required_approvals", sa.Integer, nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("decided_at", UtcDateTime),
        sa.Column("decided_by", sa.Text, nullable=False),
        sa.Column("consumed_at", UtcDateTime),
        sa.UniqueConstraint("idempotency_key", name="uq_gh_gates_idempotency_key"),
    )
    op.create_index("ix_gh_gates_status", "gh_gates", ["status"])
    op.create_index("ix_gh_gates_action", "gh_gates", ["action"])
    op.create_index("ix_gh_gates_requester", "gh_gates", ["requester"])
    op.create_index("ix_gh_gates_created_at", "gh_gates", ["created_at"])
    op.create_index("ix_gh_gates_pending_expiry", "gh_gates", ["status", "expires_at"])
    op.create_index("ix_gh_gates_action_target", "gh_gates", ["action", "target", "decided_at"])

    op.create_table(
        "gh_gate_datasets",
        sa.Column("gate_id", sa.String(32), sa.ForeignKey("gh_gates.id"), primary_key=True),
        sa.Column("qualified_name", sa.String(1600), primary_key=True),
    )
    op.create_index("ix_gh_gate_datasets_name", "gh_gate_datasets", ["qualified_name"])

    op.create_table(
        "gh_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("gate_id", sa.String(32), sa.ForeignKey("gh_gates.id"), nullable=False),
        sa.Column("principal_id", sa.String(200), nullable=False),
        sa.Column("person_key", sa.String(400), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("via", sa.String(32), nullable=False),
        sa.Column("break_glass", sa.Boolean, nullable=False),
        sa.UniqueConstraint("gate_id", "person_key", name="uq_gh_decisions_person"),
        sa.UniqueConstraint("gate_id", "principal_id", name="uq_gh_decisions_principal"),
    )
    op.create_index("ix_gh_decisions_gate_id", "gh_decisions", ["gate_id"])

    op.create_table(
        "gh_audit_log",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False
        ),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("gate_id", sa.String(32)),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_gh_audit_log_at", "gh_audit_log", ["at"])
    op.create_index("ix_gh_audit_log_event", "gh_audit_log", ["event"])
    op.create_index("ix_gh_audit_log_gate_id", "gh_audit_log", ["gate_id"])

    head = op.create_table(
        "gh_audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])

    op.create_table(
        "gh_audit_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
    )
    op.create_index("ix_gh_audit_checkpoints_size", "gh_audit_checkpoints", ["size"])

    op.create_table(
        "gh_config_versions",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(1000), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("loaded_at", UtcDateTime, nullable=False),
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_APPEND_ONLY)
    for table in ("gh_audit_log", "gh_audit_checkpoints"):
        _append_only(table)


def downgrade() -> None:
    for table in (
        "gh_config_versions",
        "gh_audit_checkpoints",
        "gh_audit_head",
        "gh_audit_log",
        "gh_decisions",
        "gh_gate_datasets",
        "gh_gates",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS gh_refuse_audit_change()")
