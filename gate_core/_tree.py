"""The audit log's RFC 9162 tree as stored, and proofs read from it in O(log n) rows.

``gh_audit_tree`` holds the hash of every perfect subtree from level ``NODE_LEVEL`` (16 leaves)
up, keyed by ``(level, index)``; the signer writes the ones each checkpoint completes in the
checkpoint's own transaction (:meth:`AuditService.checkpoint`), computed from entries it has
just chain-checked. Levels below are hashed from the entries themselves — at most one block of
16 per edge a proof touches — so the table stays at 1/8 row per entry.

Nothing read here is trusted: a node is a row an operator can edit. Every root and proof built
from the table is checked against a signed checkpoint's root before it is used or handed out
(an edited node yields a proof that fails, and `gatehouse audit verify` names the node).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

from gate_core._errors import AuditError
from gate_core._merkle import (
    NODE_LEVEL,
    Frontier,
    Node,
    consistency_ranges,
    fold,
    inclusion_ranges,
    leaf_hash,
    perfect_subtrees,
    root,
)

StoredNode = tuple[int, int, bytes]  # (level, index, hash)


class TreeSource(Protocol):
    """What reading the tree needs from a store."""

    def tree_nodes(self, keys: Collection[Node]) -> dict[Node, bytes]: ...

    def audit_bodies(self, first_seq: int, last_seq: int) -> dict[int, str]: ...


@dataclass(frozen=True, slots=True)
class Subtrees:
    """Hashes of the perfect subtrees a proof needs, and the entry bodies read on the way."""

    hashes: dict[Node, bytes]
    bodies: dict[int, str]  # seq → body

    def range_root(self, lo: int, hi: int) -> bytes:
        return fold([self.hashes[n] for n in perfect_subtrees(lo, hi)])


def read_subtrees(source: TreeSource, wanted: Iterable[Node]) -> Subtrees:
    """The hashes of ``wanted``: from the table at and above NODE_LEVEL, hashed from the entries
    below it (one read per block of 16 entries). AuditError names what is missing."""
    nodes = set(wanted)
    high = [n for n in nodes if n[0] >= NODE_LEVEL]
    hashes = source.tree_nodes(high) if high else {}
    missing = sorted(n for n in high if n not in hashes)
    if missing:
        level, index = missing[0]
        raise AuditError(
            f"the stored Merkle tree lacks node (level {level}, index {index}) and {len(missing) - 1} more "
            "(gh_audit_tree incomplete: rows deleted, or written by a version without it)"
        )
    spans: dict[int, tuple[int, int]] = {}  # block → leaf span [lo, hi) of the low nodes in it
    for level, index in nodes:
        if level < NODE_LEVEL:
            lo, hi = index << level, (index + 1) << level
            block = lo >> NODE_LEVEL
            known = spans.get(block)
            spans[block] = (lo, hi) if known is None else (min(known[0], lo), max(known[1], hi))
    bodies: dict[int, str] = {}
    for lo, hi in spans.values():
        found = source.audit_bodies(lo + 1, hi)
        if len(found) != hi - lo:
            raise AuditError(f"entries {lo + 1}…{hi} are not all in the log")
        bodies.update(found)
    for level, index in nodes:
        if level < NODE_LEVEL:
            lo = index << level
            hashes[(level, index)] = root(
                [leaf_hash(bodies[seq].encode()) for seq in range(lo + 1, lo + 1 + (1 << level))]
            )
    return Subtrees(hashes, bodies)


def inclusion(source: TreeSource, index: int, size: int) -> tuple[str, list[bytes]]:
    """The body of leaf ``index`` and its inclusion path in the tree of ``size`` leaves."""
    ranges = inclusion_ranges(index, size)
    wanted = {(0, index), *(n for r in ranges for n in perfect_subtrees(*r))}
    found = read_subtrees(source, wanted)
    return found.bodies[index + 1], [found.range_root(lo, hi) for lo, hi in ranges]


def consistency(source: TreeSource, old: int, new: int) -> tuple[bytes, bytes, list[bytes]]:
    """``(root at old, root at new, consistency proof old → new)``, all from the stored tree."""
    ranges = consistency_ranges(old, new)
    wanted = {*perfect_subtrees(0, old), *perfect_subtrees(0, new)}
    wanted |= {n for r in ranges for n in perfect_subtrees(*r)}
    found = read_subtrees(source, wanted)
    old_root = found.range_root(0, old) if old else root([])
    new_root = found.range_root(0, new) if new else root([])
    return old_root, new_root, [found.range_root(lo, hi) for lo, hi in ranges]


def frontier(source: TreeSource, size: int) -> Frontier:
    """The tree's right edge at ``size``, from the stored tree (check its root before trusting it)."""
    edge = perfect_subtrees(0, size)
    found = read_subtrees(source, edge)
    return Frontier(size, [found.hashes[n] for n in edge])


def stored_nodes(completed: Iterable[StoredNode]) -> list[StoredNode]:
    """The subtrees a growing frontier completed that the table keeps (NODE_LEVEL and up)."""
    return [n for n in completed if n[0] >= NODE_LEVEL]
