"""What adversary O (an operator with database access) does to the audit trail, as plain SQL on
the real database: lift the append-only triggers the way the table owner can, rewrite entries
and recompute every hash, so the chain itself is self-consistent again."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, insert, select, text

from gate_core._audit import GENESIS_HASH, chain_hash
from gate_core._models import canonical_json
from gate_core._store._schema import audit_log

SQLITE_TRIGGERS = (
    "gh_audit_log_no_update",
    "gh_audit_log_no_delete",
    "gh_audit_checkpoints_no_update",
    "gh_audit_checkpoints_no_delete",
    "gh_audit_tree_no_update",
    "gh_audit_tree_no_delete",
    "gh_audit_cosignatures_no_update",
    "gh_audit_cosignatures_no_delete",
)
APPEND_ONLY = ("gh_audit_log", "gh_audit_checkpoints", "gh_audit_tree", "gh_audit_cosignatures")

Body = dict[str, Any]
HEAD_UPDATE = text("UPDATE gh_audit_head SET seq = :s, hash = :h WHERE id = 1")


def run_sql(engine: Engine, *statements: str, **params: object) -> None:
    """Run statements with the append-only triggers out of the way: on PostgreSQL as the table
    owner may (``ALTER TABLE … DISABLE TRIGGER USER``), on SQLite by dropping them."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table in APPEND_ONLY:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            for name in SQLITE_TRIGGERS:
                conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        for statement in statements:
            conn.execute(text(statement), params)
        if conn.dialect.name == "postgresql":
            for table in APPEND_ONLY:
                conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


def bodies(engine: Engine) -> list[Body]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT body FROM gh_audit_log ORDER BY seq")).all()
    return [json.loads(row[0]) for row in rows]


def rewrite(engine: Engine, edit: Callable[[list[Body]], list[Body]]) -> None:
    """Replace the whole log with ``edit(bodies)``, renumbered and rechained from genesis."""
    new = edit(bodies(engine))
    with engine.connect() as conn:
        ats = {int(seq): at for seq, at in conn.execute(select(audit_log.c.seq, audit_log.c.at)).all()}
    rows = []
    prev = GENESIS_HASH
    for seq, body in enumerate(new, start=1):
        at = ats[body["seq"]]
        body = {**body, "seq": seq}
        text_body = canonical_json(body)
        digest = chain_hash(prev, text_body)
        rows.append(
            {
                "seq": seq,
                "at": at,
                "event": body["event"],
                "actor": body["actor"]["principal_id"],
                "gate_id": body["gate"],
                "body": text_body,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    run_sql(engine, "DELETE FROM gh_audit_log")
    with engine.begin() as conn:
        if rows:
            conn.execute(insert(audit_log), rows)
        conn.execute(
            text("UPDATE gh_audit_head SET seq = :s, hash = :h WHERE id = 1"), {"s": len(rows), "h": prev}
        )


def cut_tail(engine: Engine, keep: int) -> None:
    with engine.connect() as conn:
        head = conn.execute(text("SELECT hash FROM gh_audit_log WHERE seq = :k"), {"k": keep}).scalar_one()
    run_sql(engine, "DELETE FROM gh_audit_log WHERE seq > :keep", keep=keep)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE gh_audit_head SET seq = :s, hash = :h WHERE id = 1"), {"s": keep, "h": head}
        )
