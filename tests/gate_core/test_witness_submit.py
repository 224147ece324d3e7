"""The log's side of witnessing reads the stored tree, not the log: each submission's consistency
proof comes from O(log n) stored rows and is checked against the checkpoint's signed root before
it is sent; a stored tree that does not prove it (an edited node) falls back to the entries, and
the witness — a real one, in process — cosigns only what extends the checkpoint it holds. On
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate_core import Gatekeeper, SqlStore
from gate_core._cosign import COSIGNATURE_V1, VerifierKey, log_verifier_key
from gate_core._merkle import NODE_LEVEL, perfect_subtrees
from gate_core._witnessing import WitnessPolicy
from gate_core.testing import actor
from gate_core.witness import Refused, Witness, WitnessState
from tests.gate_core.conftest import prod_redeploy
from tests.security._operator import run_sql

URL = "http://witness.invalid"


class InProcess:
    """A WitnessTransport that hands the body to a real Witness, answering as its HTTP app does."""

    def __init__(self, witness: Witness) -> None:
        self.witness = witness
        self.posts = 0

    def post(self, url: str, body: bytes) -> tuple[int, str, str]:
        assert url == f"{URL}/add-checkpoint"
        self.posts += 1
        try:
            return 200, "text/plain", self.witness.add_checkpoint(body)
        except Refused as refused:
            if refused.size is not None:
                return refused.status, "text/x.tlog.size", f"{refused.size}\n"
            return refused.status, "text/plain", refused.reason


class RowCountingStore:
    """The store, with every full read of the log counted (the O(n) path a submission must avoid)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.log_scans = 0

    def audit_rows(self, from_seq: int = 1) -> Generator[tuple[int, str, str | None, str, str, str]]:
        self.log_scans += 1
        return self._store.audit_rows(from_seq)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
def witnessed(gatekeeper: Gatekeeper, tmp_path: Path) -> tuple[Gatekeeper, InProcess, RowCountingStore]:
    assert gatekeeper.audit.signer is not None
    key = Ed25519PrivateKey.generate()
    witness = Witness(
        "witness.test/w1",
        key,
        {
            log_verifier_key(gatekeeper.audit.signer.public_key).name: log_verifier_key(
                gatekeeper.audit.signer.public_key
            )
        },
        WitnessState(tmp_path / "witness.db"),
    )
    transport = InProcess(witness)
    policy = WitnessPolicy(
        (VerifierKey.for_key("witness.test/w1", key.public_key(), COSIGNATURE_V1),),
        1,
        {"witness.test/w1": URL},
    )
    gatekeeper.audit.use_witnesses(policy, transport)
    gatekeeper.audit.submit_inline = False  # submitted by witness_pending only, as the service does
    counting = RowCountingStore(gatekeeper.store)  # type: ignore[arg-type]
    return gatekeeper, transport, counting


def _grow(gk: Gatekeeper, gates: int) -> None:
    for _ in range(gates):
        gate = gk.open(prod_redeploy(), submitted_by=actor("alice"))
        gk.approve(gate.id, actor=actor("bob"))
        gk.approve(gate.id, actor=actor("dave"))


def test_each_submission_reads_the_stored_tree_not_the_log(
    witnessed: tuple[Gatekeeper, InProcess, RowCountingStore],
) -> None:
    gatekeeper, transport, counting = witnessed
    audit = gatekeeper.audit
    _grow(gatekeeper, 10)
    first = audit.checkpoint()
    assert first is not None and audit.witness_pending(now=True) == []
    # a fresh service process (no memory of the log) on the same store: what a restart meets
    audit.log = counting  # type: ignore[assignment]
    audit._last, audit._tree, audit._cosigned = None, None, {}
    for _ in range(6):
        _grow(gatekeeper, 3)
        mark = audit.checkpoint()
        assert mark is not None
        # the signer reads the entries since its last checkpoint; the submission, nothing more
        scans = counting.log_scans
        assert audit.witness_pending(now=True) == []
        assert counting.log_scans == scans
        assert max(c.size for c in gatekeeper.store.cosignatures()) == mark.size
    assert transport.posts >= 6
    assert audit.verify().ok


def test_an_edited_node_falls_back_to_the_entries_and_the_witness_still_cosigns(
    witnessed: tuple[Gatekeeper, InProcess, RowCountingStore], caplog: pytest.LogCaptureFixture
) -> None:
    gatekeeper, _transport, counting = witnessed
    audit = gatekeeper.audit
    _grow(gatekeeper, 10)
    assert audit.checkpoint() is not None and audit.witness_pending(now=True) == []
    _grow(gatekeeper, 3)
    mark = audit.checkpoint()
    assert mark is not None
    # O edits the largest stored subtree under the new root: the stored tree no longer proves it
    level, index = perfect_subtrees(0, mark.size)[0]
    assert level >= NODE_LEVEL
    store = gatekeeper.store
    assert isinstance(store, SqlStore)
    statement = "UPDATE gh_audit_tree SET hash = :h WHERE level = :l AND idx = :i"
    run_sql(store.engine, statement, h=bytes(32), l=level, i=index)
    audit.log = counting  # type: ignore[assignment]
    scans = counting.log_scans
    assert audit.witness_pending(now=True) == []
    assert counting.log_scans == scans + 1  # one pass over the entries, for this submission only
    assert "building the witnesses' consistency proof from the entries" in caplog.text
    assert max(c.size for c in store.cosignatures()) == mark.size
    verdict = audit.verify()
    assert not verdict.ok and "gh_audit_tree edited" in verdict.problem  # and verify still names it
