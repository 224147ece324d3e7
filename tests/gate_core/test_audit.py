"""The tamper matrix: every kind of edit to the audit trail is detected, on SQLite and PostgreSQL.

Tampering is done the way an attacker with database access would: with raw SQL, after switching
off the append-only triggers (which we also prove block ordinary edits).
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gate_core import CheckpointSigner, Event, Gatekeeper, control_ids, verify_chain
from gate_core._audit import GENESIS_HASH, chain_hash, export_csv, export_jsonl
from gate_core.testing import actor
from tests.gate_core.conftest import pii_export, prod_redeploy


@pytest.fixture(params=["hashed in process", "hashed by a second process"])
def gatekeeper(gatekeeper: Gatekeeper, request: pytest.FixtureRequest) -> Gatekeeper:
    """Every attack twice: a large log's verify has another process re-check the chain hashes
    (gate_core._hash_worker), which must name the same first bad entry as hashing in process."""
    if request.param == "hashed by a second process":
        gatekeeper.audit.rehash_from = 0
    return gatekeeper


def fill(gk: Gatekeeper) -> int:
    for _ in range(3):
        gate = gk.open(prod_redeploy(), submitted_by=actor("alice"))
        gk.approve(gate.id, actor=actor("bob"))
        gk.approve(gate.id, actor=actor("dave"))
    gk.audit.checkpoint()
    size, _ = gk.store.audit_head()
    assert size >= 12
    return size


def tamper(gk: Gatekeeper, *statements: str, **params: object) -> None:
    """Run raw SQL with the append-only triggers disabled, as a database superuser could."""
    with gk.store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for name in (
                "gh_audit_log_no_update",
                "gh_audit_log_no_delete",
                "gh_audit_checkpoints_no_update",
                "gh_audit_checkpoints_no_delete",
            ):
                conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        for statement in statements:
            conn.execute(text(statement), params)


def edit_payload(gk: Gatekeeper, seq: int) -> None:
    body = next(e for e in gk.store.audit_entries() if e.seq == seq).decoded()
    body["payload"]["comment"] = "approved, honest"
    tamper(gk, "UPDATE gh_audit_log SET body = :b WHERE seq = :s", b=json.dumps(body), s=seq)


def test_intact_log_verifies(gatekeeper: Gatekeeper) -> None:
    size = fill(gatekeeper)
    report = gatekeeper.audit.verify()
    assert report.ok
    assert report.entries == size


def test_edited_payload_is_detected(gatekeeper: Gatekeeper) -> None:
    fill(gatekeeper)
    edit_payload(gatekeeper, 7)
    report = gatekeeper.audit.verify()
    assert not report.ok
    assert report.first_bad_seq == 7
    assert "edited" in report.problem


def test_edited_index_column_is_detected(gatekeeper: Gatekeeper) -> None:
    fill(gatekeeper)
    tamper(gatekeeper, "UPDATE gh_audit_log SET event = 'gate.cancelled' WHERE seq = 5")
    report = gatekeeper.audit.verify()
    assert (report.ok, report.first_bad_seq) == (False, 5)


def test_deleted_middle_row_is_detected(gatekeeper: Gatekeeper) -> None:
    fill(gatekeeper)
    tamper(gatekeeper, "DELETE FROM gh_audit_log WHERE seq = 6")
    report = gatekeeper.audit.verify()
    assert (report.ok, report.first_bad_seq) == (False, 6)


SWAP = (
    "UPDATE gh_audit_log SET body = :b{src}, event = :e{src}, gate_id = :g{src}, hash = :h{src}, "
    "prev_hash = :p{src} WHERE seq = {into}"
)


def test_swapped_rows_are_detected(gatekeeper: Gatekeeper) -> None:
    fill(gatekeeper)
    rows = {e.seq: e for e in gatekeeper.store.audit_entries() if e.seq in (4, 5)}
    tamper(
        gatekeeper,
        SWAP.format(into=4, src=5),
        SWAP.format(into=5, src=4),
        **{
            f"{k}{s}": v
            for s, e in rows.items()
            for k, v in (("b", e.body), ("e", e.event), ("g", e.gate_id), ("h", e.hash), ("p", e.prev_hash))
        },
    )
    report = gatekeeper.audit.verify()
    assert (report.ok, report.first_bad_seq) == (False, 4)


def test_truncated_tail_behind_a_checkpoint_is_detected(gatekeeper: Gatekeeper) -> None:
    size = fill(gatekeeper)
    tamper(gatekeeper, "DELETE FROM gh_audit_log WHERE seq > :keep", keep=size - 3)
    tamper(gatekeeper, "UPDATE gh_audit_head SET seq = :s", s=size - 3)
    report = gatekeeper.audit.verify()
    assert not report.ok
    assert report.first_bad_seq == size - 2
    assert "were removed" in report.problem


def test_inserted_row_is_detected(gatekeeper: Gatekeeper) -> None:
    size = fill(gatekeeper)
    # shift the tail up by one and slip a fabricated entry in at seq 3
    tamper(gatekeeper, "UPDATE gh_audit_log SET seq = seq + 1000 WHERE seq >= 3")
    tamper(gatekeeper, "UPDATE gh_audit_log SET seq = seq - 999 WHERE seq >= 1003")
    entry = next(e for e in gatekeeper.store.audit_entries() if e.seq == 2)
    forged_body = json.dumps({"seq": 3, "event": "decision.recorded", "gate": None, "payload": {}})
    tamper(
        gatekeeper,
        "INSERT INTO gh_audit_log (seq, at, event, actor, gate_id, body, prev_hash, hash) "
        "VALUES (3, :at, 'decision.recorded', 'mallory', NULL, :body, :prev, :hash)",
        at=entry.at.replace(tzinfo=None) if gatekeeper.store.dialect == "sqlite" else entry.at,
        body=forged_body,
        prev=entry.hash,
        hash=chain_hash(entry.hash, forged_body),
    )
    report = gatekeeper.audit.verify()
    assert not report.ok
    # the forged entry links correctly but is not in canonical form: caught at itself
    assert (report.first_bad_seq, report.problem) == (3, "entry body is not in canonical form"), (
        report.summary()
    )
    assert gatekeeper.store.audit_count() == size + 1


def test_self_consistent_forgery_without_the_key_is_detected(gatekeeper: Gatekeeper) -> None:
    """Rewrite the whole log into a consistent chain and re-sign checkpoints with a different key."""
    fill(gatekeeper)
    entries = list(gatekeeper.store.audit_entries())
    prev = GENESIS_HASH
    forged = []
    for e in entries:
        body = e.decoded()
        if body["event"] == Event.DECISION_RECORDED:
            body["actor"]["principal_id"] = "mallory"
        text_body = json.dumps(body, sort_keys=True, separators=(",", ":"))
        digest = chain_hash(prev, text_body)
        forged.append({"s": e.seq, "b": text_body, "p": prev, "h": digest})
        prev = digest
    for row in forged:
        tamper(
            gatekeeper, "UPDATE gh_audit_log SET body = :b, prev_hash = :p, hash = :h WHERE seq = :s", **row
        )
    impostor = CheckpointSigner(Ed25519PrivateKey.generate())
    tamper(gatekeeper, "DELETE FROM gh_audit_checkpoints")
    gatekeeper.store.add_checkpoint(impostor.sign(len(forged), prev, gatekeeper.clock.now()))
    forged_mark = gatekeeper.store.checkpoints()
    chain_only = verify_chain(gatekeeper.store.audit_rows(), forged_mark, impostor.public_key)
    assert chain_only.ok  # the forgery is self-consistent under the impostor's own key ...
    report = gatekeeper.audit.verify()
    assert not report.ok  # ... but no checkpoint signed with our key vouches for it
    assert "invalid signature" in report.problem


def test_deleting_all_checkpoints_is_detected(gatekeeper: Gatekeeper) -> None:
    fill(gatekeeper)
    tamper(gatekeeper, "DELETE FROM gh_audit_checkpoints")
    report = gatekeeper.audit.verify()
    assert not report.ok
    assert "no signed checkpoint" in report.problem


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE gh_audit_log SET body = '{}' WHERE seq = 1",
        "DELETE FROM gh_audit_log WHERE seq = 1",
        "DELETE FROM gh_audit_checkpoints",
        "TRUNCATE gh_audit_log",
    ],
)
def test_append_only_triggers_refuse_direct_edits(gatekeeper: Gatekeeper, statement: str) -> None:
    fill(gatekeeper)
    if statement.startswith("TRUNCATE") and gatekeeper.store.dialect == "sqlite":
        statement = "DELETE FROM gh_audit_log"  # SQLite has no TRUNCATE; its DELETE trigger covers it
    with pytest.raises(DBAPIError, match="append-only"), gatekeeper.store.engine.begin() as conn:
        conn.execute(text(statement))
    assert gatekeeper.audit.verify().ok


def test_export_maps_every_event_to_controls(gatekeeper: Gatekeeper) -> None:
    import csv
    import io

    fill(gatekeeper)
    out = io.StringIO()
    count = export_jsonl(gatekeeper.store.audit_entries(), out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == count == gatekeeper.store.audit_count()
    decision = next(r for r in records if r["event"] == Event.DECISION_RECORDED)
    assert "CC6.3" in decision["controls"]["soc2"]
    assert "A.5.18" in decision["controls"]["iso27001"]
    assert {"AC-6", "AU-9", "AU-10"} <= set(decision["controls"]["nist80053"])
    assert all(r["controls"]["nist80053"] for r in records)

    table = io.StringIO()
    export_csv(gatekeeper.store.audit_entries(), table)
    rows = list(csv.DictReader(io.StringIO(table.getvalue())))
    assert len(rows) == count
    assert rows[0]["hash"] == records[0]["hash"]


def test_refusals_are_audited_with_separation_of_duties_control(gatekeeper: Gatekeeper) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    with pytest.raises(Exception, match="you requested"):
        gatekeeper.approve(gate.id, actor=actor("alice"))
    refused = [e for e in gatekeeper.store.audit_entries() if e.event == Event.DECISION_REFUSED]
    assert refused[-1].decoded()["payload"]["reason"] == "self_approval"
    assert "AC-5" in control_ids(Event.DECISION_REFUSED)["nist80053"]


def test_tampering_is_reported_once_not_per_following_entry(gatekeeper: Gatekeeper) -> None:
    fill(gatekeeper)
    edit_payload(gatekeeper, 3)
    summary = gatekeeper.audit.verify().summary()
    assert summary.startswith("audit log TAMPERED at entry 3:")


def test_a_canonical_forgery_linked_in_is_caught_where_the_chain_breaks(gatekeeper: Gatekeeper) -> None:
    """A forged entry in canonical form links to the entry before it, so the break shows at the
    entry after it (the one whose previous-hash no longer matches)."""
    from gate_core._audit import AuditDraft, entry_body
    from gate_core._models import Actor, AuthMethod

    fill(gatekeeper)
    entry = next(e for e in gatekeeper.store.audit_entries() if e.seq == 2)
    forged = entry_body(
        3, AuditDraft("decision.recorded", entry.at, Actor(principal_id="mallory", via=AuthMethod.SLACK))
    )
    tamper(gatekeeper, "UPDATE gh_audit_log SET seq = seq + 1000 WHERE seq >= 3")
    tamper(gatekeeper, "UPDATE gh_audit_log SET seq = seq - 999 WHERE seq >= 1003")
    tamper(
        gatekeeper,
        "INSERT INTO gh_audit_log (seq, at, event, actor, gate_id, body, prev_hash, hash) "
        "VALUES (3, :at, 'decision.recorded', 'mallory', NULL, :body, :prev, :hash)",
        at=entry.at.replace(tzinfo=None) if gatekeeper.store.dialect == "sqlite" else entry.at,
        body=forged,
        prev=entry.hash,
        hash=chain_hash(entry.hash, forged),
    )
    report = gatekeeper.audit.verify()
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "previous-hash link" in report.problem


def test_index_columns_pointing_into_the_payload_are_caught(gatekeeper: Gatekeeper) -> None:
    """A payload may itself contain "event"/"gate" keys; the check is positional, so a column
    rewritten to match a nested value is still a mismatch."""
    gate = gatekeeper.open(
        pii_export(parameters={"event": "gate.cancelled", "gate": None, "payload": {}}),
        submitted_by=actor("alice"),
    )
    gatekeeper.audit.checkpoint()
    seq = next(e.seq for e in gatekeeper.store.audit_entries() if e.gate_id == gate.id)
    tamper(
        gatekeeper, "UPDATE gh_audit_log SET event = 'gate.cancelled', gate_id = NULL WHERE seq = :s", s=seq
    )
    report = gatekeeper.audit.verify()
    assert (report.ok, report.first_bad_seq) == (False, seq)
    assert report.problem == "indexed columns disagree with the hashed body"


def test_honest_entries_with_non_ascii_names_verify(gatekeeper: Gatekeeper) -> None:
    """Canonical bodies keep non-ASCII as is; the positional check must compare the same way."""
    from gate_core import Actor, AuthMethod

    gatekeeper.audit.record(
        "lineage.note",
        actor=Actor(principal_id="bob", via=AuthMethod.API_TOKEN),
        payload={"text": "café ✓"},
        gate_id="café-7",
    )
    gatekeeper.audit.checkpoint()
    assert gatekeeper.audit.verify().ok
