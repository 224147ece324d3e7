"""Adversary O against the stored Merkle tree (gh_audit_tree). Property 5: proofs are read from
rows an operator can edit, so nothing in them is trusted — every proof is checked against a
signed root before it is handed out, the signer never builds on a node it has not checked, and
`gatehouse audit verify` recomputes the tree from the entries and names an edited node.

The attacks run as O would: plain SQL on the real database (triggers lifted as the table owner
may), the real `gatehouse` CLI in a subprocess for the victim's view, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import text

from gate_core import Gatekeeper, verify_bundle
from gate_core._audit import load_public_key
from gate_core._errors import AuditError
from gate_core._home import Settings, open_gatekeeper
from gate_core._merkle import NODE_LEVEL, Frontier, leaf_hash, root
from gate_core._proofs import bundle
from gate_core._tree import inclusion
from gate_core.testing import actor
from tests.conftest import Report
from tests.gate_core.conftest import prod_redeploy
from tests.security._operator import Body, rewrite, run_sql
from tests.security.test_operator_O import World, world  # noqa: F401 - the CLI home fixture

FORGED = b"\xee" * 32


@pytest.fixture
def grown(world: World) -> World:  # noqa: F811 - the fixture imported above
    """The CLI home with ~80 entries (stored nodes up to level 6), signed."""
    gatekeeper = _gatekeeper(world)
    for _ in range(12):
        gate = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
        gatekeeper.approve(gate.id, actor=actor("bob"))
        gatekeeper.approve(gate.id, actor=actor("dave"))
    assert gatekeeper.audit.checkpoint() is not None
    gatekeeper.store.close()
    return world


def _size(home: World) -> int:
    with home.engine.connect() as conn:
        return int(conn.execute(text("SELECT max(seq) FROM gh_audit_log")).scalar_one())


def _entries(home: World) -> list[str]:
    with home.engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(text("SELECT body FROM gh_audit_log ORDER BY seq"))]


def _forge(home: World, level: int, index: int) -> None:
    statement = "UPDATE gh_audit_tree SET hash = :h WHERE level = :l AND idx = :i"
    run_sql(home.engine, statement, h=FORGED, l=level, i=index)


def _gatekeeper(home: World) -> Gatekeeper:
    """The home's core in this process (as a fresh process has it: nothing of the tree in memory)."""
    env = {"GATEHOUSE_HOME": str(home.home), "GATEHOUSE_DATABASE_URL": home.database_url}
    return open_gatekeeper(Settings.from_env(env))


def test_an_edited_node_yields_no_proof_and_verify_names_it(grown: World, report: Report) -> None:
    _forge(grown, NODE_LEVEL, 0)  # the subtree over entries 1…16: the sibling on entry 20's path
    seq = 20
    refused = grown.gatehouse("audit", "prove", str(seq))
    assert refused.code == 1, refused.out + refused.err
    assert "refusing to prove" in refused.err and "does not match the root" in refused.err

    # The proof the forged table gives, under the genuine signed root: no verifier accepts it.
    gatekeeper = _gatekeeper(grown)
    try:
        mark = max((c for c in gatekeeper.store.checkpoints() if c.root), key=lambda c: c.size)
        body, path = inclusion(gatekeeper.store, seq - 1, mark.size)
        note = gatekeeper.audit._note(mark.size, bytes.fromhex(str(mark.root)))
        with pytest.raises(AuditError, match="proof fails"):
            verify_bundle(
                bundle(body, seq - 1, mark.size, path, note),
                load_public_key(grown.home / "audit-signing.pub"),
            )
    finally:
        gatekeeper.store.close()

    verdict = grown.verify()
    assert verdict.code == 1
    problem = json.loads(verdict.out)["problem"]
    assert "stored Merkle tree node (level 4, index 0)" in problem and "gh_audit_tree edited" in problem
    report(
        f"Tamper O ({grown.engine.dialect.name}): Merkle tree node edited",
        "proof refused, forged proof rejected, verify names the node",
        "",
        "detected",
    )


def test_an_entry_rewritten_with_its_whole_tree_recomputed_is_never_proved(
    grown: World, report: Report
) -> None:
    """O rewrites an approval (carol instead of bob), rechains the log and replaces every node so
    the table is the honest tree of the forged log: the proof still has to meet the signed root."""

    def reattribute(entries: list[Body]) -> list[Body]:
        for body in entries:
            if body["actor"]["principal_id"] == "bob":
                body["actor"] = {**body["actor"], "principal_id": "carol"}
        return entries

    rewrite(grown.engine, reattribute)
    bodies = _entries(grown)
    tree = Frontier()
    nodes = []
    for body in bodies:
        nodes += [n for n in tree.append(leaf_hash(body.encode())) if n[0] >= NODE_LEVEL]
    run_sql(grown.engine, "DELETE FROM gh_audit_tree")
    with grown.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO gh_audit_tree (level, idx, hash) VALUES (:l, :i, :h)"),
            [{"l": lv, "i": ix, "h": h} for lv, ix, h in nodes],
        )
    seq = next(n for n, b in enumerate(bodies, start=1) if '"principal_id":"carol"' in b)
    refused = grown.gatehouse("audit", "prove", str(seq))
    assert refused.code == 1, refused.out + refused.err
    assert "refusing to" in refused.err
    assert grown.verify().code == 1
    assert root([leaf_hash(b.encode()) for b in bodies]) == tree.root()
    report(
        f"Tamper O ({grown.engine.dialect.name}): entry rewritten, chain and whole tree recomputed",
        "proof refused, verify fails",
        "",
        "detected",
    )


def test_the_signer_never_builds_on_an_edited_edge(
    grown: World, report: Report, caplog: pytest.LogCaptureFixture
) -> None:
    """O edits a node on the tree's right edge, which the next checkpoint would extend: the
    signer checks the stored edge against the root it signed, recomputes from the entries, and
    signs the true root."""
    size = _size(grown)
    top = size.bit_length() - 1  # the largest perfect subtree: (top, 0)
    assert top >= NODE_LEVEL
    _forge(grown, top, 0)
    gatekeeper = _gatekeeper(grown)
    try:
        gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
        with caplog.at_level(logging.ERROR, logger="gatehouse.audit"):
            mark = gatekeeper.audit.checkpoint()
        assert mark is not None
        assert "disagree with the root signed" in caplog.text
        assert mark.root == root([leaf_hash(b.encode()) for b in _entries(grown)]).hex()
    finally:
        gatekeeper.store.close()
    assert grown.verify().code == 1  # the edited node is still there, and named
    report(
        f"Tamper O ({grown.engine.dialect.name}): Merkle tree edge edited before the next checkpoint",
        "signer recomputed, signed the true root",
        "",
        "not built on",
    )


def test_a_node_planted_ahead_of_the_signer_is_caught(grown: World, report: Report) -> None:
    """O inserts the node the next checkpoint will complete, with a wrong hash (INSERT is all the
    service role needs, so this is the one edit it could make). The signer keeps rows it finds
    (never mends history), so the plant stays — and is refused and named."""
    size = _size(grown)
    index = size // 16  # the block being filled: complete after at most 16 more entries
    with grown.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO gh_audit_tree (level, idx, hash) VALUES (4, :i, :h)"), {"i": index, "h": FORGED}
        )
    gatekeeper = _gatekeeper(grown)
    try:
        while gatekeeper.store.audit_head()[0] <= (index + 1) * 16:
            gate = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
            gatekeeper.approve(gate.id, actor=actor("bob"))
        assert gatekeeper.audit.checkpoint() is not None
        # the planted subtree is the sibling on the path of every entry of the next block
        with pytest.raises(AuditError, match="refusing to prove"):
            gatekeeper.audit.prove((index + 1) * 16 + 1)
    finally:
        gatekeeper.store.close()
    verdict = grown.verify()
    assert verdict.code == 1
    assert f"(level 4, index {index})" in json.loads(verdict.out)["problem"]
    report(
        f"Tamper O ({grown.engine.dialect.name}): Merkle tree node planted ahead of the signer",
        "proof refused, verify names the node",
        "",
        "detected",
    )
