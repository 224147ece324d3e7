"""PostgreSQL roles: the owner migrates, the service only reads and appends the audit trail.

The table owner can ``ALTER TABLE … DISABLE TRIGGER``, so the append-only triggers hold only
against a role that does not own the tables and is not a member of the role that does. The
service runs as such a role, granted exactly what the store's code paths use (``SERVICE_GRANTS``):
on the audit log, its checkpoints and its Merkle tree only ``SELECT`` and ``INSERT`` — no
``UPDATE``, ``DELETE``, ``TRUNCATE`` or ``TRIGGER`` — so it cannot rewrite history or lift the
triggers even if its credentials leak.

``grant_service_role`` runs as the owner (after every upgrade: a new table needs its grant) and
is idempotent: each table's privileges for the role are revoked, then granted as listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, text

from gate_core._errors import StoreError

# What the service does to each table (grep the store for its statements): nothing else.
SERVICE_GRANTS: Mapping[str, tuple[str, ...]] = {
    "gh_audit_log": ("SELECT", "INSERT"),
    "gh_audit_checkpoints": ("SELECT", "INSERT"),
    "gh_audit_tree": ("SELECT", "INSERT"),
    "gh_audit_cosignatures": ("SELECT", "INSERT"),  # witnesses' cosignatures, kept as received
    "gh_audit_head": ("SELECT", "UPDATE"),  # the chain's head row moves with every append
    "gh_gates": ("SELECT", "INSERT", "UPDATE"),
    "gh_gate_datasets": ("SELECT", "INSERT"),
    "gh_decisions": ("SELECT", "INSERT"),
    "gh_api_tokens": ("SELECT", "INSERT", "UPDATE"),  # revocation sets revoked_at
    "gh_passkeys": ("SELECT", "INSERT", "UPDATE"),  # rename, sign counter, removal sets removed_at
    "gh_notifications": ("SELECT", "INSERT"),
    "gh_config_versions": ("SELECT", "INSERT"),
    "gh_directory_changes": ("SELECT", "INSERT"),  # SCIM: the provisioned directory's versions
    "gh_alembic_version": ("SELECT",),  # opening the store checks the schema is at head
    # lineage (same database, its own history): edges are upserted; events and tags are
    # deleted only by a retention purge, which their triggers confine to rows past the cutoff
    "gh_lineage_events": ("SELECT", "INSERT", "DELETE"),
    "gh_lineage_event_tags": ("SELECT", "INSERT", "DELETE"),
    "gh_lineage_edges": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "gh_lineage_task_datasets": ("SELECT", "INSERT", "UPDATE", "DELETE"),  # upserted, like the edges
    # the OpenLineage receiver's: inserted once (ON CONFLICT DO NOTHING) and read
    "gh_lineage_ol_runs": ("SELECT", "INSERT"),
    "gh_lineage_column_edges": ("SELECT", "INSERT"),
    "gh_lineage_violations": ("SELECT", "INSERT"),
    "gh_lineage_purge": ("SELECT", "INSERT", "DELETE"),
    "gh_lineage_alembic_version": ("SELECT",),
}
AUDIT_TABLES = ("gh_audit_log", "gh_audit_checkpoints", "gh_audit_tree", "gh_audit_cosignatures")


@dataclass(frozen=True, slots=True)
class RolePlan:
    role: str
    owner: str
    statements: list[str]


def plan_service_role(engine: Engine, role: str) -> RolePlan:
    """The statements that give ``role`` exactly ``SERVICE_GRANTS`` on the tables that exist, or
    a StoreError saying why ``role`` must not be the service's (it does not exist, is a
    superuser, owns the tables or is a member of their owner) or why this connection cannot
    grant (it is not the owner)."""
    if engine.dialect.name != "postgresql":
        raise StoreError(
            "database roles are a PostgreSQL matter: SQLite has none (protect the database file and "
            "$GATEHOUSE_HOME with operating-system permissions instead)"
        )
    with engine.connect() as conn:
        me = str(conn.execute(text("SELECT current_user")).scalar_one())
        schema = str(conn.execute(text("SELECT current_schema()")).scalar_one())
        found = conn.execute(
            text(
                "SELECT tablename, tableowner FROM pg_tables "
                "WHERE schemaname = :s AND tablename LIKE 'gh\\_%'"
            ),
            {"s": schema},
        ).all()
        owners = {str(t): str(o) for t, o in found}
        if "gh_audit_log" not in owners:
            raise StoreError("no gate store here: run `gatehouse db upgrade` as the owner first")
        owner = owners["gh_audit_log"]
        row = conn.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).first()
        if row is None:
            raise StoreError(
                f"role {role!r} does not exist: a database administrator creates it first, e.g. "
                f"CREATE ROLE {_quote(role)} LOGIN PASSWORD '…' (granting then needs no CREATEROLE)"
            )
        if row.rolsuper or row.rolbypassrls:
            raise StoreError(
                f"role {role!r} is a superuser: it could lift every trigger; the service needs its own"
            )
        member = conn.execute(
            text("SELECT pg_has_role(:r, :o, 'MEMBER')"), {"r": role, "o": owner}
        ).scalar_one()
        if role == owner or member:
            raise StoreError(
                f"role {role!r} owns the tables (or is a member of their owner {owner!r}): it could "
                "DISABLE TRIGGER and rewrite the audit trail; the service needs a role of its own"
            )
        if (
            me != owner
            and not conn.execute(text("SELECT pg_has_role(:o, 'USAGE')"), {"o": owner}).scalar_one()
        ):
            raise StoreError(f"grants are made by the tables' owner {owner!r}; this connection is {me!r}")
    quoted = _quote(role)
    statements = [
        f"GRANT CONNECT ON DATABASE {_quote(_database(engine))} TO {quoted}",
        f"GRANT USAGE ON SCHEMA {_quote(schema)} TO {quoted}",
    ]
    for table in sorted(owners):
        statements.append(f"REVOKE ALL ON TABLE {_quote(schema)}.{_quote(table)} FROM {quoted}")
        privileges = SERVICE_GRANTS.get(table)
        if privileges:
            statements.append(
                f"GRANT {', '.join(privileges)} ON TABLE {_quote(schema)}.{_quote(table)} TO {quoted}"
            )
    statements.append(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {_quote(schema)} TO {quoted}")  # serial ids
    return RolePlan(role, owner, statements)


def grant_service_role(engine: Engine, role: str) -> RolePlan:
    """Apply :func:`plan_service_role` in one transaction."""
    plan = plan_service_role(engine, role)
    with engine.begin() as conn:
        for statement in plan.statements:
            conn.execute(text(statement))
    return plan


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _database(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT current_database()")).scalar_one())
