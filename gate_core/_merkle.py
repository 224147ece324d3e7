"""RFC 9162 Merkle tree over the audit log, and proofs that check without the database.

Leaves are the entries' canonical bodies, exactly the bytes the hash chain covers:

    leaf  = SHA-256(0x00 ‖ body)          node = SHA-256(0x01 ‖ left ‖ right)
    MTH({}) = SHA-256(""),  MTH(D[n]) splits at the largest power of two below n (RFC 9162 §2.1.1)

An inclusion proof (§2.1.3) shows one entry is leaf ``index`` of a tree of ``size`` with a given
root in O(log n) hashes; a consistency proof (§2.1.4) shows a tree of ``old`` leaves is a prefix of
one of ``new`` leaves — the log only grew. The verifiers are the RFC's §2.1.3.2 and §2.1.4.2
algorithms, written from the text; tests cross-check them against an independent implementation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from gate_core._errors import AuditError

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(body: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + body).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, bottom-up in O(n) time and O(log n) extra memory."""
    if not leaves:
        return EMPTY_ROOT
    stack: list[tuple[int, bytes]] = []  # (height, hash) of complete subtrees, left to right
    for leaf in leaves:
        height, digest = 0, leaf
        while stack and stack[-1][0] == height:
            digest = node_hash(stack.pop()[1], digest)
            height += 1
        stack.append((height, digest))
    digest = stack.pop()[1]
    while stack:
        digest = node_hash(stack.pop()[1], digest)
    return digest


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, for the leaf at 0-based ``index``."""
    if not 0 <= index < len(leaves):
        raise AuditError(f"no leaf {index} in a tree of {len(leaves)}")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    siblings: list[bytes] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            siblings.append(root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            siblings.append(root(leaves[lo : lo + k]))
            lo = lo + k
    path.extend(reversed(siblings))
    return path


def consistency_proof(leaves: Sequence[bytes], old: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1: a tree of ``old`` leaves is a prefix of ``leaves``."""
    if not 0 <= old <= len(leaves):
        raise AuditError(f"cannot prove size {old} against a tree of {len(leaves)}")
    if old in (0, len(leaves)):
        return []
    return _subproof(leaves, old, True)


def _subproof(leaves: Sequence[bytes], m: int, complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(leaves[:k], m, complete), root(leaves[k:])]
    return [*_subproof(leaves[k:], m - k, False), root(leaves[:k])]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``leaf`` (a leaf hash) sit at ``index`` of the tree with this root?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(old: int, new: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of ``old`` leaves with ``old_root`` a prefix of the tree of
    ``new`` leaves with ``new_root``?"""
    if old > new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0 or not proof:
        return old == 0 and not proof
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
