"""Adversary O — an operator with database access (and, in the worst case, the log's signing key)
— rewrites history. Property 5: the audit trail is tamper-evident to a third party holding a
trust root (the pinned public key, a checkpoint it kept): `gatehouse audit verify` exits 1 and
names the first bad entry or gate; it never passes without a trust root.

Every attack runs as the adversary would: the real `gatehouse` CLI in a subprocess for the history
and the verdict, plain SQL on the real database (SQLite file, PostgreSQL as the table owner)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from gate_core import CheckpointSigner, GateFilter, Gatekeeper, GateRequest, RunContext, SqlStore
from gate_core._errors import AuditError, GatehouseError
from gate_core.testing import ManualClock, actor, example_directory, example_policy
from tests.conftest import Report
from tests.gate_core.conftest import prod_redeploy
from tests.gate_core.test_audit import fill
from tests.security._operator import Body, cut_tail, rewrite, run_sql

GATEHOUSE = [sys.executable, "-m", "gate_core.cli"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class World:
    home: Path
    database_url: str
    engine: Engine
    pii_gate: str

    def gatehouse(self, *args: str, user: str = "alice") -> Result:
        env = {
            **os.environ,
            "GATEHOUSE_HOME": str(self.home),
            "GATEHOUSE_DATABASE_URL": self.database_url,
        }
        # the example home is a sandbox: --as chooses the person (issue 14; $USER is no identity)
        proc = subprocess.run(
            [*GATEHOUSE, "--as", user, *args], capture_output=True, text=True, env=env, timeout=120
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def verify(self, *args: str) -> Result:
        return self.gatehouse("audit", "verify", "--json", *args)


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    """A home used from the CLI only: a pii export requested by alice, her refused self-approval
    (the separation-of-duties evidence), bob's approval."""
    url = database_url.replace("postgresql://", "postgresql+psycopg://")
    engine = create_engine(url)
    w = World(tmp_path / "home", database_url, engine, "")
    assert w.gatehouse("init", "--example").code == 0
    opened = w.gatehouse(
        "request", "--action", "export", "--target", "s3://x/c.csv", "--dataset", "warehouse/customers#pii"
    )
    assert opened.code == 0, opened.err
    w.pii_gate = opened.out.strip().splitlines()[-1]
    assert w.gatehouse("approve", w.pii_gate, user="alice").code == 1
    assert w.gatehouse("approve", w.pii_gate, user="bob").code == 0
    intact = w.verify()
    assert intact.code == 0, intact.out + intact.err
    yield w
    engine.dispose()


def _reattribute(entries: list[Body]) -> list[Body]:
    """Drop alice's refused self-approval and make carol, not bob, the approver."""
    out = []
    for body in entries:
        if body["event"] == "decision.refused":
            continue
        if body["actor"]["principal_id"] == "bob":
            body["actor"] = {**body["actor"], "principal_id": "carol", "display_name": "carol"}
        if body["event"] == "gate.approved":
            body["payload"] = {**body["payload"], "by": ["carol"]}
        out.append(body)
    return out


def _first_bad(result: Result) -> dict[str, object]:
    assert result.code == 1, result.out + result.err
    verdict = json.loads(result.out)
    assert verdict["ok"] is False
    return dict(verdict)


def test_rewrite_after_cli_use_is_detected_even_with_an_out_of_band_key(
    world: World, tmp_path: Path, report: Report
) -> None:
    pinned = tmp_path / "auditor.pub"
    shutil.copy(world.home / "audit-signing.pub", pinned)
    rewrite(world.engine, _reattribute)
    run_sql(world.engine, "UPDATE gh_decisions SET principal_id = 'carol' WHERE principal_id = 'bob'")
    verdict = _first_bad(world.verify("--public-key", str(pinned)))
    assert verdict["first_bad_seq"] is not None
    assert "rewritten" in str(verdict["problem"]) or "removed" in str(verdict["problem"])
    _first_bad(world.verify())
    report(f"Tamper O ({world.engine.dialect.name}): rewrite after CLI use", "detected", "", "detected")


def test_cut_tail_after_cli_use_is_detected(world: World, report: Report) -> None:
    with world.engine.connect() as conn:
        size = int(conn.execute(text("SELECT max(seq) FROM gh_audit_log")).scalar_one())
    cut_tail(world.engine, size - 2)
    verdict = _first_bad(world.verify())
    assert verdict["first_bad_seq"] == size - 1
    report(f"Tamper O ({world.engine.dialect.name}): cut the tail", "detected", "", "detected")


def test_deleting_later_checkpoints_is_caught_by_the_auditors_copy(
    world: World, tmp_path: Path, report: Report
) -> None:
    kept = tmp_path / "auditor-checkpoints.jsonl"
    shutil.copy(world.home / "audit-checkpoints.jsonl", kept)
    rewrite(world.engine, _reattribute)
    with world.engine.connect() as conn:
        first = conn.execute(text("SELECT min(size) FROM gh_audit_checkpoints")).scalar_one()
    run_sql(world.engine, "DELETE FROM gh_audit_checkpoints WHERE size > :s", s=first)
    witness = world.home / "audit-checkpoints.jsonl"
    lines = witness.read_text().splitlines()
    witness.write_text("\n".join(line for line in lines if json.loads(line)["size"] <= first) + "\n")
    verdict = _first_bad(world.verify("--checkpoints", str(kept)))
    assert "rewritten" in str(verdict["problem"]) or "removed" in str(verdict["problem"])
    report(
        f"Tamper O ({world.engine.dialect.name}): rewrite + delete later checkpoints (auditor kept one)",
        "detected",
        "",
        "detected",
    )


def test_missing_public_key_is_an_error_not_a_skip(world: World, report: Report) -> None:
    (world.home / "audit-signing.pub").unlink()
    result = world.verify()
    assert result.code == 2, result.out + result.err
    assert "no trust root" in result.err
    assert world.gatehouse("audit", "verify", "--public-key", str(world.home / "nope.pub")).code != 0
    report(f"Tamper O ({world.engine.dialect.name}): public key removed", "refused (exit 2)", "", "refused")


def test_resigning_with_the_home_key_is_caught_by_the_auditors_checkpoint(
    world: World, tmp_path: Path, report: Report
) -> None:
    """The private key sits beside the database: O re-signs the forged head with it. A verifier
    holding an earlier checkpoint (or, with witnesses, a witness holding it) still sees the fork."""
    kept = tmp_path / "auditor-checkpoints.jsonl"
    shutil.copy(world.home / "audit-checkpoints.jsonl", kept)
    rewrite(world.engine, _reattribute)
    run_sql(world.engine, "DELETE FROM gh_audit_checkpoints")
    (world.home / "audit-checkpoints.jsonl").unlink()
    assert world.gatehouse("audit", "checkpoint").code == 0  # the home key signs the forgery
    verdict = _first_bad(world.verify("--checkpoints", str(kept)))
    assert "rewritten" in str(verdict["problem"]) or "removed" in str(verdict["problem"])
    report(
        f"Tamper O ({world.engine.dialect.name}): rewrite re-signed with the log key (auditor kept one)",
        "detected",
        "",
        "detected",
    )


def test_status_without_its_decisions_is_detected_naming_the_gate(world: World, report: Report) -> None:
    opened = world.gatehouse(
        "request", "--action", "export", "--target", "s3://y/d.csv", "--dataset", "warehouse/customers#pii"
    )
    gate = opened.out.strip().splitlines()[-1]
    with world.engine.begin() as conn:
        conn.execute(text("UPDATE gh_gates SET status = 'APPROVED' WHERE id = :g"), {"g": gate})
    verdict = _first_bad(world.verify())
    assert gate in str(verdict["problem"])
    assert verdict["gate"] == gate
    with world.engine.begin() as conn:
        conn.execute(text("UPDATE gh_gates SET status = 'CONSUMED' WHERE id = :g"), {"g": gate})
    consumed = _first_bad(world.verify())
    assert consumed["gate"] == gate
    report(
        f"Tamper O ({world.engine.dialect.name}): gate status set without decisions",
        "detected",
        "",
        "detected",
    )


# ---------------------------------------------------------------- the running service


def test_running_service_refuses_to_sign_a_rewritten_log(
    gatekeeper: Gatekeeper, report: Report, caplog: pytest.LogCaptureFixture
) -> None:
    """O, as the table owner, disables the triggers, rewrites the log and deletes every later
    checkpoint; the service must not sign the forged head, and its own verify still fails.
    Gates keep working meanwhile (their changes commit); each refused signing is logged."""
    fill(gatekeeper)
    engine = gatekeeper.store.engine
    rewrite(engine, _reattribute)
    run_sql(engine, "DELETE FROM gh_audit_checkpoints")
    for _ in range(3):  # past the fixture's cadence of 4 entries: the hot path tries to sign
        gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
    assert "audit checkpoint refused: refusing to sign" in caplog.text
    with pytest.raises(AuditError, match="refusing to sign"):
        gatekeeper.audit.checkpoint_if_moved()
    assert gatekeeper.store.checkpoints() == []
    verdict = gatekeeper.audit.verify()
    assert not verdict.ok
    assert verdict.first_bad_seq is not None
    report(
        f"Tamper O ({engine.dialect.name}): service asked to sign a rewritten log",
        "refused, verify fails",
        "",
        "refused",
    )


def test_approving_in_sql_then_consuming_is_detected(gatekeeper: Gatekeeper, report: Report) -> None:
    """``UPDATE gh_gates SET status='APPROVED'`` and consume through the real path: the log holds
    the consumption but no decision, so the replay never reaches APPROVED."""
    gate = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
    with gatekeeper.store.engine.begin() as conn:
        conn.execute(text("UPDATE gh_gates SET status = 'APPROVED' WHERE id = :g"), {"g": gate.id})
    gatekeeper.consume(gate.id, actor=actor("etl-bot"), binding_hash=gate.binding_hash)
    verdict = gatekeeper.audit.verify()
    assert not verdict.ok
    assert verdict.gate == gate.id
    assert "never approved" in verdict.problem
    assert gate.id in verdict.summary()
    report(
        f"Tamper O ({gatekeeper.store.engine.dialect.name}): gate approved in SQL, then consumed",
        "detected (names the gate)",
        "",
        "detected",
    )


def test_forged_decision_row_is_detected(gatekeeper: Gatekeeper, report: Report) -> None:
    gate = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
    gatekeeper.approve(gate.id, actor=actor("bob"))
    with gatekeeper.store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO gh_decisions (gate_id, principal_id, person_key, display_name, verdict, "
                "comment, at, via, break_glass) SELECT gate_id, 'dave', 'dave', 'dave', verdict, comment, "
                "at, via, break_glass FROM gh_decisions WHERE gate_id = :g"
            ),
            {"g": gate.id},
        )
    verdict = gatekeeper.audit.verify()
    assert not verdict.ok
    assert verdict.gate == gate.id
    assert "2 approve decision(s) in the database but 1 in the log" in verdict.problem
    report(
        f"Tamper O ({gatekeeper.store.engine.dialect.name}): decision row forged in SQL",
        "detected (names the gate)",
        "",
        "detected",
    )


def test_verify_without_a_trust_root_is_an_error(store: SqlStore, report: Report) -> None:
    keyless = Gatekeeper(store, example_directory(), example_policy())
    keyless.open(prod_redeploy(), submitted_by=actor("alice"))
    with pytest.raises(AuditError, match="no trust root"):
        keyless.audit.verify()
    report(
        f"Tamper O ({store.engine.dialect.name}): verify with no trust root (library)", "error", "", "error"
    )


def _names(gatekeeper: Gatekeeper, gate_id: str, term: str) -> None:
    """Verify fails, naming the gate and, in its problem, what was edited."""
    verdict = gatekeeper.audit.verify()
    assert not verdict.ok, f"an edited {term} passed verify"
    assert verdict.gate == gate_id
    assert term in (verdict.problem or ""), verdict.problem


def test_a_gate_moved_out_of_its_run_is_detected(gatekeeper: Gatekeeper, report: Report) -> None:
    """The OpenLineage receiver finds a run's gates by ``gh_gates.run_key``: O, setting a gate's
    key to NULL or to another run's, would take the gate's run out of the approval scope check
    (its out-of-scope reads found nothing). The log's ``gate.requested`` entry holds the request's
    run: verify recomputes the key from it and names the gate."""
    run = RunContext(orchestrator="airflow", pipeline="nightly", run_id="scheduled__1", task_id="approve")
    gate = gatekeeper.open(prod_redeploy(run=run), submitted_by=actor("alice"))
    gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))  # outside any run: NULL, rightly
    assert gatekeeper.audit.verify().ok
    elsewhere = run.model_copy(update={"run_id": "scheduled__2"}).key()
    for key in (None, elsewhere):
        with gatekeeper.store.engine.begin() as conn:
            conn.execute(text("UPDATE gh_gates SET run_key = :k WHERE id = :g"), {"k": key, "g": gate.id})
        assert gatekeeper.list(GateFilter(runs=(run.key() or "",))) == []  # what the edit achieves
        _names(gatekeeper, gate.id, "run")
    report(
        f"Tamper O ({gatekeeper.store.engine.dialect.name}): gate's run key edited (hidden from its run)",
        "detected (names the gate)",
        "",
        "detected",
    )


def test_a_gate_whose_stored_request_names_another_run_stays_in_its_run(gatekeeper: Gatekeeper) -> None:
    """The other half: O rewrites the run inside the gate's stored request JSON (which verify does
    not compare with the log) and leaves the key. The receiver places gates by the verified key,
    so the gate still governs its run's accesses."""
    from lineage import LineageStore
    from lineage._catalog import Catalog
    from lineage._ol_ingest import OpenLineageIngest

    run = RunContext(orchestrator="airflow", pipeline="nightly", run_id="scheduled__1", task_id="approve")
    gate = gatekeeper.open(prod_redeploy(run=run), submitted_by=actor("alice"))
    with gatekeeper.store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE gh_gates SET request = replace(request, 'scheduled__1', 'scheduled__9') WHERE id = :g"
            ),
            {"g": gate.id},
        )
    assert gatekeeper.get(gate.id).request.run.run_id == "scheduled__9"
    assert isinstance(gatekeeper.store, SqlStore)
    ingest = OpenLineageIngest(LineageStore.for_gate_store(gatekeeper.store), gatekeeper, Catalog(), None)
    found = ingest.gates_of_runs([run])
    assert [g.id for g in found[("airflow", "nightly", "scheduled__1")]] == [gate.id]


def test_a_lowered_quorum_is_detected(gatekeeper: Gatekeeper, report: Report) -> None:
    """O lowers a two-approver gate's ``required_approvals`` to 1 in SQL; one approver's decision
    then approves it — a two-person rule met by one person, and verify passed. The log recorded the
    quorum the policy set (``policy.evaluated``): verify compares it with the stored one."""
    gate = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
    assert gate.required_approvals == 2
    with gatekeeper.store.engine.begin() as conn:
        conn.execute(text("UPDATE gh_gates SET required_approvals = 1 WHERE id = :g"), {"g": gate.id})
    approved = gatekeeper.approve(gate.id, actor=actor("bob"))
    assert approved.status.value == "APPROVED"  # what the edit achieves: one person met a two-person rule
    _names(gatekeeper, gate.id, "required_approvals")
    report(
        f"Tamper O ({gatekeeper.store.engine.dialect.name}): gate's quorum lowered in SQL, then one approval",
        "detected (names the gate and the term)",
        "",
        "detected",
    )


@pytest.mark.parametrize(
    ("term", "sql"),
    [
        # another payload may then consume the approval (consume compares the stored hash)
        ("binding_hash", "UPDATE gh_gates SET binding_hash = :other WHERE id = :g"),
        ("expires_at", "UPDATE gh_gates SET expires_at = expires_at + interval '30 days' WHERE id = :g"),
        ("rule", "UPDATE gh_gates SET rule = 'dev-export' WHERE id = :g"),
        # alice's own team may then approve her redeploy (the requester herself stays excluded)
        (
            "approver_groups",
            "UPDATE gh_gates SET context = replace(context, '\"approver_groups\":[', "
            '\'"approver_groups":["data-engineering",\') WHERE id = :g',
        ),
    ],
)
def test_a_gates_terms_edited_in_sql_are_detected(gatekeeper: Gatekeeper, term: str, sql: str) -> None:
    """The rest of what an approval stands on, fixed when the gate opened and recorded in the log:
    O binding another payload to it, pushing its expiry out, or renaming its rule."""
    request = prod_redeploy()
    gate = gatekeeper.open(request, submitted_by=actor("alice"))
    assert gatekeeper.audit.verify().ok
    other = request.model_copy(update={"target": "models/everything"}).binding_hash()
    if gatekeeper.store.engine.dialect.name == "sqlite":
        sql = sql.replace("expires_at + interval '30 days'", "datetime(expires_at, '+30 days')")
    with gatekeeper.store.engine.begin() as conn:
        conn.execute(text(sql), {"g": gate.id, "other": other})
    if term == "binding_hash":  # what the edit achieves: the approval now covers the other payload
        gatekeeper.approve(gate.id, actor=actor("bob"))
        gatekeeper.approve(gate.id, actor=actor("dave"))
        consumed = gatekeeper.consume(gate.id, actor=actor("alice"), binding_hash=other)
        assert consumed.status.value == "CONSUMED"
    _names(gatekeeper, gate.id, term)


def test_a_signature_requirement_dropped_in_sql_is_detected(
    store: SqlStore, clock: ManualClock, signer: CheckpointSigner
) -> None:
    """A rule with ``signature: passkey`` makes every decision on its gates carry the decider's
    passkey signature; the store reads that requirement from the gate's context. O blanking it
    lets a decision through unsigned; the log recorded the requirement (``policy.evaluated``)."""
    from gate_core._policy import parse_policy
    from gate_core.testing import _example_text

    marker = "    break_glass_groups: [sre-oncall]\n"
    text_of_policy = _example_text("policy.yaml").replace(marker, marker + "    signature: passkey\n")
    policy = parse_policy(text_of_policy)
    directory = example_directory()
    gatekeeper = Gatekeeper(store, directory, policy, clock=clock, signer=signer, checkpoint_every=4)
    gate = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
    assert gate.signature == "passkey"
    with pytest.raises(GatehouseError):
        gatekeeper.approve(gate.id, actor=actor("bob"))  # no passkey assertion: refused
    dropped = 'replace(context, \'"signature":"passkey"\', \'"signature":""\')'
    with gatekeeper.store.engine.begin() as conn:
        conn.execute(text(f"UPDATE gh_gates SET context = {dropped} WHERE id = :g"), {"g": gate.id})
    _names(gatekeeper, gate.id, "signature")  # before any decision: only the stored term can tell
    approved = gatekeeper.approve(gate.id, actor=actor("bob"))  # what the edit achieves: unsigned
    assert approved.decisions[-1].principal_id == "bob"
    assert not gatekeeper.audit.verify().ok


@pytest.mark.parametrize(
    ("term", "sql"),
    [
        # the gate store reads a stored offset (UtcDateTime converts it); a reading that dropped
        # it (SQLite keeps the text as written) saw the logged expiry while the gate stayed open
        # 16 hours longer
        ("expires_at", "UPDATE gh_gates SET expires_at = :later WHERE id = :g"),
        # a duplicated key: the gate store's json.loads takes the last value, SQLite's
        # json_extract the first
        (
            "approver_groups",
            "UPDATE gh_gates SET context = substr(context, 1, length(context) - 1) "
            '|| \',"approver_groups":["data-engineering"]}\' WHERE id = :g',
        ),
    ],
)
def test_terms_edited_where_a_database_reading_would_differ_from_the_stores_are_detected(
    gatekeeper: Gatekeeper, term: str, sql: str
) -> None:
    gate = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
    logged = gate.expires_at.astimezone(UTC).replace(tzinfo=None)
    later = logged.isoformat(sep=" ") + "-15:59"  # the logged expiry's digits, 16 hours later
    with gatekeeper.store.engine.begin() as conn:
        conn.execute(text(sql), {"g": gate.id, "later": later})
    stored = gatekeeper.get(gate.id)  # what the edit achieves, as the gate store reads it
    if term == "expires_at":
        assert stored.expires_at > gate.expires_at + timedelta(hours=15)
    else:
        assert "data-engineering" in stored.approver_groups
    _names(gatekeeper, gate.id, term)


def test_values_the_database_cannot_read_make_verify_name_the_gate_not_fail(gatekeeper: Gatekeeper) -> None:
    """O stores what PostgreSQL's JSON cannot parse (NaN, which the gate store's json.loads reads)
    beside widened approver groups, or an 'infinity' expiry: extracting the terms in the database
    fails, and verify must still name the edited gate — not say "database unavailable" for all."""
    gate = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
    widened = ":nan || substr(replace(context, :groups, :wider), 2)"
    edit = {
        "g": gate.id,
        "groups": '"approver_groups":[',
        "wider": '"approver_groups":["data-engineering",',
        "nan": '{"x":NaN,',
    }
    with gatekeeper.store.engine.begin() as conn:
        conn.execute(text(f"UPDATE gh_gates SET context = {widened} WHERE id = :g"), edit)
    assert "data-engineering" in gatekeeper.get(gate.id).approver_groups  # the gate store reads it
    _names(gatekeeper, gate.id, "approver_groups")
    if gatekeeper.store.engine.dialect.name != "postgresql":
        return
    later = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
    with gatekeeper.store.engine.begin() as conn:
        conn.execute(text("DELETE FROM gh_gates WHERE id = :g"), {"g": gate.id})
        conn.execute(text("UPDATE gh_gates SET expires_at = 'infinity' WHERE id = :g"), {"g": later.id})
    verdict = gatekeeper.audit.verify()
    assert not verdict.ok and verdict.problem is not None
    assert "database unavailable" not in verdict.problem, verdict.problem


@pytest.mark.parametrize(
    ("request_of", "term", "old", "new"),
    [
        # bob (data-governance) made a break-glass approver: his one decision approves outright
        (
            prod_redeploy,
            "break_glass_groups",
            '"break_glass_groups":["sre-oncall"]',
            '"break_glass_groups":["data-governance"]',
        ),
        # a data-governance AND ml-leads rule cut to data-governance alone
        (
            lambda: prod_redeploy(action="model_publish", environment="dev"),
            "requirements",
            ',{"count":1,"groups":["ml-leads"]}]',
            "]",
        ),
        # a rule that takes only a decider the IdP signed in (oidc) opened to a local account
        (
            lambda: prod_redeploy(action="billing_change", target="billing/plans"),
            "identified_by",
            '"identified_by":["oidc"]',
            '"identified_by":[]',
        ),
    ],
)
def test_a_one_person_approval_made_possible_in_sql_is_detected(
    gatekeeper: Gatekeeper, request_of: Callable[[], GateRequest], term: str, old: str, new: str
) -> None:
    """The other ways to let one person approve a gate they may not approve alone: widening who
    may break the glass, cutting a multi-group rule's requirements (which decide such a gate,
    whatever ``required_approvals`` says), or dropping how a decider must have signed in (bob
    here signs in with a local account). ``policy.evaluated`` now records all three."""
    gate = gatekeeper.open(request_of(), submitted_by=actor("alice"))
    with gatekeeper.store.engine.begin() as conn:
        edit = "UPDATE gh_gates SET context = replace(context, :old, :new) WHERE id = :g"
        assert conn.execute(text(edit), {"g": gate.id, "old": old, "new": new}).rowcount == 1
    approved = gatekeeper.approve(gate.id, actor=actor("bob"))
    assert approved.status.value == "APPROVED"  # what the edit achieves: one person approved it
    _names(gatekeeper, gate.id, term)
