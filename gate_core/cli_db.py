"""`gatehouse db upgrade | grant-service-role`: who may change the schema, and who may only append.

On PostgreSQL the owner of the tables can lift the audit trail's append-only triggers, so the
owner only migrates; the service runs as a role that may read and append the audit trail and
nothing more (``gate_core._store._roles``). Both commands take the database from
``GATEHOUSE_DATABASE_URL`` — the owner's URL — and need no home.
"""

from __future__ import annotations

import click

from gate_core._errors import StoreError
from gate_core._home import Settings
from gate_core._store import SqlStore
from gate_core._store._migrate import HEAD, MIGRATIONS
from gate_core._store._roles import grant_service_role, plan_service_role
from gate_core.cli_errors import clean_errors


@click.group(name="db")
def db() -> None:
    """Schema upgrades (as the owner) and the service's restricted PostgreSQL role."""


@db.command()
@clean_errors
def upgrade() -> None:
    """Bring the schema to this version's head, as the database owner. Re-run
    `gatehouse db grant-service-role` afterwards: a new table needs its grant."""
    store = SqlStore.open(Settings.from_env().database_url)
    store.close()
    click.echo(f"schema at {HEAD}")


@db.command(name="grant-service-role")
@click.argument("role")
@click.option("--print", "print_only", is_flag=True, help="Print the SQL instead of running it.")
@clean_errors
def grant_service_role_cmd(role: str, print_only: bool) -> None:
    """Let ROLE run the service: SELECT and INSERT on the audit log, its checkpoints and its Merkle
    tree — never UPDATE, DELETE, TRUNCATE or TRIGGER — and what the service needs on the other
    tables. Run as the tables' owner; ROLE must exist, own nothing and not be a superuser."""
    store = SqlStore.open(Settings.from_env().database_url, migrate=False)
    try:
        if store.engine.dialect.name != "postgresql":
            # the role's own refusal, before the schema check: a SQLite file has no roles at any revision
            plan_service_role(store.engine, role)
        with store.engine.connect() as conn:
            revision = MIGRATIONS.current_revision(conn)
        if revision != HEAD:
            raise StoreError(
                f"the schema is at {revision or 'nothing'}, not {HEAD}: run `gatehouse db upgrade` first "
                "(grants are made for the tables of the current schema)"
            )
        plan = (plan_service_role if print_only else grant_service_role)(store.engine, role)
    finally:
        store.close()
    if print_only:
        click.echo(";\n".join(plan.statements) + ";")
        return
    click.echo(
        f"granted {role} the service's privileges ({len(plan.statements)} statements); the tables stay "
        f"owned by {plan.owner}, and {role} cannot update, delete, truncate or disable triggers on the "
        "audit trail"
    )
