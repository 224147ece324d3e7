"""SQL adapter of the provisioned directory's change log (``DirectoryChanges``), and the one
place that writes it: ``commit`` appends versions and their audit events in one transaction.

Writers serialise on the audit chain's head row (locked first, as every audited write does), so
two SCIM requests on two replicas never both build on the same version: each reads the versions
the other committed before computing its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from gate_core._audit import AuditDraft, Event
from gate_core._models import Actor
from gate_core._store._schema import api_tokens, audit_head, directory_changes
from gate_core._store._sql import SqlStore
from gate_core.identity import canonical_identity
from gate_core.identity._provisioned import DirectoryChange, ProvisionedDirectory


@dataclass
class DirectoryPlan:
    """What one write does: the versions to add, their audit events, and the principals whose
    API tokens end with it (people who left)."""

    changes: list[DirectoryChange] = field(default_factory=list)
    events: list[AuditDraft] = field(default_factory=list)
    revoke_tokens_of: list[str] = field(default_factory=list)
    actor: Actor | None = None  # who revokes them (the SCIM credential's owner)


# Computed from the state as of the newest version, inside the write's transaction.
Planner = Callable[[ProvisionedDirectory], DirectoryPlan]


class SqlDirectoryChanges:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def changes_after(self, version: int, *, until: datetime | None = None) -> list[DirectoryChange]:
        query = select(directory_changes).where(directory_changes.c.version > version)
        if until is not None:
            query = query.where(directory_changes.c.at <= until)
        with self.store._read() as conn:
            rows = conn.execute(query.order_by(directory_changes.c.version)).all()
        return [_change(row) for row in rows]

    def commit(self, state: ProvisionedDirectory, plan: Planner) -> ProvisionedDirectory:
        """Bring a copy of ``state`` up to the newest version under the write lock, let ``plan``
        compute the changes (it may raise to refuse), store them with their audit events, and
        return the state they lead to."""

        def work() -> ProvisionedDirectory:
            current = state.copy()
            with self.store._begin() as conn:
                conn.execute(select(audit_head.c.seq).where(audit_head.c.id == 1).with_for_update()).one()
                current.apply(_after(conn, current.version))
                planned = plan(current)
                if planned.changes:
                    conn.execute(insert(directory_changes), [_row(c) for c in planned.changes])
                    self.store._append(conn, [*planned.events, *_revoke(conn, planned)])
                    current.apply(planned.changes)
            return current

        new_state: ProvisionedDirectory = self.store._retrying(work)
        return new_state


def _revoke(conn: Connection, plan: DirectoryPlan) -> list[AuditDraft]:
    """Revoke every active token of the people who left; one ``token.revoked`` event each."""
    if not plan.revoke_tokens_of or plan.actor is None or not plan.changes:
        return []
    at = plan.changes[-1].at
    leaving = {canonical_identity(name) for name in plan.revoke_tokens_of}
    rows = conn.execute(
        select(api_tokens.c.id, api_tokens.c.principal_id).where(api_tokens.c.revoked_at.is_(None))
    ).all()
    revoked = [row for row in rows if canonical_identity(row.principal_id) in leaving]
    if revoked:
        ids = [row.id for row in revoked]
        conn.execute(update(api_tokens).where(api_tokens.c.id.in_(ids)).values(revoked_at=at))
    return [
        AuditDraft(
            Event.TOKEN_REVOKED,
            at,
            plan.actor,
            None,
            {
                "token_id": row.id,
                "principal": row.principal_id,
                "reason": "left the directory",
                "channel": "scim",
            },
        )
        for row in revoked
    ]


def _after(conn: Connection, version: int) -> Sequence[DirectoryChange]:
    rows = conn.execute(
        select(directory_changes)
        .where(directory_changes.c.version > version)
        .order_by(directory_changes.c.version)
    ).all()
    return [_change(row) for row in rows]


def _change(row: Any) -> DirectoryChange:
    return DirectoryChange(
        version=int(row.version),
        at=row.at,
        kind=row.kind,
        resource_id=row.resource_id,
        resource=row.resource,
        actor=row.actor,
    )


def _row(change: DirectoryChange) -> dict[str, Any]:
    return {
        "version": change.version,
        "at": change.at,
        "kind": change.kind,
        "resource_id": change.resource_id,
        "resource": dict(change.resource) if change.resource is not None else None,
        "actor": change.actor,
    }
