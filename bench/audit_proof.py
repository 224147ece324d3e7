"""Inclusion and consistency proofs on a 10,000,000-entry audit log (target: ≤ 10 ms each).

Times ``AuditService.prove(seq)`` — the proof read from the stored tree (gh_audit_tree) in
O(log n) rows, checked against the newest signed root, wrapped with a signed checkpoint note —
and ``AuditService.consistency(old)`` for random entries, on SQLite and PostgreSQL, in a warm
service process and in a fresh one (first call: finds its newest checkpoint first). Side by side,
the anchor: pymerkle's ``SqliteTree`` (an independent RFC 9162 implementation that stores leaf
hashes and computes subtree roots on demand, with an LRU cache) proving the same entries.

    python -m bench.audit_proof              # 10,000,000 entries, SQLite + PostgreSQL + anchor
    python -m bench.audit_proof --quick      # 200,000 entries

How the log is built: writing 10 million entries through the Gatekeeper would take days, so
synthetic entries are generated — valid ones: canonical bodies (an extension event,
``lineage.read``, with a counter payload; checked against ``canonical_json`` for a sample),
chained with the real chain hash, with the real Merkle nodes and v2 checkpoints (signed roots)
every 256 entries as the signer writes them — and bulk-loaded (SQLite executemany in large
transactions, PostgreSQL COPY) into the real schema (``SqlStore.open`` runs the migrations).
The proofs are then made by the real code path, and each one is verified before it counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._common import (
    Figure,
    Stopwatch,
    at_most,
    info,
    percentile,
    postgres_base_url,
    print_figures,
    scratch_postgres,
    warn_if_busy,
    write_result,
)
from bench.audit_verify import PostgresSink, SqliteSink, _set_head
from gate_core import AuditService, Checkpoint, CheckpointSigner, SqlStore, verify_bundle
from gate_core._audit import GENESIS_HASH, AuditDraft, AuditEntry, entry_body
from gate_core._merkle import NODE_LEVEL, Frontier, verify_consistency
from gate_core._models import SYSTEM_ACTOR, canonical_json
from gate_core._tree import inclusion
from gate_core.testing import ManualClock

NAME = "audit_proof"
TARGET_MS = 10.0
FULL_ENTRIES = 10_000_000
QUICK_ENTRIES = 200_000
CHECKPOINT_EVERY = 256
SAMPLES = 300
AT = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)


def body_template() -> str:
    body = entry_body(1, AuditDraft("lineage.read", AT, SYSTEM_ACTOR, None, {"n": 0}))
    assert body.count('"n":0') == 1
    assert body.endswith(',"seq":1}')
    return body.replace('"n":0', '"n":%d').removesuffix(',"seq":1}') + ',"seq":%d}'


def synthetic_entries(
    total: int, chunk: int, signer: CheckpointSigner
) -> Iterator[tuple[list[AuditEntry], list[tuple[int, int, bytes]], list[Checkpoint]]]:
    """Chunks of valid chained entries, the Merkle nodes they complete, and signed checkpoints."""
    template = body_template()
    for seq in (1, 2, 999_999):  # the template is what canonical_json writes
        body = template % (seq, seq)
        assert canonical_json(json.loads(body)) == body
    sha256 = hashlib.sha256
    prev = GENESIS_HASH
    tree = Frontier()
    for start in range(1, total + 1, chunk):
        entries: list[AuditEntry] = []
        nodes: list[tuple[int, int, bytes]] = []
        marks: list[Checkpoint] = []
        for seq in range(start, min(start + chunk, total + 1)):
            body = template % (seq, seq)
            data = body.encode()
            digest = sha256(prev.encode() + b"\n" + data).hexdigest()
            entries.append(
                AuditEntry(seq, AT, "lineage.read", SYSTEM_ACTOR.principal_id, None, body, prev, digest)
            )
            prev = digest
            nodes += [n for n in tree.append(sha256(b"\x00" + data).digest()) if n[0] >= NODE_LEVEL]
            if seq % CHECKPOINT_EVERY == 0 or seq == total:
                marks.append(signer.sign(seq, digest, AT, tree.root()))
        yield entries, nodes, marks


def build(
    sinks: Sequence[SqliteSink | PostgresSink], signer: CheckpointSigner, total: int
) -> dict[str, float]:
    seconds = {s.label: 0.0 for s in sinks}
    seconds["generate"] = 0.0
    generated = Stopwatch()
    generated.__enter__()
    last: AuditEntry | None = None
    for entries, nodes, marks in synthetic_entries(total, 200_000, signer):
        generated.__exit__()
        seconds["generate"] += generated.seconds
        for sink in sinks:
            with Stopwatch() as loading:
                sink.write(entries)
                sink.write_nodes(nodes)
                sink.write_checkpoints(marks)
            seconds[sink.label] += loading.seconds
        last = entries[-1]
        print(f"    {last.seq:,} entries loaded", flush=True)
        generated.__enter__()
    assert last is not None
    for sink in sinks:
        with Stopwatch() as finishing:
            sink.finish()
            _set_head(sink.store, last.seq, last.hash)
        seconds[sink.label] += finishing.seconds
    return seconds


class CountingStore:
    """The rows a proof reads (for the O(log n) figure)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.rows = 0

    def tree_nodes(self, keys: Any) -> dict[tuple[int, int], bytes]:
        found = self.store.tree_nodes(keys)
        self.rows += len(found)
        return found

    def audit_bodies(self, first_seq: int, last_seq: int) -> dict[int, str]:
        found = self.store.audit_bodies(first_seq, last_seq)
        self.rows += len(found)
        return found


def measure(label: str, url: str, signer: CheckpointSigner, total: int, seqs: list[int]) -> list[Figure]:
    key = signer.public_key
    cold_store = SqlStore.open(url)
    with Stopwatch() as cold:
        first = AuditService(cold_store, ManualClock(), signer=signer).prove(seqs[0])
    verify_bundle(first, key)
    cold_store.close()

    store = SqlStore.open(url)
    audit = AuditService(store, ManualClock(), signer=signer)
    audit.prove(1)  # warm: the newest signed root is known, the pool has its connection
    prove_s, consistency_s, verify_s = [], [], []
    for seq in seqs:
        with Stopwatch() as proving:
            text = audit.prove(seq)
        prove_s.append(proving.seconds)
        with Stopwatch() as checking:
            if verify_bundle(text, key)["seq"] != seq:
                raise SystemExit(f"benchmark invalid: proof of {seq} is for another entry")
        verify_s.append(checking.seconds)
    import base64

    for seq in seqs:
        with Stopwatch() as proving:
            grown = audit.consistency(seq)
        consistency_s.append(proving.seconds)
        proof = [base64.b64decode(p) for p in grown["proof"]]
        old_root, new_root = base64.b64decode(grown["old_root"]), base64.b64decode(grown["new_root"])
        if grown["new_size"] != total or not verify_consistency(seq, total, proof, old_root, new_root):
            raise SystemExit(f"benchmark invalid: consistency {seq} → {total} does not verify")
    counting = CountingStore(store)
    rows = []
    for seq in seqs[:50]:
        counting.rows = 0
        inclusion(counting, seq - 1, total)
        rows.append(counting.rows)
    store.close()
    ms = 1000.0
    return [
        at_most(
            f"{label}: inclusion proof, {total:,} entries: p50", percentile(prove_s, 50) * ms, "ms", TARGET_MS
        ),
        info(f"{label}: inclusion proof, {total:,} entries: p99", percentile(prove_s, 99) * ms, "ms"),
        at_most(
            f"{label}: consistency proof, {total:,} entries: p50",
            percentile(consistency_s, 50) * ms,
            "ms",
            TARGET_MS,
        ),
        info(f"{label}: consistency proof, {total:,} entries: p99", percentile(consistency_s, 99) * ms, "ms"),
        info(
            f"{label}: first proof in a fresh process (finds its newest checkpoint)", cold.seconds * ms, "ms"
        ),
        info(f"{label}: rows read per inclusion proof (max)", max(rows), "rows"),
        info(f"{label}: auditor's verify_bundle p50", percentile(verify_s, 50) * ms, "ms"),
    ]


def pymerkle_anchor(tmp: Path, total: int, seqs: list[int]) -> list[Figure]:
    """pymerkle's SqliteTree over the same entry bodies: its proof computes subtree roots from the
    stored leaf hashes (cached in memory after the first), so its first proof reads the log."""
    from pymerkle import SqliteTree  # type: ignore[import-untyped]

    template = body_template()
    tree = SqliteTree(str(tmp / "pymerkle.db"), algorithm="sha256")
    with Stopwatch() as building:
        tree.append_entries((template % (seq, seq)).encode() for seq in range(1, total + 1))
    with Stopwatch() as cold:
        tree.prove_inclusion(seqs[0], total)
    warm = []
    for seq in seqs[1:]:
        with Stopwatch() as proving:
            tree.prove_inclusion(seq, total)
        warm.append(proving.seconds)
    tree.close()
    ms = 1000.0
    return [
        info(
            f"anchor pymerkle SqliteTree, {total:,} entries: first proof (cold cache)",
            cold.seconds * ms,
            "ms",
        ),
        info(
            f"anchor pymerkle SqliteTree, {total:,} entries: proof p50 (warm cache)",
            percentile(warm, 50) * ms,
            "ms",
        ),
        info("anchor pymerkle SqliteTree: build (append_entries)", building.seconds, "s"),
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_proof", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ENTRIES:,} entries (CI)")
    parser.add_argument("--entries", type=int, help=f"log size (default {FULL_ENTRIES:,})")
    parser.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--anchor", action=argparse.BooleanOptionalAction, default=True, help="pymerkle too")
    args = parser.parse_args(argv)
    if args.entries is None:
        args.entries = QUICK_ENTRIES if args.quick else FULL_ENTRIES
    return args


def run(args: argparse.Namespace, tmp: Path, postgres_url: str | None) -> None:
    signer = CheckpointSigner(Ed25519PrivateKey.generate())
    sinks: list[SqliteSink | PostgresSink] = []
    if args.sqlite:
        sinks.append(SqliteSink(tmp / "audit.db"))
    if postgres_url is not None:
        sinks.append(PostgresSink(postgres_url))
    print(
        f"building a synthetic audit log of {args.entries:,} entries in {', '.join(s.label for s in sinks)} …"
    )
    seconds = build(sinks, signer, args.entries)
    rng = random.Random(17)
    seqs = [rng.randint(1, args.entries) for _ in range(SAMPLES)]
    figures = [info("generate + chain + hash the tree, in memory", seconds["generate"], "s")]
    for sink in sinks:
        url = str(sink.store.engine.url.render_as_string(hide_password=False))
        sink.store.close()
        print(f"  proving on {sink.label} …")
        figures += measure(sink.label, url, signer, args.entries, seqs)
        figures.append(
            info(f"{sink.label}: bulk load (entries, nodes, checkpoints)", seconds[sink.label], "s")
        )
    if args.anchor:
        print("  the anchor: pymerkle SqliteTree over the same entries …")
        figures += pymerkle_anchor(tmp, args.entries, seqs[: SAMPLES // 3])
    print_figures(f"audit proofs, {args.entries:,} entries", figures)
    params = {
        "entries": args.entries,
        "samples": SAMPLES,
        "quick": args.quick,
        "backends": [s.label for s in sinks],
    }
    print(f"\nresults written to {write_result(NAME, figures, params)}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    warn_if_busy()
    with tempfile.TemporaryDirectory(prefix="gh_bench_") as tmp:
        if args.postgres:
            with scratch_postgres(postgres_base_url()) as url:
                run(args, Path(tmp), url)
        else:
            run(args, Path(tmp), None)


if __name__ == "__main__":
    main()
