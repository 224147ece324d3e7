"""The stored RFC 9162 tree (gh_audit_tree) and signed Merkle roots on checkpoints; backfills the
tree of the log as it stands.

Revision ID: 0006_i17p_merkle_nodes
Revises: 0005_i19_passkeys

The backfill hashes every existing entry once (streamed in batches of 10,000, O(log n) memory)
and stores the perfect subtrees from level 4 up, exactly as the signer will from now on. These
rows are as untrusted as any other: the first checkpoint signed after the upgrade recomputes the
tree from the chain-checked entries (checkpoints before it carry no root) and every proof is
checked against a signed root.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gate_core._merkle import NODE_LEVEL, Frontier, leaf_hash

revision = "0006_i17p_merkle_nodes"
down_revision = "0005_i19_passkeys"
branch_labels = None
depends_on = None

_BATCH = 10_000


def upgrade() -> None:
    op.add_column("gh_audit_checkpoints", sa.Column("root", sa.String(64), nullable=True))
    tree = op.create_table(
        "gh_audit_tree",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column(
            "idx", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False
        ),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sqlite_with_rowid=False,
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # gh_refuse_audit_change() is 0001's: the tree is append-only like the log it covers
        op.execute(
            "CREATE TRIGGER gh_audit_tree_append_only BEFORE UPDATE OR DELETE ON gh_audit_tree "
            "FOR EACH ROW EXECUTE FUNCTION gh_refuse_audit_change()"
        )
        op.execute(
            "CREATE TRIGGER gh_audit_tree_no_truncate BEFORE TRUNCATE ON gh_audit_tree "
            "FOR EACH STATEMENT EXECUTE FUNCTION gh_refuse_audit_change()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER gh_audit_tree_no_{verb.lower()} BEFORE {verb} ON gh_audit_tree "
                f"BEGIN SELECT RAISE(ABORT, 'gatehouse: {verb} on gh_audit_tree refused: "
                "the audit trail is append-only'); END"
            )
    _backfill(bind, tree)


def _backfill(bind: sa.Connection, tree: sa.Table) -> None:
    frontier = Frontier()
    after = 0
    select = sa.text("SELECT seq, body FROM gh_audit_log WHERE seq > :after ORDER BY seq LIMIT :n")
    while rows := bind.execute(select, {"after": after, "n": _BATCH}).all():
        nodes = []
        for seq, body in rows:
            if seq != frontier.size + 1:
                # a gap is for `gatehouse audit verify` to report; the tree stops where the log breaks
                return
            nodes += [
                {"level": level, "idx": index, "hash": digest}
                for level, index, digest in frontier.append(leaf_hash(str(body).encode()))
                if level >= NODE_LEVEL
            ]
            after = seq
        if nodes:
            bind.execute(sa.insert(tree), nodes)


def downgrade() -> None:
    op.drop_table("gh_audit_tree")
    op.drop_column("gh_audit_checkpoints", "root")
