"""Adversary O holding the service's PostgreSQL credentials (property 5): the service runs as a
role granted by `gatehouse db grant-service-role`, which may read and append the audit trail but
not rewrite it. Every attack is real SQL as that role against the real PostgreSQL — the table
owner's trick (`ALTER TABLE … DISABLE TRIGGER USER`), UPDATE, DELETE, TRUNCATE of the log, its
checkpoints and its Merkle tree, lifting triggers through `session_replication_role`, dropping
them — and each is refused by PostgreSQL itself. Meanwhile everything the service does works as
that role: open the store, open and decide gates, consume, checkpoint, prove, verify.

A role per test (unique name), dropped afterwards; the grant is made by the real CLI, as the
owner."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from alembic import command
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine

from gate_core import CheckpointSigner, Gatekeeper, SqlStore, verify_bundle
from gate_core._errors import StoreError
from gate_core._store._migrate import MIGRATIONS
from gate_core._store._roles import grant_service_role
from gate_core._tokens import Scope
from gate_core.testing import actor, example_directory, example_policy
from tests.conftest import PostgresServer, Report
from tests.gate_core.conftest import pii_export

GATEHOUSE = [sys.executable, "-m", "gate_core.cli"]
AUDIT_TABLES = ("gh_audit_log", "gh_audit_checkpoints", "gh_audit_tree", "gh_audit_cosignatures")


@dataclass
class ServiceRole:
    name: str
    owner_url: str  # postgres (the owner, which ran the migrations)
    url: str  # the same database as the service role


def _as(url: str, role: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{role}@{rest.partition('@')[2]}"


def _db(owner_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEHOUSE_DATABASE_URL": owner_url, "GATEHOUSE_HOME": "/nonexistent"}
    proc = subprocess.run([*GATEHOUSE, "db", *args], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def created_role(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"gh_service_{uuid.uuid4().hex[:10]}"
    with postgres_server.admin() as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN')
    yield name
    with postgres_server.admin() as conn:
        # only the databases where it holds grants (pg_shdepend), never other tests' databases
        databases = conn.execute(
            "SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON s.dbid = d.oid "
            "JOIN pg_roles r ON s.refobjid = r.oid WHERE r.rolname = %s",
            (name,),
        ).fetchall()
        for (database,) in databases:
            with psycopg.connect(postgres_server.url_for(str(database)), autocommit=True) as other:
                other.execute(f'DROP OWNED BY "{name}"')  # DROP ROLE refuses while grants remain
        conn.execute(f'DROP ROLE IF EXISTS "{name}"')


@pytest.fixture
def service_role(postgres_url: str, created_role: str) -> ServiceRole:
    granted = _db(postgres_url, "grant-service-role", created_role)
    assert granted.returncode == 0, granted.stderr
    assert "cannot update, delete, truncate or disable triggers" in granted.stdout
    return ServiceRole(created_role, postgres_url, _as(postgres_url, created_role))


def test_the_service_works_as_its_role(service_role: ServiceRole, report: Report) -> None:
    store = SqlStore.open(service_role.url)  # migrate=True: at head, so only the version is read
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT current_user").scalar_one() == service_role.name
        signer = CheckpointSigner(Ed25519PrivateKey.generate())
        gk = Gatekeeper(store, example_directory(), example_policy(), signer=signer, checkpoint_every=4)
        gk.record_configuration("example policy")
        for _ in range(6):
            gate = gk.open(pii_export(), submitted_by=actor("alice"))
            gk.approve(gate.id, actor=actor("bob"))
            gk.consume(gate.id, actor=actor("etl-bot"), binding_hash=gate.binding_hash)
        token, _secret = gk.tokens.create("etl-bot", Scope.REQUEST, created_by=actor("frank"))
        assert gk.tokens.revoke(token.id, actor=actor("frank"))
        assert gk.audit.checkpoint() is not None
        assert verify_bundle(gk.audit.prove(3), signer.public_key)["seq"] == 3
        assert gk.audit.consistency(2)["new_size"] == store.audit_head()[0]
        verdict = gk.audit.verify()
        assert verdict.ok, verdict.summary()
    finally:
        store.close()
    report(
        "Tamper O (postgresql): service role runs open, decide, consume, checkpoint, prove, verify",
        "works",
        "",
        "works",
    )


def test_lineage_is_recorded_as_the_service_role(service_role: ServiceRole, report: Report) -> None:
    """Recording accesses (events, tags, edges, each task's datasets) and the OpenLineage
    receiver's run mappings work with exactly the granted privileges."""
    from openlineage.client.event_v2 import RunState

    from gate_core import Actor, AuthMethod
    from lineage import LineageStore
    from lineage._catalog import Catalog
    from lineage._ol_events import reduce, validate
    from lineage._ol_ingest import OpenLineageIngest
    from tests.lineage import ol_shapes as ol

    LineageStore.open(service_role.owner_url).close()  # the owner migrates the lineage tables
    granted = _db(service_role.owner_url, "grant-service-role", service_role.name)  # then grants again
    assert granted.returncode == 0, granted.stderr
    store = SqlStore.open(service_role.url)
    try:
        gk = Gatekeeper(store, example_directory(), example_policy())
        lineage = LineageStore.for_gate_store(store, migrate=False)
        ingest = OpenLineageIngest(lineage, gk, Catalog(), None)
        sender = Actor(principal_id="etl-bot", via=AuthMethod.API_TOKEN)
        raw = [
            ol.airflow_task(
                "nightly",
                "scheduled__1",
                "load",
                state=state,
                inputs=[ol.table("core.customers", ("id", "integer"), rows=3)],
                outputs=[ol.table("marts.customers", ("id", "integer"), rows=3, role="output")],
            )
            for state in (RunState.START, RunState.COMPLETE)
        ]
        first = ingest.ingest([reduce(e, validate(e)[1]) for e in raw], sender)
        again = ingest.ingest([reduce(e, validate(e)[1]) for e in raw], sender)  # a retried batch
        assert (first.recorded, again.recorded) == (4, 0)
        [edge] = lineage.graph(f"{ol.PG}/core.customers").edges
        assert edge.downstream == f"{ol.PG}/marts.customers"
    finally:
        store.close()
    report("Tamper O (postgresql): service role records lineage and OpenLineage events", "works", "", "works")


ATTACKS = [
    *(f"ALTER TABLE {t} DISABLE TRIGGER USER" for t in AUDIT_TABLES),
    *(f"ALTER TABLE {t} DISABLE TRIGGER ALL" for t in AUDIT_TABLES),
    "UPDATE gh_audit_log SET body = replace(body, 'bob', 'carol')",
    "UPDATE gh_audit_checkpoints SET size = size + 1",
    "UPDATE gh_audit_tree SET hash = decode(repeat('ee', 32), 'hex')",
    *(f"DELETE FROM {t}" for t in AUDIT_TABLES),
    *(f"TRUNCATE {t}" for t in AUDIT_TABLES),
    "DROP TRIGGER gh_audit_log_append_only ON gh_audit_log",
    "ALTER TABLE gh_audit_log OWNER TO CURRENT_USER",
    "SET session_replication_role = replica",
    "CREATE TRIGGER gh_sneak BEFORE INSERT ON gh_audit_log "
    "FOR EACH ROW EXECUTE FUNCTION gh_refuse_audit_change()",
    "DROP TABLE gh_audit_checkpoints",
]


def test_the_service_role_cannot_rewrite_or_unlock_the_audit_trail(
    service_role: ServiceRole, report: Report
) -> None:
    owner = SqlStore.open(service_role.owner_url)  # a history to attack: one decided gate
    gk = Gatekeeper(owner, example_directory(), example_policy())
    gate = gk.open(pii_export(), submitted_by=actor("alice"))
    gk.approve(gate.id, actor=actor("bob"))
    size = owner.audit_head()[0]
    owner.close()
    refused = []
    with psycopg.connect(service_role.url, autocommit=True) as conn:
        for statement in ATTACKS:
            try:
                conn.execute(statement)
            except psycopg.errors.InsufficientPrivilege as exc:  # 42501, "must be owner" included
                refused.append((statement, exc.sqlstate))
            else:
                pytest.fail(f"PostgreSQL accepted, as the service role: {statement}")
        rows = conn.execute("SELECT count(*), max(seq) FROM gh_audit_log").fetchone()
    assert rows == (size, size)
    assert len(refused) == len(ATTACKS)
    report(
        "Tamper O (postgresql): service role disables triggers, updates, deletes, truncates the audit trail",
        f"{len(ATTACKS)} tried, 0 accepted",
        "",
        "0 accepted",
    )


def test_the_grant_is_exact_and_refuses_roles_that_could_lift_triggers(
    service_role: ServiceRole, postgres_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(service_role.owner_url) as conn:
        granted = conn.execute(
            "SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type) "
            "FROM information_schema.role_table_grants WHERE grantee = %s GROUP BY table_name",
            (service_role.name,),
        ).fetchall()
    privileges: dict[str, str] = dict(granted)
    for table in AUDIT_TABLES:
        assert privileges[table] == "INSERT,SELECT", (table, privileges[table])
    assert privileges["gh_audit_head"] == "SELECT,UPDATE"
    assert all("TRUNCATE" not in p and "TRIGGER" not in p for p in privileges.values())
    printed = _db(postgres_url, "grant-service-role", service_role.name, "--print")
    assert printed.returncode == 0
    assert (
        f'GRANT SELECT, INSERT ON TABLE "public"."gh_audit_log" TO "{service_role.name}";' in printed.stdout
    )

    superuser = _db(postgres_url, "grant-service-role", "postgres")
    assert superuser.returncode == 1
    assert "superuser" in superuser.stderr
    missing = _db(postgres_url, "grant-service-role", "gh_nobody_" + uuid.uuid4().hex[:6])
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr and "CREATE ROLE" in missing.stderr
    sqlite = _db(f"sqlite:///{tmp_path / 'gh-no-roles.db'}", "grant-service-role", service_role.name)
    assert sqlite.returncode == 1
    assert "PostgreSQL" in sqlite.stderr


def test_a_member_of_the_owner_is_refused(postgres_url: str, created_role: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'GRANT postgres TO "{created_role}"')
    refused = _db(postgres_url, "grant-service-role", created_role)
    assert refused.returncode == 1
    assert "could DISABLE TRIGGER" in refused.stderr


@pytest.fixture
def old_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A database at the previous schema (0004), as the owner left it before an upgrade."""
    name = f"gh_old_{uuid.uuid4().hex[:10]}"
    with postgres_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres_server.url_for(name)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    config = MIGRATIONS.config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        config.attributes["version_table"] = MIGRATIONS.version_table
        command.upgrade(config, "0004_i16_decision_requirement")
    engine.dispose()
    yield url
    with postgres_server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_refuse_to_run_as_the_service_role_and_say_who_may(
    old_database: str, created_role: str, report: Report
) -> None:
    not_yet = _db(old_database, "grant-service-role", created_role)
    assert not_yet.returncode == 1
    assert "run `gatehouse db upgrade` first" in not_yet.stderr
    owner = create_engine(old_database.replace("postgresql://", "postgresql+psycopg://"))
    grant_service_role(owner, created_role)  # as granted when 0004 was the newest schema
    owner.dispose()
    with pytest.raises(StoreError, match="this role may not change it") as refused:
        SqlStore.open(_as(old_database, created_role))
    assert "gatehouse db upgrade" in str(refused.value) and "owner" in str(refused.value)
    env = {**os.environ, "GATEHOUSE_DATABASE_URL": _as(old_database, created_role), "GATEHOUSE_HOME": "/x"}
    cli = subprocess.run([*GATEHOUSE, "db", "upgrade"], capture_output=True, text=True, env=env, timeout=120)
    assert cli.returncode == 1
    assert "gatehouse db upgrade" in cli.stderr and "Traceback" not in cli.stderr
    upgraded = _db(old_database, "upgrade")  # the owner migrates
    assert upgraded.returncode == 0, upgraded.stderr
    assert _db(old_database, "grant-service-role", created_role).returncode == 0
    store = SqlStore.open(_as(old_database, created_role))
    store.close()
    report(
        "Tamper O (postgresql): migrations run as the service role",
        "refused, names the owner's command",
        "",
        "refused",
    )
