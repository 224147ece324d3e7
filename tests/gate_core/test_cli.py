"""The `gatehouse` command as a user runs it: a real subprocess per call, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

GATEHOUSE = [sys.executable, "-m", "gate_core.cli"]


def without_sandbox_banner(stderr: str, args: tuple[str, ...]) -> str:
    """The example home is a sandbox: every command but the first ``init`` says so first on stderr
    (issue 14). Checked here, then removed, so the tests below read the command's own message."""
    first, _, rest = stderr.partition("\n")
    opens_no_home = args[:1] == ("init",) or args[:2] == ("audit", "verify-proof")
    if (opens_no_home or first.startswith("Usage:")) and "SANDBOX" not in first:
        return stderr  # before the home exists, a command that needs none, or click refused it first
    assert first.startswith("gatehouse: SANDBOX home ") and "unverified" in first, stderr
    return rest


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        return self.out.strip().splitlines()[-1]


Run = Callable[..., Result]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "gatehouse-home"


@pytest.fixture
def gatehouse(home: Path, database_url: str) -> Run:
    """Run `gatehouse ARGS` as a given OS user against a fresh home on the parametrised backend."""

    def run(*args: str, user: str = "alice", env: dict[str, str] | None = None) -> Result:
        environ = {
            **os.environ,
            "GATEHOUSE_HOME": str(home),
            "GATEHOUSE_DATABASE_URL": database_url,
            **(env or {}),
        }
        proc = subprocess.run(  # the example home is a sandbox: --as chooses the person
            [*GATEHOUSE, "--as", user, *args], capture_output=True, text=True, env=environ, timeout=120
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, without_sandbox_banner(proc.stderr, args))

    assert run("init", "--example").code == 0
    return run


def test_acceptance_scenario(gatehouse: Run) -> None:
    opened = gatehouse(
        "request",
        "--action",
        "export",
        "--target",
        "s3://exports/customers.csv",
        "--dataset",
        "warehouse/customers#pii",
        "--reason",
        "quarterly export",
        user="alice",
    )
    assert opened.code == 0, opened.err
    gate_id = opened.last_line
    assert gate_id.startswith("g") and len(gate_id) == 27
    assert "PENDING" in opened.out and "pii-export" in opened.out

    own = gatehouse("approve", gate_id, user="alice")
    assert own.code == 1
    assert own.err.strip() == "gatehouse: alice: you requested this gate; someone else must decide it"

    bot = gatehouse("approve", gate_id, user="etl-bot")
    assert bot.code == 1
    assert "service principals never decide" in bot.err

    approved = gatehouse("approve", gate_id, "--comment", "fine", user="bob")
    assert approved.code == 0, approved.err
    assert f"gate {gate_id}: APPROVED" in approved.out

    shown = gatehouse("show", gate_id, "--json", user="carol")
    assert '"status": "APPROVED"' in shown.out

    late = gatehouse("approve", gate_id, user="carol")
    assert late.code == 1
    assert "already approved by bob at" in late.err

    redeploy = gatehouse(
        "request", "--action", "redeploy", "--target", "models/churn", "--env", "prod", user="alice"
    )
    redeploy_id = redeploy.last_line
    first = gatehouse("approve", redeploy_id, user="bob")
    assert "PENDING" in first.out and "1 more distinct approval(s) needed" in first.out
    assert gatehouse("approve", redeploy_id, user="bob").code == 1  # same person again
    second = gatehouse("approve", redeploy_id, user="dave")
    assert f"gate {redeploy_id}: APPROVED" in second.out

    verified = gatehouse("audit", "verify")
    assert verified.code == 0, verified.out + verified.err
    assert verified.out.startswith("audit log intact:")


def test_reject_list_cancel_and_export(gatehouse: Run, tmp_path: Path) -> None:
    a = gatehouse("request", "--action", "role_escalation", "--target", "role/admin", user="alice").last_line
    b = gatehouse(
        "request", "--action", "billing_change", "--target", "plan/enterprise", user="alice"
    ).last_line
    rejected = gatehouse("reject", a, "--reason", "not needed", user="carol")
    assert rejected.code == 0 and "REJECTED" in rejected.out
    assert gatehouse("cancel", b, "--reason", "typo", user="alice").code == 0
    listing = gatehouse("list", "--status", "rejected", "--json")
    assert a in listing.out and b not in listing.out
    table = gatehouse("list")
    assert "CANCELLED" in table.out and "REJECTED" in table.out

    out = tmp_path / "audit.csv"
    exported = gatehouse("audit", "export", "--format", "csv", "--output", str(out))
    assert exported.code == 0
    header = out.read_text().splitlines()[0]
    assert header.startswith("seq,at,event,actor,gate,soc2,iso27001,nist80053")
    jsonl = gatehouse("audit", "export")
    assert '"controls":{"iso27001":' in jsonl.out


def test_request_with_the_same_idempotency_key_prints_the_same_gate(gatehouse: Run) -> None:
    args = (
        "request",
        "--action",
        "export",
        "--dataset",
        "warehouse/customers#pii",
        "--idempotency-key",
        "run-1",
    )
    assert gatehouse(*args).last_line == gatehouse(*args).last_line


def test_tampering_makes_verify_exit_1_naming_the_entry(gatehouse: Run, database_url: str) -> None:
    gate_id = gatehouse("request", "--action", "export", "--dataset", "warehouse/customers#pii").last_line
    gatehouse("approve", gate_id, user="bob")
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER gh_audit_log_no_update"))
        conn.execute(
            text(
                "UPDATE gh_audit_log SET body = replace(body, 'bob', 'eve') WHERE event = 'decision.recorded'"
            )
        )
        seq = conn.execute(text("SELECT seq FROM gh_audit_log WHERE event = 'decision.recorded'")).scalar()
    engine.dispose()
    verified = gatehouse("audit", "verify")
    assert verified.code == 1
    assert f"TAMPERED at entry {seq}" in verified.out


@pytest.mark.parametrize(
    ("args", "user", "message"),
    [
        (("approve", "gDOESNOTEXIST"), "bob", "no gate with id 'gDOESNOTEXIST'"),
        (("approve", "gDOESNOTEXIST"), "mallory", "'mallory' is not a principal in the directory"),
        (
            ("request", "--action", "export", "--for", "bob"),
            "carol",
            "only service principals act for others",
        ),
        (("request", "--action", "export", "--for", "nobody"), "etl-bot", "'nobody' is not a principal"),
    ],
)
def test_refusals_are_one_line_and_exit_1(
    gatehouse: Run, args: tuple[str, ...], user: str, message: str
) -> None:
    result = gatehouse(*args, user=user)
    assert result.code == 1
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_usage_errors_exit_2(gatehouse: Run) -> None:
    assert gatehouse("request").code == 2  # --action missing
    assert gatehouse("request", "--action", "x", "--dataset", "nonsense").code == 2
    assert gatehouse("frobnicate").code == 2


def test_malformed_policy_is_one_clear_line(gatehouse: Run, home: Path) -> None:
    (home / "policy.yaml").write_text("version: 1\nrules:\n  - name: broken\n    outcome: require\n")
    result = gatehouse("list")
    assert result.code == 1
    assert result.err.strip() == (
        f"gatehouse: {home / 'policy.yaml'}: rules.0.approvers: "
        "outcome 'require' needs 'approvers' (groups and count)"
    )


def test_unreachable_database_fails_closed(gatehouse: Run) -> None:
    dead = "postgresql://postgres@127.0.0.1:1/test"
    result = gatehouse(
        "approve", "gWHATEVER", user="bob", env={"GATEHOUSE_DATABASE_URL": dead, "GATEHOUSE_DB_TIMEOUT": "2"}
    )
    assert result.code == 1
    assert result.err.startswith("gatehouse: database unavailable:")
    assert len(result.err.strip().splitlines()) == 1


def test_locked_sqlite_database_fails_closed_and_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "GATEHOUSE_HOME": str(home), "GATEHOUSE_DB_TIMEOUT": "1"}
    env.pop("GATEHOUSE_DATABASE_URL", None)

    def run(*args: str, user: str = "alice") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*GATEHOUSE, "--as", user, *args], capture_output=True, text=True, env=env, timeout=60
        )

    run("init", "--example")
    gate_id = (
        run("request", "--action", "export", "--dataset", "warehouse/customers#pii")
        .stdout.strip()
        .splitlines()[-1]
    )
    holder = sqlite3.connect(home / "gatehouse.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = run("approve", gate_id, user="bob")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1
    assert "database unavailable" in result.stderr and "locked" in result.stderr
    assert "Traceback" not in result.stderr
    assert '"status": "PENDING"' in run("show", gate_id, "--json").stdout


def test_a_name_not_in_the_directory_is_refused(gatehouse: Run) -> None:
    result = gatehouse("request", "--action", "export", user="root")
    assert result.code == 1
    assert "'root' is not a principal in the directory (chosen with --as in this sandbox)" in result.err
