"""Gate open + decide throughput with audit chaining (target: ≥ 1,000 decisions/s on PostgreSQL).

Drives the real Gatekeeper (example policy and directory, a checkpoint signer, the system clock)
on a real store, on PostgreSQL (a scratch database) and SQLite (a temp file):

  (a) one process opens a pii-export gate as alice and approves it as bob, over and over;
  (b) K worker processes, each with its own Gatekeeper and engine, open M gates between them,
      then all start together deciding them, each worker its own share, as K replicas behind a
      load balancer would — once one decision per transaction, once in group-commit batches.

Afterwards the whole audit log must verify.

    python -m bench.gate_throughput            # 10 s single-process runs, 4 workers × 3,000 gates
    python -m bench.gate_throughput --quick    # a few seconds per backend
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from bench._common import (
    Figure,
    Stopwatch,
    at_least,
    cpu_seconds,
    info,
    percentile,
    postgres_backends,
    postgres_base_url,
    print_figures,
    scratch_postgres,
    warn_if_busy,
    write_result,
)
from gate_core import (
    CheckpointSigner,
    DatasetRef,
    DecisionRequest,
    Gate,
    Gatekeeper,
    GateRequest,
    GateStatus,
    SqlStore,
    Verdict,
    VerifyReport,
)
from gate_core._store._schema import gates
from gate_core.testing import actor, example_directory, example_policy

NAME = "gate_throughput"
TARGET_DECISIONS_PER_S = 1_000.0  # on PostgreSQL
WARMUP_CYCLES = 20
WORKER_TIMEOUT_S = 300.0

REQUESTER = actor("alice")
APPROVER = actor("bob")


def pii_export() -> GateRequest:
    """The same request tests/gate_core/conftest.py builds: one approval from data-governance."""
    return GateRequest(
        action="export",
        target="s3://exports/customers.csv",
        datasets=(DatasetRef.parse("warehouse/customers#pii"),),
        requester="alice",
        reason="quarterly report",
    )


def new_gatekeeper(url: str, key_pem: bytes) -> Gatekeeper:
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    gatekeeper = Gatekeeper(
        SqlStore.open(url), example_directory(), example_policy(), signer=CheckpointSigner(key)
    )
    gatekeeper.record_configuration("example policy.yaml")
    return gatekeeper


def sql_store(gatekeeper: Gatekeeper) -> SqlStore:
    store = gatekeeper.store
    assert isinstance(store, SqlStore)
    return store


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True, slots=True)
class Cycle:
    """One open + approve: wall seconds and this process's CPU seconds for each half."""

    open_s: float
    decide_s: float
    open_cpu_s: float
    decide_cpu_s: float


def open_and_approve(gatekeeper: Gatekeeper, request: GateRequest) -> Cycle:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    gate = gatekeeper.open(request, submitted_by=REQUESTER)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    decided = gatekeeper.approve(gate.id, actor=APPROVER)
    cpu2, wall2 = time.process_time(), time.perf_counter()
    if decided.status is not GateStatus.APPROVED:
        raise SystemExit(f"benchmark invalid: gate {gate.id} ended {decided.status}, not APPROVED")
    return Cycle(wall1 - wall0, wall2 - wall1, cpu1 - cpu0, cpu2 - cpu1)


# ------------------------------------------------------------------ (a) single process


@dataclass(frozen=True, slots=True)
class SingleRun:
    cycles: list[Cycle]
    wall_s: float
    server_cpu_s: float | None  # PostgreSQL backends' CPU over the run, when they are local


def single_process(gatekeeper: Gatekeeper, duration_s: float) -> SingleRun:
    request = pii_export()
    for _ in range(WARMUP_CYCLES):  # connection pool, statement caches, first checkpoint
        open_and_approve(gatekeeper, request)
    backends = postgres_backends(sql_store(gatekeeper))
    server_before = cpu_seconds(backends)
    cycles = []
    start = time.perf_counter()
    deadline = start + duration_s
    while time.perf_counter() < deadline:
        cycles.append(open_and_approve(gatekeeper, request))
    wall = time.perf_counter() - start
    server_after = cpu_seconds(backends)
    server = None if server_before is None or server_after is None else server_after - server_before
    return SingleRun(cycles, wall, server)


def single_figures(label: str, run: SingleRun, target: float | None) -> list[Figure]:
    n = len(run.cycles)
    opens = [c.open_s for c in run.cycles]
    decides = [c.decide_s for c in run.cycles]
    prefix = f"{label} 1 proc"
    figures = [
        info(f"{prefix}: opens/s (time inside open)", n / sum(opens), "ops/s"),
        _maybe_target(f"{prefix}: decisions/s (time inside approve)", n / sum(decides), target),
        info(f"{prefix}: open+approve cycles/s (wall)", n / run.wall_s, "cycles/s"),
    ]
    for op, samples in (("open", opens), ("approve", decides)):
        figures += [
            info(f"{prefix}: {op} latency p50", percentile(samples, 50) * 1000, "ms"),
            info(f"{prefix}: {op} latency p99", percentile(samples, 99) * 1000, "ms"),
        ]
    figures += [
        info(f"{prefix}: client CPU per open (mean)", sum(c.open_cpu_s for c in run.cycles) / n * 1000, "ms"),
        info(
            f"{prefix}: client CPU per approve (mean)",
            sum(c.decide_cpu_s for c in run.cycles) / n * 1000,
            "ms",
        ),
    ]
    if run.server_cpu_s is not None:
        figures.append(
            info(f"{prefix}: server CPU per open+approve (mean)", run.server_cpu_s / n * 1000, "ms")
        )
    return figures


def _maybe_target(name: str, value: float, target: float | None) -> Figure:
    if target is None:
        return info(name, value, "decisions/s")
    return at_least(name, value, "decisions/s", target)


# ------------------------------------------------------------------ (b) concurrent workers


@dataclass(frozen=True, slots=True)
class WorkerResult:
    # time.monotonic() throughout: one system-wide clock, comparable across processes
    open_started: float
    open_finished: float
    started: float
    finished: float
    decide_s: list[float]


def decide_worker(
    url: str, key_pem: bytes, count: int, batches: Sequence[int], barriers: tuple[Any, Any], results: Any
) -> None:
    """A replica: its own Gatekeeper and engine, kept for every phase (spawning is slow). Per
    phase it opens its share of gates alongside the others (opening them all from one process
    took longer than deciding them), then waits for every replica before deciding the share,
    ``batch`` decisions per transaction (1, or group commit as the service does under load)."""
    opening, deciding = barriers
    try:
        gatekeeper = new_gatekeeper(url, key_pem)
        gatekeeper.store.audit_head()  # open the pool's first connection before the clock starts
        request = pii_export()
        for batch in batches:
            opening.wait(timeout=WORKER_TIMEOUT_S)
            open_started = time.monotonic()
            gate_ids = [gatekeeper.open(request, submitted_by=REQUESTER).id for _ in range(count)]
            open_finished = time.monotonic()
            deciding.wait(timeout=WORKER_TIMEOUT_S)
            started = time.monotonic()
            samples = decide_share(gatekeeper, gate_ids, batch)
            results.put(WorkerResult(open_started, open_finished, started, time.monotonic(), samples))
        sql_store(gatekeeper).close()
    except BaseException:
        for barrier in barriers:
            barrier.abort()  # free the others instead of leaving them waiting for a dead worker
        results.put(traceback.format_exc())


def decide_share(gatekeeper: Gatekeeper, gate_ids: Sequence[str], batch: int) -> list[float]:
    samples: list[float] = []
    for offset in range(0, len(gate_ids), batch):
        chunk = gate_ids[offset : offset + batch]
        begin = time.perf_counter()
        outcomes = gatekeeper.decide_many(
            [DecisionRequest(gate_id, APPROVER, Verdict.APPROVE) for gate_id in chunk]
        )
        samples += [time.perf_counter() - begin] * len(chunk)  # each waited for its whole batch
        for gate_id, gate in zip(chunk, outcomes, strict=True):
            if not isinstance(gate, Gate) or gate.status is not GateStatus.APPROVED:
                raise RuntimeError(f"gate {gate_id} ended {gate!r}, not APPROVED")
    return samples


@dataclass(frozen=True, slots=True)
class ConcurrentRun:
    workers: int
    batch: int
    gates: int
    open_wall_s: float
    decide_wall_s: float
    decide_s: list[float]


def concurrent(
    url: str, key_pem: bytes, workers: int, count: int, batches: Sequence[int]
) -> list[ConcurrentRun]:
    """One phase per batch size, all on the same K worker processes."""
    ctx = mp.get_context("spawn")
    barriers = (ctx.Barrier(workers), ctx.Barrier(workers))
    results = ctx.Queue()
    shares = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    procs = [
        ctx.Process(target=decide_worker, args=(url, key_pem, share, batches, barriers, results))
        for share in shares
    ]
    for proc in procs:
        proc.start()
    runs = []
    for batch in batches:
        print(f"  {workers} worker processes: open {count:,} gates, then decide them, batch {batch} …")
        outcomes = [results.get(timeout=WORKER_TIMEOUT_S) for _ in procs]
        failures = [o for o in outcomes if isinstance(o, str)]
        if failures:
            raise SystemExit("a worker failed:\n" + failures[0])
        done = [o for o in outcomes if isinstance(o, WorkerResult)]
        opening = max(r.open_finished for r in done) - min(r.open_started for r in done)
        deciding = max(r.finished for r in done) - min(r.started for r in done)
        samples = [s for r in done for s in r.decide_s]
        runs.append(ConcurrentRun(workers, batch, count, opening, deciding, samples))
    for proc in procs:
        proc.join(timeout=WORKER_TIMEOUT_S)
    return runs


def concurrent_figures(label: str, run: ConcurrentRun, target: float | None) -> list[Figure]:
    prefix = f"{label} {run.workers} procs, " + (
        "1 decision/tx" if run.batch == 1 else f"batches of {run.batch}"
    )
    return [
        _maybe_target(f"{prefix}: aggregate decisions/s", run.gates / run.decide_wall_s, target),
        info(f"{prefix}: approve latency p50", percentile(run.decide_s, 50) * 1000, "ms"),
        info(f"{prefix}: approve latency p99", percentile(run.decide_s, 99) * 1000, "ms"),
    ]


# ------------------------------------------------------------------ per backend


def approved_count(gatekeeper: Gatekeeper) -> int:
    with sql_store(gatekeeper).engine.connect() as conn:
        stmt = select(func.count()).select_from(gates).where(gates.c.status == GateStatus.APPROVED.value)
        return int(conn.execute(stmt).scalar_one())


def verify(gatekeeper: Gatekeeper, label: str) -> tuple[VerifyReport, float]:
    with Stopwatch() as watch:
        report = gatekeeper.audit.verify()
    print(f"  {label}: {report.summary()}  [{watch.seconds:.2f} s]")
    if not report.ok:
        raise SystemExit(f"benchmark invalid: the {label} audit log does not verify")
    return report, watch.seconds


def run_backend(label: str, url: str, args: argparse.Namespace, target: float | None) -> dict[str, Any]:
    key_pem = private_pem(Ed25519PrivateKey.generate())
    gatekeeper = new_gatekeeper(url, key_pem)
    print(f"{label}: single process, {args.duration:g} s …")
    single = single_process(gatekeeper, args.duration)
    print(f"{label}: concurrent …")
    runs = concurrent(url, key_pem, args.workers, args.gates, (1, args.batch))
    gatekeeper.audit.checkpoint()  # sign the final head, as a periodic job would
    report, verify_s = verify(gatekeeper, label)
    expected = WARMUP_CYCLES + len(single.cycles) + sum(run.gates for run in runs)
    if approved_count(gatekeeper) != expected:
        raise SystemExit(f"benchmark invalid: {label} has not exactly {expected} APPROVED gates")
    sql_store(gatekeeper).close()
    figures = single_figures(label, single, target)
    # Every phase opens its gates the same way; the first phase's rate stands for them all.
    figures.append(
        info(
            f"{label} {args.workers} procs: open {args.gates:,} gates (aggregate opens/s)",
            runs[0].gates / runs[0].open_wall_s,
            "ops/s",
        )
    )
    for run in runs:
        figures += concurrent_figures(label, run, target)
    figures += [
        info(f"{label}: audit entries written and verified", report.entries, "entries"),
        info(f"{label}: verify_audit() after the run", verify_s, "s"),
    ]
    return {"figures": figures, "audit": {"ok": report.ok, "summary": report.summary()}}


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gate_throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="short CI run")
    parser.add_argument("--duration", type=float, help="seconds of single-process cycling (default 10)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent decider processes")
    parser.add_argument(
        "--batch", type=int, default=64, help="decisions per transaction in the group-commit run"
    )
    parser.add_argument("--gates", type=int, help="gates pre-opened for the workers (default 3,000)")
    parser.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 1.0 if args.quick else 10.0
    if args.gates is None:
        args.gates = 200 if args.quick else 3_000
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    warn_if_busy()
    figures: list[Figure] = []
    audits: dict[str, Any] = {}
    if args.postgres:
        with scratch_postgres(postgres_base_url()) as url:
            outcome = run_backend("PostgreSQL", url, args, TARGET_DECISIONS_PER_S)
        figures += outcome["figures"]
        audits["PostgreSQL"] = outcome["audit"]
    if args.sqlite:
        with tempfile.TemporaryDirectory(prefix="gh_bench_") as tmp:
            outcome = run_backend("SQLite", f"sqlite:///{Path(tmp) / 'gates.db'}", args, None)
        figures += outcome["figures"]
        audits["SQLite"] = outcome["audit"]
    if not figures:
        raise SystemExit("nothing to do: both --no-sqlite and --no-postgres given")

    print_figures("gate open + decide throughput", figures)
    params = {
        "quick": args.quick,
        "single_process_seconds": args.duration,
        "warmup_cycles": WARMUP_CYCLES,
        "workers": args.workers,
        "gates_decided_concurrently": args.gates,
        "group_commit_batch": args.batch,
        "request": "pii export by alice, approved by bob (1 approval)",
    }
    print(f"\nresults written to {write_result(NAME, figures, params, {'audit': audits})}")


if __name__ == "__main__":
    main()
