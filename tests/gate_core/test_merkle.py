"""The RFC 9162 tree, cross-checked against an independent implementation (pymerkle, which
follows RFC 9162's hashing with its default security prefixes): the same roots for every size,
the same inclusion paths, consistency between every pair of sizes, and any changed byte fails."""

from __future__ import annotations

import hashlib

import pytest
from pymerkle import (
    InmemoryTree,
)
from pymerkle import (
    verify_consistency as their_consistency,
)
from pymerkle import (
    verify_inclusion as their_inclusion,
)

from gate_core._merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

ENTRIES = [f'{{"event":"gate.requested","seq":{n}}}'.encode() for n in range(1, 34)]


def _theirs(count: int) -> InmemoryTree:
    tree = InmemoryTree(algorithm="sha256")
    for entry in ENTRIES[:count]:
        tree.append_entry(entry)
    return tree


def test_hashing_is_rfc_9162() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    a, b, c = (leaf_hash(e) for e in ENTRIES[:3])
    ab = hashlib.sha256(b"\x01" + a + b).digest()
    assert root([a, b, c]) == hashlib.sha256(b"\x01" + ab + c).digest()


@pytest.mark.parametrize("size", range(1, len(ENTRIES) + 1))
def test_roots_and_inclusion_paths_match_the_independent_implementation(size: int) -> None:
    theirs = _theirs(size)
    leaves = [leaf_hash(e) for e in ENTRIES[:size]]
    assert root(leaves) == theirs.get_root(size)
    for index in range(size):
        ours = inclusion_proof(leaves, index)
        proof = theirs.prove_inclusion(index + 1, size)  # pymerkle counts leaves from 1
        assert [bytes.fromhex(h) for h in proof.serialize()["path"][1:]] == ours
        their_inclusion(leaves[index], root(leaves), proof)  # raises if it does not verify
        assert verify_inclusion(leaves[index], index, size, ours, root(leaves))


@pytest.mark.parametrize("new", [1, 2, 3, 7, 8, 9, 16, 17, 33])
def test_consistency_between_every_pair_of_sizes(new: int) -> None:
    leaves = [leaf_hash(e) for e in ENTRIES[:new]]
    theirs = _theirs(new)
    for old in range(1, new + 1):
        proof = consistency_proof(leaves, old)
        assert verify_consistency(old, new, proof, root(leaves[:old]), root(leaves))
        their_consistency(root(leaves[:old]), root(leaves), theirs.prove_consistency(old, new))
        if old < new:
            other = root([leaf_hash(b"forged"), *leaves[1:old]])
            assert not verify_consistency(old, new, proof, other, root(leaves))


def test_any_changed_byte_fails() -> None:
    leaves = [leaf_hash(e) for e in ENTRIES[:21]]
    head = root(leaves)
    proof = inclusion_proof(leaves, 12)
    entry = ENTRIES[12]
    for i in range(len(entry)):
        changed = entry[:i] + bytes([entry[i] ^ 1]) + entry[i + 1 :]
        assert not verify_inclusion(leaf_hash(changed), 12, 21, proof, head)
    for n, step in enumerate(proof):
        for i in range(len(step)):
            bad = [*proof]
            bad[n] = step[:i] + bytes([step[i] ^ 1]) + step[i + 1 :]
            assert not verify_inclusion(leaves[12], 12, 21, bad, head)
    assert not verify_inclusion(leaves[12], 13, 21, proof, head)
    assert not verify_consistency(5, 21, [], root(leaves[:5]), head)
