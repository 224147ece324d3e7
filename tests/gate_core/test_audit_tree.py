"""The stored RFC 9162 tree (gh_audit_tree): proofs read from it in O(log n) rows are the proofs
of the whole log (cross-checked against the in-memory tree and pymerkle), every checkpoint
stores the nodes it completed, v1 checkpoints (no root) still verify, and migration 0005
backfills the tree of a log that existed before it — on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymerkle import InmemoryTree
from sqlalchemy import create_engine, insert, text

from gate_core import Checkpoint, CheckpointSigner, Gatekeeper, SqlStore, verify_bundle
from gate_core._audit import AuditDraft, chain, signature_valid
from gate_core._merkle import (
    NODE_LEVEL,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    perfect_subtrees,
    root,
    verify_consistency,
)
from gate_core._models import SYSTEM_ACTOR
from gate_core._ports import GateStore
from gate_core._store._migrate import MIGRATIONS
from gate_core._store._schema import audit_head, audit_log
from gate_core._tree import consistency, inclusion
from gate_core.testing import actor, example_directory, example_policy
from tests.conftest import PostgresServer
from tests.gate_core.conftest import prod_redeploy


def _grow(gk: Gatekeeper, gates: int) -> None:
    for _ in range(gates):
        gate = gk.open(prod_redeploy(), submitted_by=actor("alice"))
        gk.approve(gate.id, actor=actor("bob"))
        gk.approve(gate.id, actor=actor("dave"))


def _leaves(store: GateStore) -> list[bytes]:
    return [leaf_hash(row[3].encode()) for row in store.audit_rows()]


def _expected_nodes(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    tree = Frontier()
    out: dict[tuple[int, int], bytes] = {}
    for leaf in leaves:
        out |= {(lv, ix): h for lv, ix, h in tree.append(leaf) if lv >= NODE_LEVEL}
    return out


def test_every_checkpoint_stores_the_nodes_it_completed(gatekeeper: Gatekeeper) -> None:
    _grow(gatekeeper, 12)  # ~70 entries, checkpoints every 4 appended by the fixture's cadence
    mark = gatekeeper.audit.checkpoint()
    assert mark is not None and mark.root is not None
    leaves = _leaves(gatekeeper.store)
    assert mark.root == root(leaves).hex()
    stored = {(lv, ix): h for lv, ix, h in gatekeeper.store.tree_rows()}
    assert stored == _expected_nodes(leaves)
    assert all(c.root is not None for c in gatekeeper.store.checkpoints())
    assert gatekeeper.audit.verify().ok


def test_proofs_from_the_stored_tree_are_the_proofs_of_the_whole_log(gatekeeper: Gatekeeper) -> None:
    _grow(gatekeeper, 9)
    gatekeeper.audit.checkpoint()
    leaves = _leaves(gatekeeper.store)
    size = len(leaves)
    theirs = InmemoryTree(algorithm="sha256")
    for row in gatekeeper.store.audit_rows():
        theirs.append_entry(row[3].encode())
    key = gatekeeper.audit.signer.public_key  # type: ignore[union-attr]
    for seq in range(1, size + 1):
        bundle = json.loads(gatekeeper.audit.prove(seq))
        assert bundle["size"] == size
        proof = [base64.b64decode(p) for p in bundle["proof"]]
        assert proof == inclusion_proof(leaves, seq - 1)
        assert [p.hex() for p in proof] == theirs.prove_inclusion(seq, size).serialize()["path"][1:]
        assert verify_bundle(json.dumps(bundle), key)["seq"] == seq
    for old in range(0, size + 1, 5):
        for new in (old, (old + size) // 2, size):
            grown = gatekeeper.audit.consistency(old, new)
            path = [base64.b64decode(p) for p in grown["proof"]]
            assert path == consistency_proof(leaves[:new], old)
            assert base64.b64decode(grown["new_root"]) == root(leaves[:new])
            assert verify_consistency(old, new, path, base64.b64decode(grown["old_root"]), root(leaves[:new]))


class CountingStore:
    """The store's tree reads, counted: a proof must read O(log n) rows, not the log."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.rows = 0

    def tree_nodes(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        found = self.store.tree_nodes(keys)
        self.rows += len(found)
        return found

    def audit_bodies(self, first_seq: int, last_seq: int) -> dict[int, str]:
        found = self.store.audit_bodies(first_seq, last_seq)
        self.rows += len(found)
        return found


def test_a_proof_reads_log_n_rows(store: SqlStore) -> None:
    """4,100 entries bulk-chained, one checkpoint: each proof reads at most 2·log2(n) nodes plus
    two blocks of 16 entries, never the log."""
    now = datetime.now(UTC)
    drafts = [AuditDraft("lineage.read", now, SYSTEM_ACTOR, None, {"n": n}) for n in range(4_100)]
    entries = chain(0, "0" * 64, drafts)
    tree = Frontier()
    nodes = []
    for e in entries:
        nodes += [n for n in tree.append(leaf_hash(e.body.encode())) if n[0] >= NODE_LEVEL]
    with store.engine.begin() as conn:
        conn.execute(
            insert(audit_log),
            [
                {
                    "seq": e.seq,
                    "at": e.at,
                    "event": e.event,
                    "actor": e.actor,
                    "gate_id": None,
                    "body": e.body,
                    "prev_hash": e.prev_hash,
                    "hash": e.hash,
                }
                for e in entries
            ],
        )
        conn.execute(audit_head.update().values(seq=entries[-1].seq, hash=entries[-1].hash))
    key = CheckpointSigner(Ed25519PrivateKey.generate())
    store.add_checkpoint(key.sign(len(entries), entries[-1].hash, now, tree.root()), nodes)
    leaves = [leaf_hash(e.body.encode()) for e in entries]
    counting = CountingStore(store)
    for index in (0, 1, 17, 2047, 2048, 4095, 4096, 4099):
        counting.rows = 0
        body, path = inclusion(counting, index, len(entries))
        assert body == entries[index].body
        assert path == inclusion_proof(leaves, index)
        assert counting.rows <= 2 * 13 + 2 * 16, (index, counting.rows)
    counting.rows = 0
    old_root, new_root, proof = consistency(counting, 1_000, 4_100)
    assert (old_root, new_root) == (root(leaves[:1_000]), root(leaves))
    assert proof == consistency_proof(leaves, 1_000)
    assert counting.rows <= 3 * 13 + 3 * 16
    assert perfect_subtrees(0, 4_100) == [(12, 0), (2, 1024)]


def test_checkpoints_signed_before_v2_still_verify(gatekeeper: Gatekeeper, signer: CheckpointSigner) -> None:
    _grow(gatekeeper, 1)
    size, head = gatekeeper.store.audit_head()
    old = signer.sign(size, head, datetime.now(UTC))  # no root: the v1 message
    assert old.root is None and signature_valid(old, signer.public_key)
    gatekeeper.store.add_checkpoint(old)
    assert gatekeeper.audit.verify().ok
    forged_root = Checkpoint(old.size, old.head_hash, old.at, old.key_id, old.signature, "00" * 32)
    assert not signature_valid(forged_root, signer.public_key)  # a root cannot be added to a v1 signature


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> Iterator[str]:
    """An empty database (no migration run yet): the test fixtures' PostgreSQL databases are
    cloned from a template already at head."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    name = f"gh_blank_{uuid.uuid4().hex[:10]}"
    with postgres_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.url_for(name)
    with postgres_server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migration_0005_backfills_the_tree_of_an_existing_log(blank_database_url: str) -> None:
    """A log written at 0004 (no tree, v1 checkpoints) upgraded to 0005: the backfilled nodes are
    the tree's; the first checkpoint after recomputes from the entries and carries a root; proofs
    then work and the log verifies."""
    database_url = blank_database_url
    url = database_url.replace("postgresql://", "postgresql+psycopg://")
    engine = create_engine(url)
    config = MIGRATIONS.config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        config.attributes["version_table"] = MIGRATIONS.version_table
        command.upgrade(config, "0004_i16_decision_requirement")
    now = datetime.now(UTC)
    drafts = [AuditDraft("lineage.read", now, SYSTEM_ACTOR, None, {"n": n}) for n in range(300)]
    entries = chain(0, "0" * 64, drafts)
    signer = CheckpointSigner(Ed25519PrivateKey.generate())
    v1 = signer.sign(300, entries[-1].hash, now)
    with engine.begin() as conn:
        conn.execute(
            insert(audit_log),
            [
                {
                    "seq": e.seq,
                    "at": e.at,
                    "event": e.event,
                    "actor": e.actor,
                    "gate_id": None,
                    "body": e.body,
                    "prev_hash": e.prev_hash,
                    "hash": e.hash,
                }
                for e in entries
            ],
        )
        conn.execute(text("UPDATE gh_audit_head SET seq = 300, hash = :h"), {"h": entries[-1].hash})
        conn.execute(
            text(
                "INSERT INTO gh_audit_checkpoints (size, head_hash, at, key_id, signature) "
                "VALUES (:s, :h, :a, :k, :g)"
            ),
            {"s": 300, "h": v1.head_hash, "a": now, "k": v1.key_id, "g": v1.signature},
        )
    engine.dispose()
    store = SqlStore.open(database_url)  # migrates to 0005
    try:
        leaves = [leaf_hash(e.body.encode()) for e in entries]
        stored = {(lv, ix): h for lv, ix, h in store.tree_rows()}
        assert stored == _expected_nodes(leaves)
        assert len(stored) == 300 // 16 + 300 // 32 + 300 // 64 + 300 // 128 + 300 // 256
        gk = Gatekeeper(store, example_directory(), example_policy(), signer=signer)
        assert gk.audit.verify().ok  # the v1 checkpoint verifies
        bundle = json.loads(gk.audit.prove(150))
        assert bundle["size"] == 300
        assert verify_bundle(json.dumps(bundle), signer.public_key)["seq"] == 150
        v2 = [c for c in store.checkpoints() if c.root is not None]
        assert [(c.size, c.root) for c in v2] == [(300, root(leaves).hex())]  # signed for the proof
    finally:
        store.close()


@pytest.mark.parametrize("size", [1, 15, 16, 17, 255, 256, 257, 1000])
def test_the_frontier_is_the_tree(size: int) -> None:
    leaves = [leaf_hash(str(n).encode()) for n in range(size)]
    tree = Frontier()
    for leaf in leaves:
        tree.append(leaf)
    assert tree.root() == root(leaves)
    assert len(tree.hashes) == size.bit_count()
