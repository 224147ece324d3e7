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
# gh_audit_tree stores perfect subtrees from this level up (one row per 16 entries, on average
# 1/8 row per entry); a proof hashes the levels below from at most 16 entries per edge it needs.
NODE_LEVEL = 4


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


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges ``[lo, hi)`` whose subtree roots form PATH(index, D[size]) of RFC 9162
    §2.1.3.1, in proof order (nearest sibling first)."""
    if not 0 <= index < size:
        raise AuditError(f"no leaf {index} in a tree of {size}")
    siblings: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            siblings.append((lo + k, hi))
            hi = lo + k
        else:
            siblings.append((lo, lo + k))
            lo = lo + k
    return siblings[::-1]


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The leaf ranges whose subtree roots form PROOF(old, D[new]) of RFC 9162 §2.1.4.1."""
    if not 0 <= old <= new:
        raise AuditError(f"cannot prove size {old} against a tree of {new}")
    if old in (0, new):
        return []
    return _subranges(0, new, old, True)


def _subranges(lo: int, hi: int, m: int, complete: bool) -> list[tuple[int, int]]:
    n = hi - lo
    if m == n:
        return [] if complete else [(lo, hi)]
    k = _split(n)
    if m <= k:
        return [*_subranges(lo, lo + k, m, complete), (lo + k, hi)]
    return [*_subranges(lo + k, hi, m - k, False), (lo, lo + k)]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, for the leaf at 0-based ``index``."""
    return [root(leaves[lo:hi]) for lo, hi in inclusion_ranges(index, len(leaves))]


def consistency_proof(leaves: Sequence[bytes], old: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1: a tree of ``old`` leaves is a prefix of ``leaves``."""
    if not 0 <= old <= len(leaves):
        raise AuditError(f"cannot prove size {old} against a tree of {len(leaves)}")
    return [root(leaves[lo:hi]) for lo, hi in consistency_ranges(old, len(leaves))]


# ---------------------------------------------------------------- stored subtrees

Node = tuple[int, int]  # (level, index): the perfect subtree over leaves [index·2^level, (index+1)·2^level)


def perfect_subtrees(lo: int, hi: int) -> list[Node]:
    """The perfect subtrees that make up ``[lo, hi)``, left to right, largest first — for every
    range an RFC 9162 proof or root uses (``lo`` is a multiple of the largest power of two not
    above ``hi - lo``). MTH([lo, hi)) is their fold from the right (:func:`fold`)."""
    nodes: list[Node] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        if lo & ((1 << level) - 1):
            raise AuditError(f"range [{lo}, {hi}) is not one an RFC 9162 proof splits into")
        nodes.append((level, lo >> level))
        lo += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """The root over perfect subtrees given left to right, largest first (RFC 9162 splits off
    the largest power of two on the left, so the right part is folded first)."""
    digest = hashes[-1]
    for left in reversed(hashes[:-1]):
        digest = node_hash(left, digest)
    return digest


class Frontier:
    """The right edge of a growing tree (a compact range from 0): one perfect subtree root per
    set bit of ``size``, enough to append leaves and to compute the root in O(log n), and to
    say which perfect subtrees each new leaf completes — what the signer stores."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise AuditError(
                f"a frontier of {size} leaves has {size.bit_count()} subtrees, not {len(hashes)}"
            )
        self.size = size
        self.hashes = list(hashes)  # largest subtree first, as perfect_subtrees(0, size) lists them

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; returns the perfect subtrees ``(level, index, hash)`` it completed
        above the leaf itself, lowest first."""
        completed: list[tuple[int, int, bytes]] = []
        digest, index, level = leaf, self.size, 0
        while index & 1:
            digest = node_hash(self.hashes.pop(), digest)
            index >>= 1
            level += 1
            completed.append((level, index, digest))
        self.hashes.append(digest)
        self.size += 1
        return completed

    def root(self) -> bytes:
        return fold(self.hashes) if self.hashes else EMPTY_ROOT

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)


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
