"""The OpenLineage receiver (issue 22) on a real `gatehouse serve` over loopback, on PostgreSQL
(targets: ≥ 20,000 events/s in batches on 2 cores; single-event p99 ≤ 50 ms; the approval scope
check ≤ 1 ms per event).

A scratch PostgreSQL database (dropped afterwards) holds an example home's gate store, one
approved and consumed pii-export gate for an Airflow DAG run, and a ``lineage`` token minted for
etl-bot by frank (gatehouse-admins). Events are Airflow task RunEvents in the shape Airflow's
OpenLineage provider sends (``airflow`` and ``parent`` run facets, ``jobType`` and ``sql`` job
facets, one input and one output dataset with schema, dataSource and statistics facets): half in
the gated DAG run — so every one of them goes through the scope check — half in ungated runs.

  (a) batches: C client threads post N events in batches of B to ``/api/v1/lineage/batch`` of
      S servers (replicas: ``gatehouse serve`` processes on one database, thread i to server
      i mod S); events/s = N / wall time, every response must be 201 and the responses must
      count every access recorded; the CPU per event of the servers and of the PostgreSQL
      backends is reported beside it;
  (b) single events: sequential posts to ``/api/v1/lineage``; p50/p99 of the round trip;
  (f) the floor, the anchor of (a): PostgreSQL alone storing the very rows (a) makes it store —
      each event's access rows and their tag rows, and its runId claim — precomputed in the
      benchmark process and sent with binary COPY from 2 connections, nothing else: no HTTP, no
      JSON, no lookups. Its PostgreSQL CPU per event bounds (a) from below on this machine;
  (c) scope check: in the benchmark process, over the same database, the time the receiver spends
      on the scope check — looking up the gates of each run of a batch and ``lineage._scope.check``
      for every access — divided by the events of the batch.

The load generator shares the 2 cores with the servers and PostgreSQL; figures are pessimistic on
a busy machine (the result records the load average).

    python -m bench.openlineage_receiver            # 40,000 events, batches of 250, 2 servers, 300 singles
    python -m bench.openlineage_receiver --servers 1 --clients 2   # one process
    python -m bench.openlineage_receiver --quick    # 4,000 events, 60 singles
    python -m bench.openlineage_receiver --quick --profile /tmp/ol.txt
        # also: py-spy (--gil) the first server during the timed batches
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench._common import (
    Figure,
    at_least,
    at_most,
    collapsed_stacks,
    info,
    libpq_url,
    percentile,
    postgres_base_url,
    print_figures,
    scratch_postgres,
    warn_if_busy,
    write_result,
)

NAME = "openlineage_receiver"
TARGET_EVENTS_PER_S = 20_000.0
TARGET_SINGLE_P99_MS = 50.0
TARGET_SCOPE_MS_PER_EVENT = 1.0
PG = "postgres://warehouse.internal:5432"
DAG = "bench_export"
GATED_RUN = "manual__2026-01-01T00:00:00+00:00"


def event(run_id: str, task: str, n: int) -> dict[str, Any]:
    """One Airflow task RunEvent as the provider posts it."""
    producer = "https://github.com/apache/airflow/tree/providers-openlineage/2.20.3"
    facet = {"_producer": producer, "_schemaURL": "https://openlineage.io/spec/facets/1-0-0/X.json"}
    ol_run = str(uuid.uuid4())
    return {
        "eventType": "COMPLETE",
        "eventTime": datetime.now(UTC).isoformat(),
        "producer": producer,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {
            "runId": ol_run,
            "facets": {
                "airflow": {
                    **facet,
                    "dag": {"dag_id": DAG, "owner": "alice"},
                    "dagRun": {"dag_id": DAG, "run_id": run_id, "conf": {}, "run_type": "manual"},
                    "task": {"task_id": task, "operator_class": "SQLExecuteQueryOperator"},
                    "taskInstance": {"try_number": 1, "map_index": None},
                    "taskUuid": ol_run,
                },
                "parent": {
                    **facet,
                    "run": {"runId": str(uuid.uuid5(uuid.NAMESPACE_URL, run_id))},
                    "job": {"namespace": "default", "name": DAG},
                },
            },
        },
        "job": {
            "namespace": "default",
            "name": f"{DAG}.{task}",
            "facets": {
                "jobType": {**facet, "processingType": "BATCH", "integration": "AIRFLOW", "jobType": "TASK"},
                "sql": {
                    **facet,
                    "query": "INSERT INTO marts.customers_export SELECT id, region FROM core.customers",
                },
            },
        },
        "inputs": [
            {
                "namespace": PG,
                "name": "analytics.core.customers",
                "facets": {
                    "schema": {
                        **facet,
                        "fields": [
                            {"name": "id", "type": "integer"},
                            {"name": "email", "type": "text"},
                            {"name": "region", "type": "text"},
                        ],
                    },
                    "dataSource": {**facet, "name": PG, "uri": PG},
                },
                "inputFacets": {"inputStatistics": {**facet, "rowCount": n, "size": n * 40}},
            }
        ],
        "outputs": [
            {
                "namespace": PG,
                "name": "analytics.marts.customers_export",
                "facets": {
                    "schema": {
                        **facet,
                        "fields": [{"name": "id", "type": "integer"}, {"name": "region", "type": "text"}],
                    }
                },
                "outputFacets": {"outputStatistics": {**facet, "rowCount": n, "size": n * 20}},
            }
        ],
    }


def events(count: int) -> list[dict[str, Any]]:
    """Half in the gated DAG run (scope-checked), half in 50 ungated runs."""
    return [
        event(GATED_RUN if i % 2 == 0 else f"scheduled__{i % 50}", f"task_{i % 20}", i) for i in range(count)
    ]


def setup(database_url: str, home: Path) -> tuple[Any, str]:
    from gate_core import DatasetRef, GateRequest, RunContext, Scope, Settings, init_home, open_gatekeeper
    from gate_core.testing import actor

    settings = Settings(
        home=home,
        database_url=database_url,
        policy_path=home / "policy.yaml",
        directory_path=home / "directory.yaml",
    )
    init_home(settings, example=True)
    gatekeeper = open_gatekeeper(settings)
    request = GateRequest(
        action="export",
        target=f"{PG}/analytics.marts.customers_export",
        datasets=(DatasetRef(namespace=PG, name="analytics.core.customers", tags=frozenset({"pii"})),),
        requester="dave",
        run=RunContext(orchestrator="airflow", pipeline=DAG, run_id=GATED_RUN, task_id="approve"),
    )
    gate = gatekeeper.open(request, submitted_by=actor("etl-bot"))
    gatekeeper.approve(gate.id, actor=actor("bob"))
    gatekeeper.consume(gate.id, actor=actor("etl-bot"), binding_hash=request.binding_hash())
    _, token = gatekeeper.tokens.create("etl-bot", Scope.LINEAGE, created_by=actor("frank"))
    return gatekeeper, token


def serve(home: Path, database_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "GATEHOUSE_HOME": str(home), "GATEHOUSE_DATABASE_URL": database_url}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gate_core.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"gatehouse serve did not start:\n{log.read_text()[-3000:]}")


def _timed(threads: list[threading.Thread]) -> float:
    """Seconds from starting ``threads`` to the last one's end."""
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def batches(bases: list[str], token: str, payload: list[dict[str, Any]], size: int, clients: int) -> float:
    """Post ``payload`` in batches of ``size`` from ``clients`` threads, thread i to server i mod N."""
    bodies = [json.dumps(payload[i : i + size]).encode() for i in range(0, len(payload), size)]
    failures: list[str] = []
    recorded: list[int] = []
    lock = threading.Lock()

    def work(base: str, mine: list[bytes]) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
            for body in mine:
                response = client.post(
                    "/api/v1/lineage/batch", content=body, headers={"Content-Type": "application/json"}
                )
                with lock:
                    if response.status_code != 201:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                    else:
                        recorded.append(response.json()["recorded"])

    threads = [
        threading.Thread(target=work, args=(bases[i % len(bases)], bodies[i::clients]))
        for i in range(clients)
    ]
    elapsed = _timed(threads)
    if failures:
        raise SystemExit(f"{len(failures)} batch(es) refused, first: {failures[0]}")
    accesses = sum(len(e["inputs"]) + len(e["outputs"]) for e in payload)  # every one is new
    if sum(recorded) != accesses:
        raise SystemExit(f"benchmark invalid: {sum(recorded)} accesses recorded of {accesses} sent")
    return elapsed


def singles(base: str, token: str, count: int) -> list[float]:
    samples = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for i in range(count):
            body = json.dumps(event(GATED_RUN, "single", i)).encode()
            started = time.perf_counter()
            response = client.post(
                "/api/v1/lineage", content=body, headers={"Content-Type": "application/json"}
            )
            samples.append((time.perf_counter() - started) * 1000)
            if response.status_code != 201:
                raise SystemExit(f"single event refused: {response.status_code} {response.text[:200]}")
    return samples


def _in_process(gatekeeper: Any, payload: list[dict[str, Any]]) -> tuple[Any, list[Any], dict[str, Any]]:
    """The receiver's ingest over the benchmark's database, ``payload`` reduced as the receiver
    reduces it, and the runId claims the receiver works out for it (etl-bot's; not stored)."""
    from gate_core import SqlStore
    from lineage._catalog import Catalog
    from lineage._ol_claims import airflow_run
    from lineage._ol_events import reduce, validate
    from lineage._ol_ingest import OpenLineageIngest
    from lineage._store import LineageStore

    assert isinstance(gatekeeper.store, SqlStore)
    store = LineageStore.for_gate_store(gatekeeper.store, migrate=False)
    ingest = OpenLineageIngest(store, gatekeeper, Catalog.from_settings(), None)
    seen = [reduce(e, validate(e)[1]) for e in payload]
    return ingest, seen, ingest._runs(seen, "etl-bot", {id(s): airflow_run(s) for s in seen})


def scope_cost(gatekeeper: Any, payload: list[dict[str, Any]]) -> float:
    """ms per event the receiver spends on the scope check (gate lookup per run + check per access)."""
    from gate_core import Actor, AuthMethod
    from lineage._ol_ingest import _BatchMemo, _claimed
    from lineage._scope import RunScope, check

    ingest, seen, claims = _in_process(gatekeeper, payload)
    sender = Actor(principal_id="etl-bot", via=AuthMethod.API_TOKEN)
    # the run each event is recorded and checked in (one claim each here: no decoys)
    runs = {i: cs[0].run for i, cs in claims.items()}
    # Each timed loop starts with the collector's work done: a full collection walks this
    # process's whole heap (the timed batches' payload included), and wherever it happened to fall
    # it made one loop 0.2-0.3 s slower, i.e. 0.1 ms per event on the difference.
    gc.collect()
    started = time.perf_counter()
    by_run = ingest.gates_of_runs(runs.values())  # the run index, as the receiver does a batch
    gates = {i: by_run.get((r.orchestrator, r.pipeline, r.run_id), []) for i, r in runs.items()}
    scopes = {i: RunScope.of(g) for i, g in gates.items() if g}  # once per run, as the receiver does
    relevant = ingest.relevant_tags()
    memo = _BatchMemo()
    for s in seen:
        run_key = s.ol_run_id or ""
        for ds in s.datasets:
            access = ingest._access(
                s, ds, runs[run_key], gates[run_key], sender.principal_id, memo, _claimed([runs[run_key]])
            )
            if run_key in scopes:
                check(access, scopes[run_key], relevant)
    with_check = time.perf_counter() - started
    gc.collect()
    started = time.perf_counter()
    memo = _BatchMemo()
    for s in seen:
        for ds in s.datasets:
            run = runs[s.ol_run_id or ""]
            ingest._access(s, ds, run, [], sender.principal_id, memo, _claimed([run]))
    without = time.perf_counter() - started
    return max(0.0, with_check - without) * 1000 / len(seen)


def _floor_rows(gatekeeper: Any, payload: list[dict[str, Any]]) -> tuple[list[Any], list[Any], list[Any]]:
    """The access, tag and claim rows the receiver stores for ``payload``, as the receiver builds
    them (``_runs``, ``_access``, ``lineage._codec``), not stored."""
    from lineage._codec import rows_of_events, tag_values
    from lineage._ol_ingest import _BatchMemo, _claimed

    ingest, seen, claims = _in_process(gatekeeper, payload)
    runs = {i: cs[0].run for i, cs in claims.items()}
    memo = _BatchMemo()
    accesses = [
        ingest._access(
            s, ds, runs[s.ol_run_id or ""], [], "etl-bot", memo, _claimed([runs[s.ol_run_id or ""]])
        )
        for s in seen
        for ds in s.datasets
    ]
    now = datetime.now(UTC)
    claim_rows = [
        (i, c.run.orchestrator, c.run.pipeline, c.run.run_id, c.run.task_id, now, c.key, c.by)
        for i, cs in claims.items()
        for c in cs
    ]
    return rows_of_events(accesses), [t for a in accesses for t in tag_values(a)], claim_rows


def floor(gatekeeper: Any, database_url: str, count: int, size: int) -> tuple[float, float]:
    """(events/s, PostgreSQL CPU µs per event) of storing the rows of ``count`` events in batches of
    ``size`` — one transaction each, binary COPY of the three tables, 2 connections — and nothing
    else. Each batch's rows are those of real events, with fresh ids and runIds."""
    import psycopg

    from lineage._codec import EVENT_COLUMNS, EVENT_PG_TYPES, TAG_COLUMNS, TAG_PG_TYPES

    claim_columns = (
        "ol_run_id",
        "orchestrator",
        "pipeline",
        "run_id",
        "task_id",
        "seen_at",
        "run_key",
        "claimed_by",
    )
    claim_types = ["text", "text", "text", "text", "text", "timestamptz", "text", "text"]
    work = []
    for start in range(0, count, size):
        access_rows, tag_rows, claim_rows = _floor_rows(gatekeeper, events(min(size, count - start)))
        work.append(
            (
                ("gh_lineage_events", EVENT_COLUMNS, EVENT_PG_TYPES, access_rows),
                ("gh_lineage_event_tags", TAG_COLUMNS, TAG_PG_TYPES, tag_rows),
                ("gh_lineage_ol_runs", claim_columns, claim_types, claim_rows),
            )
        )
    connections = [psycopg.connect(libpq_url(database_url)) for _ in range(2)]
    pids = [c.info.backend_pid for c in connections]

    def store(conn: Any, mine: list[Any]) -> None:
        for tables in mine:
            with conn.transaction(), conn.cursor() as cursor:
                for table, columns, types, rows in tables:
                    with cursor.copy(
                        f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
                    ) as copy:
                        copy.set_types(types)
                        for row in rows:
                            copy.write_row(row)

    try:
        threads = [threading.Thread(target=store, args=(c, work[i::2])) for i, c in enumerate(connections)]
        cpu = sum(_cpu_seconds(pid) for pid in pids)
        elapsed = _timed(threads)
        cpu = sum(_cpu_seconds(pid) for pid in pids) - cpu
    finally:
        for c in connections:
            c.close()
    return count / elapsed, cpu / count * 1e6


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backend_cpu(database_url: str) -> dict[int, float]:
    """CPU so far of each PostgreSQL backend connected to the database at ``database_url`` (not
    this query's own): where the server's statements run. The cluster's shared processes (WAL
    writer, checkpointer) are left out: other databases on the machine use them too."""
    import psycopg

    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return {pid: _cpu_seconds(pid) for (pid,) in pids}


@dataclass
class CpuUse:
    """CPU seconds of the servers and of the PostgreSQL backends serving the scratch database."""

    servers_s: float = 0.0
    database_s: float = 0.0


@contextlib.contextmanager
def measured(pids: list[int], database_url: str, output: Path | None) -> Iterator[CpuUse]:
    """The servers' and the database backends' CPU while the block runs; with ``output``, also
    py-spy the first server (only the thread holding the GIL: where its Python CPU goes) and
    print the receiver's heaviest frames."""
    proc = None
    if output is not None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            raise SystemExit("--profile needs py-spy (a dev dependency)")
        command = [spy, "record", "--pid", str(pids[0]), "--rate", "250", "--format", "raw", "--nonblocking"]
        proc = subprocess.Popen(
            [*command, "--gil", "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(1.0)  # let py-spy attach before the load starts
    use = CpuUse()
    cpu = sum(_cpu_seconds(pid) for pid in pids)
    backends = _backend_cpu(database_url)
    try:
        yield use
    finally:
        use.servers_s = sum(_cpu_seconds(pid) for pid in pids) - cpu
        # a backend that started during the load counts from zero
        use.database_s = sum(t - backends.get(p, 0.0) for p, t in _backend_cpu(database_url).items())
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if output is None:
        return
    if not output.exists():
        print(f"{output}: missing (py-spy could not attach? it needs ptrace permission)")
        return
    frames: Counter[str] = Counter()
    total = 0
    for stack, count in collapsed_stacks(output):
        total += count
        for frame in set(stack.split(";")):
            if "lineage/" in frame:
                frames[frame] += count
    print(f"{output}: {total} samples holding the GIL; lineage frames, inclusive:")
    for frame, n in frames.most_common(20):
        print(f"  {n / max(total, 1) * 100:5.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.openlineage_receiver", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--servers", type=int, default=2, help="gatehouse serve processes (replicas)")
    parser.add_argument("--clients", type=int, default=4, help="client threads, spread over the servers")
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy the first server's batches into this file"
    )
    args = parser.parse_args()
    count = args.events or (4_000 if args.quick else 40_000)
    single_count = 60 if args.quick else 300
    warn_if_busy()
    figures: list[Figure] = []
    with scratch_postgres(postgres_base_url()) as url, tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        gatekeeper, token = setup(url, home)
        started = [serve(home, url, Path(tmp) / f"serve-{i}.log") for i in range(args.servers)]
        procs, bases = [p for p, _ in started], [b for _, b in started]
        try:
            batches(bases, token, events(500), args.batch, args.clients)  # warm-up
            payload = events(count)
            with measured([p.pid for p in procs], url, args.profile) as cpu:
                elapsed = batches(bases, token, payload, args.batch, args.clients)
            servers = f"{args.servers} server{'s' if args.servers > 1 else ''}"
            figures += [
                at_least(
                    f"batched events/s (PostgreSQL, {servers})",
                    count / elapsed,
                    "events/s",
                    TARGET_EVENTS_PER_S,
                ),
                info("batched: servers' CPU per event", cpu.servers_s / count * 1e6, "µs"),
                info("batched: PostgreSQL CPU per event", cpu.database_s / count * 1e6, "µs"),
            ]
            rate, floor_cpu = floor(gatekeeper, url, count, args.batch)
            figures += [
                info("anchor (the floor): PostgreSQL alone storing the same rows", rate, "events/s"),
                info("anchor (the floor): its PostgreSQL CPU per event", floor_cpu, "µs"),
            ]
            samples = singles(bases[0], token, single_count)
            figures.append(info("single event p50", percentile(samples, 50), "ms"))
            figures.append(at_most("single event p99", percentile(samples, 99), "ms", TARGET_SINGLE_P99_MS))
            figures.append(
                at_most(
                    "scope check per event",
                    scope_cost(gatekeeper, events(2_000)),
                    "ms",
                    TARGET_SCOPE_MS_PER_EVENT,
                )
            )
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=15)
            gatekeeper.store.close()
    print_figures("OpenLineage receiver", figures)
    write_result(
        NAME,
        figures,
        {
            "events": count,
            "batch": args.batch,
            "servers": args.servers,
            "clients": args.clients,
            "singles": single_count,
        },
    )


if __name__ == "__main__":
    main()
