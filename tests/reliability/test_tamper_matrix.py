"""The tamper matrix as a figure: every kind of audit-log tampering, on both backends, is
detected and named; the PostgreSQL trigger refuses direct edits. (The cases themselves are the
ones tests/gate_core/test_audit.py proves one by one; here they are counted together.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gate_core import CheckpointSigner, Gatekeeper
from gate_core._audit import GENESIS_HASH, AuditDraft, chain_hash
from gate_core._models import SYSTEM_ACTOR
from tests.conftest import Report
from tests.gate_core.test_audit import SWAP, edit_payload, fill, tamper


def _delete_middle(gk: Gatekeeper) -> None:
    tamper(gk, "DELETE FROM gh_audit_log WHERE seq = 6")


def _reorder(gk: Gatekeeper) -> None:
    rows = {e.seq: e for e in gk.store.audit_entries() if e.seq in (4, 5)}
    params = {
        f"{k}{s}": v
        for s, e in rows.items()
        for k, v in (("b", e.body), ("e", e.event), ("g", e.gate_id), ("h", e.hash), ("p", e.prev_hash))
    }
    tamper(gk, SWAP.format(into=4, src=5), SWAP.format(into=5, src=4), **params)


def _truncate_tail(gk: Gatekeeper) -> None:
    size, _ = gk.store.audit_head()
    tamper(gk, "DELETE FROM gh_audit_log WHERE seq > :keep", keep=size - 3)


def _insert(gk: Gatekeeper) -> None:
    tamper(gk, "UPDATE gh_audit_log SET seq = seq + 1000 WHERE seq >= 3")
    tamper(gk, "UPDATE gh_audit_log SET seq = seq - 999 WHERE seq >= 1003")
    entry = next(e for e in gk.store.audit_entries() if e.seq == 2)
    body = json.dumps({"seq": 3, "event": "decision.recorded", "gate": None, "payload": {}})
    at = entry.at.replace(tzinfo=None) if gk.store.dialect == "sqlite" else entry.at
    tamper(
        gk,
        "INSERT INTO gh_audit_log (seq, at, event, actor, gate_id, body, prev_hash, hash) "
        "VALUES (3, :at, 'decision.recorded', 'mallory', NULL, :body, :prev, :hash)",
        at=at,
        body=body,
        prev=entry.hash,
        hash=chain_hash(entry.hash, body),
    )


def _forgery(gk: Gatekeeper) -> None:
    prev = GENESIS_HASH
    for e in list(gk.store.audit_entries()):
        decoded = e.decoded()
        decoded["actor"]["principal_id"] = "mallory"
        body = json.dumps(decoded, sort_keys=True, separators=(",", ":"))
        digest = chain_hash(prev, body)
        tamper(
            gk,
            "UPDATE gh_audit_log SET body = :b, prev_hash = :p, hash = :h WHERE seq = :s",
            b=body,
            p=prev,
            h=digest,
            s=e.seq,
        )
        prev = digest
    tamper(gk, "DELETE FROM gh_audit_checkpoints")
    impostor = CheckpointSigner(Ed25519PrivateKey.generate())
    gk.store.add_checkpoint(impostor.sign(gk.store.audit_head()[0], prev, gk.clock.now()))


EDIT_COLUMN = "UPDATE gh_audit_log SET event = 'gate.cancelled' WHERE seq = 5"
DIRECT_EDITS = (
    "UPDATE gh_audit_log SET body = body",
    "DELETE FROM gh_audit_log",
    "TRUNCATE gh_audit_log",
    "DELETE FROM gh_audit_checkpoints",
)

KINDS: dict[str, Callable[[Gatekeeper], None]] = {
    "edit a payload": lambda gk: edit_payload(gk, 7),
    "edit an index column": lambda gk: tamper(
        gk, "UPDATE gh_audit_log SET event = 'gate.cancelled' WHERE seq = 5"
    ),
    "delete a middle entry": _delete_middle,
    "insert an entry": _insert,
    "reorder two entries": _reorder,
    "truncate the tail behind a checkpoint": _truncate_tail,
    "delete every checkpoint": lambda gk: tamper(gk, "DELETE FROM gh_audit_checkpoints"),
    "replace the whole log with a re-signed forgery": _forgery,
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_of_tampering_is_detected(gatekeeper: Gatekeeper, kind: str, report: Report) -> None:
    fill(gatekeeper)
    assert gatekeeper.audit.verify().ok
    KINDS[kind](gatekeeper)
    verdict = gatekeeper.audit.verify()
    assert not verdict.ok
    assert verdict.first_bad_seq is not None
    backend = gatekeeper.store.dialect
    report(f"Tamper ({backend}): {kind}", f"detected at entry {verdict.first_bad_seq}", "", "detected")


def test_postgresql_trigger_refuses_direct_edits(postgres_url: str, report: Report) -> None:
    from gate_core import SqlStore

    store = SqlStore.open(postgres_url)
    now = datetime.now(UTC)
    store.append_audit(
        [AuditDraft("test.entry", now, SYSTEM_ACTOR), AuditDraft("test.entry", now, SYSTEM_ACTOR)]
    )
    store.add_checkpoint(CheckpointSigner(Ed25519PrivateKey.generate()).sign(2, store.audit_head()[1], now))
    refused = 0  # row triggers fire only on rows, so the log and its checkpoints are not empty
    for statement in (
        "UPDATE gh_audit_log SET body = body",
        "DELETE FROM gh_audit_log",
        "TRUNCATE gh_audit_log",
        "DELETE FROM gh_audit_checkpoints",
    ):
        try:
            with store.engine.begin() as conn:
                conn.execute(text(statement))
        except DBAPIError as exc:
            refused += "append-only" in str(exc)
    store.close()
    assert refused == 4
    report(
        "Tamper (postgresql): direct UPDATE / DELETE / TRUNCATE refused by the trigger",
        f"{refused}/4",
        "",
        "4/4",
    )
