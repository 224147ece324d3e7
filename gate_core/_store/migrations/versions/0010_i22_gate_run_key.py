"""Gates by run: ``gh_gates.run_key``, indexed, so the gates of a run are an index probe (issue 22).

The OpenLineage receiver looks up the gates of every run a batch touches. It used to search each
gate's request JSON for ``"run_id":"…"`` — a scan of every gate per batch, and a search that any
gate's free-form ``parameters`` could answer too (enough of them crowded the real gate out).

The key is the SHA-256 (hex) of orchestrator, pipeline and run id joined by NUL — none of them can
hold NUL — as ``RunContext.key()`` computes it; computed here, not imported: a migration must keep
doing what it did when it was written. Gates opened outside any run (empty run id) get NULL. A
stored request this code cannot read keeps NULL (and is named in the log): one bad row must not
stop every replica from starting.

Revision ID: 0010_i22_gate_run_key
Revises: 0009_i15_decision_subject
"""

from __future__ import annotations

import hashlib
import json
import logging

import sqlalchemy as sa
from alembic import op

revision = "0010_i22_gate_run_key"
down_revision = "0009_i15_decision_subject"
branch_labels = None
depends_on = None

log = logging.getLogger("gatehouse.store.migrations")
_ROWS_PER_UPDATE = 2000


def _run_key(request: str) -> str | None:
    run = json.loads(request).get("run") or {}
    if not run.get("run_id"):
        return None
    joined = f"{run.get('orchestrator', 'local')}\x00{run.get('pipeline', '')}\x00{run['run_id']}"
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def upgrade() -> None:
    op.add_column("gh_gates", sa.Column("run_key", sa.String(64), nullable=True))
    gates = sa.table("gh_gates", sa.column("id", sa.String), sa.column("request", sa.Text))
    keyed = sa.table("gh_gates", sa.column("id", sa.String), sa.column("run_key", sa.String))
    bind = op.get_bind()
    # streamed (a server-side cursor on PostgreSQL): the statement's option, not the connection's
    listed = sa.select(gates.c.id, gates.c.request).order_by(gates.c.id)
    result = bind.execute(listed.execution_options(stream_results=True, yield_per=_ROWS_PER_UPDATE))
    update = sa.update(keyed).where(keyed.c.id == sa.bindparam("gate_id")).values(run_key=sa.bindparam("key"))
    for rows in result.partitions():
        found = []
        for gate_id, request in rows:
            try:
                key = _run_key(request)
            except (ValueError, TypeError, AttributeError, KeyError):
                log.error("gate %s: stored request is not readable JSON; its run_key stays NULL", gate_id)
                continue
            if key is not None:
                found.append({"gate_id": gate_id, "key": key})
        if found:
            bind.execute(update, found)
    op.create_index("ix_gh_gates_run_key", "gh_gates", ["run_key"])  # after the backfill: built once


def downgrade() -> None:
    op.drop_index("ix_gh_gates_run_key", table_name="gh_gates")
    op.drop_column("gh_gates", "run_key")
