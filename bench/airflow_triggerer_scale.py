"""10,000 gates waiting in one Airflow triggerer: requests and store queries per cycle, CPU,
memory, and how fast a decided gate's trigger fires.

Set-up: `gatehouse serve` on PostgreSQL (a scratch database, dropped afterwards) and N pending
pii-export gates for alice, opened as etl-bot through the core on the service's database (set-up,
not measured).

The triggerer: a child process that imports Airflow and the provider, rebuilds N GateTriggers
from their serialized form (as the triggerer does from its trigger table) and runs every
trigger's ``run()`` as a task on ONE asyncio event loop — exactly how Airflow's TriggerRunner
runs the triggers it holds. A real ``airflow triggerer`` would add, for every trigger class
alike, a trigger row and heartbeat per trigger, and would first need 10,000 task instances run
into deferral (plus ``[triggerer] capacity`` raised from its default 1,000); that measures
Airflow rather than the trigger, so it is left out.

    idle     3 whole poll cycles (boundary to boundary), nobody deciding: wait requests per cycle
             (the shared waiter's counters); the store's SQL statements per cycle, counted exactly
             by a listener on the service's engine (bench/_counting_serve.py: `gatehouse serve`
             plus the count; its expiry sweeper put to sleep — nothing expires during the run);
             the child's CPU (cores) and peak RSS
    resume   S random gates approved one at a time by bob through the API (random arrivals,
             ~5/s): decision response → that trigger's event in the child, p50/p99; CPU meanwhile

    python -m bench.airflow_triggerer_scale            # 10,000 gates, 200 decisions (< 5 min)
    python -m bench.airflow_triggerer_scale --quick    # 1,000 gates, 50 decisions
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench._airflow import ROOT, GateService, stop, wait_until
from bench._common import (
    at_most,
    info,
    percentile,
    postgres_base_url,
    print_figures,
    scratch_postgres,
    warn_if_busy,
    write_result,
)

NAME = "airflow_triggerer_scale"
TARGET_CORES = 1.0
TARGET_RSS_MB = 500.0
TARGET_P99_S = 2.0
POLL_TIMEOUT_S = 25.0  # GateTrigger's default
TARGET_QUERIES_PER_CYCLE = 5.0  # the token's lookup + two reads of the waiting set (start, end), 2 each


# ------------------------------------------------------------------ the triggerer (child process)


async def triggerer(ids: list[str]) -> None:
    from airflow.sdk._shared.module_loading import import_string

    from airflow_provider.triggers._waiter import SharedGateWaiter
    from airflow_provider.triggers.gate import GateTrigger

    def say(*words: object) -> None:
        print("@@", *words, flush=True)

    rebuilt = []
    for gate_id in ids:
        classpath, kwargs = GateTrigger(gate_id=gate_id).serialize()
        rebuilt.append(import_string(classpath)(**json.loads(json.dumps(kwargs))))

    async def run(trigger: GateTrigger) -> None:
        async for event in trigger.run():
            say("event", trigger.gate_id, repr(time.time()), event.payload["outcome"])
            return

    started = time.monotonic()
    tasks = [asyncio.ensure_future(run(t)) for t in rebuilt]
    while (waiter := SharedGateWaiter.existing("gatehouse_default")) is None or waiter.waiting < len(ids):
        await asyncio.sleep(0.05)
    say("ready", repr(time.monotonic() - started))
    while not all(t.done() for t in tasks):
        s = waiter.stats
        say(
            "stats",
            json.dumps({"polls": s.polls, "cycles": s.cycles, "errors": s.errors, "waiting": waiter.waiting}),
        )
        await asyncio.sleep(1.0)


def triggerer_main(ids_file: str) -> None:
    asyncio.run(triggerer(json.loads(Path(ids_file).read_text())))


# ------------------------------------------------------------------ the parent


@dataclass
class Child:
    process: subprocess.Popen[str]
    events: dict[str, float] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    ready_s: float | None = None
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if not line.startswith("@@ "):
                continue
            kind, *rest = line[3:].split(" ", 1)
            if kind == "event":
                gate_id, at, _ = rest[0].split()
                self.events[gate_id] = float(at)
            elif kind == "stats":
                self.stats = json.loads(rest[0])
            elif kind == "ready":
                self.ready_s = float(rest[0])

    def cpu_s(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def rss_mb(self) -> float:
        return psutil.Process(self.process.pid).memory_info().rss / 2**20


def start_child(root: Path, service: GateService, ids: list[str]) -> Child:
    ids_file = root / "gate-ids.json"
    ids_file.write_text(json.dumps(ids))
    connection = {"conn_type": "gatehouse", "host": service.base_url, "password": service.tokens["etl-bot"]}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "GATEHOUSE_"))}
    env |= {
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_GATEHOUSE_DEFAULT": json.dumps(connection),  # what the triggers' conn id names
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.airflow_triggerer_scale", "--triggerer", str(ids_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,  # stop() ends its process group
    )
    child = Child(process)
    threading.Thread(target=child.read, daemon=True).start()
    return child


def open_gates(root: Path, database_url: str, count: int, threads: int = 4) -> list[str]:
    """Open ``count`` pending pii-export gates for alice, as etl-bot, straight through the core on
    the service's own database. Set-up only (it is not measured): through HTTP on a shared 2-core
    machine it takes minutes."""
    from gate_core import Actor, AuthMethod, DatasetRef, GateRequest, Settings, open_gatekeeper

    home = root / "gatehouse"
    settings = Settings(home, database_url, home / "policy.yaml", home / "directory.yaml")
    submitter = Actor(principal_id="etl-bot", via=AuthMethod.API_TOKEN)
    dataset = DatasetRef.parse("warehouse/customers#pii")

    def share(first: int) -> list[str]:
        gatekeeper = open_gatekeeper(settings)
        try:
            return [
                gatekeeper.open(
                    GateRequest(
                        action="export",
                        target=f"s3://exports/scale-{i}.csv",
                        datasets=(dataset,),
                        requester="alice",
                    ),
                    submitted_by=submitter,
                ).id
                for i in range(first, count, threads)
            ]
        finally:
            gatekeeper.store.close()

    with ThreadPoolExecutor(threads) as pool:
        return [gate_id for ids in pool.map(share, range(threads)) for gate_id in ids]


def next_cycle(child: Child, count: int) -> float:
    """Wait until ``count`` more main polls have started; returns the peak RSS (MB) meanwhile."""
    start = child.stats.get("cycles", 0)
    deadline = time.monotonic() + count * (POLL_TIMEOUT_S + 120)
    peak = child.rss_mb()
    while child.stats.get("cycles", 0) < start + count:
        if time.monotonic() > deadline:
            raise SystemExit("benchmark: the waiter stopped cycling")
        time.sleep(0.2)
        peak = max(peak, child.rss_mb())
    return peak


def cpu_of(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.airflow_triggerer_scale", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="1,000 gates, 50 decisions")
    parser.add_argument("--gates", type=int, help="gates waiting (default 10,000)")
    parser.add_argument("--decisions", type=int, help="gates approved while measuring resume (default 200)")
    parser.add_argument("--cycles", type=int, help="idle poll cycles measured (default 3)")
    parser.add_argument("--triggerer", metavar="IDS_FILE", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.triggerer:
        triggerer_main(args.triggerer)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the service, drop the db
    gates = args.gates or (1_000 if args.quick else 10_000)
    decisions = min(gates, args.decisions or (50 if args.quick else 200))
    idle_cycles = args.cycles or (2 if args.quick else 3)
    warn_if_busy()
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="gh-bench-triggerer-") as tmp,
        scratch_postgres(postgres_base_url()) as url,
    ):
        root = Path(tmp)
        # The sweeper (expiry, reminders) queries the store every second; nothing expires during
        # the run, so it sleeps and every statement counted below is the waiters'.
        service = GateService.start(
            root, database_url=url, config={"sweep_interval_s": 3600}, count_statements=True
        )
        child: Child | None = None
        try:
            print(f"opening {gates:,} pending gates…", flush=True)
            opened = time.monotonic()
            ids = open_gates(root, url, gates)
            open_s = time.monotonic() - opened
            print(f"  {gates / open_s:,.0f} gates/s", flush=True)

            print(f"starting the triggerer with {gates:,} GateTriggers on one event loop…", flush=True)
            child = start_child(root, service, ids)
            wait_until("all triggers waiting", lambda: child.ready_s is not None, 600, 0.2)

            print(f"idle: {idle_cycles} whole poll cycles with nobody deciding…", flush=True)
            next_cycle(child, 1)  # measure from a cycle boundary to a cycle boundary
            stats0, cpu0, sql0 = dict(child.stats), child.cpu_s(), service.statements()
            serve_cpu0, t0 = cpu_of(service.process.pid), time.monotonic()
            peak_rss = next_cycle(child, idle_cycles)
            window = time.monotonic() - t0
            stats1, cpu1, sql1 = dict(child.stats), child.cpu_s(), service.statements()
            serve_cpu1 = cpu_of(service.process.pid)
            cycles = stats1["cycles"] - stats0["cycles"]
            requests = stats1["polls"] - stats0["polls"]
            statements = {k: n - sql0.get(k, 0) for k, n in sql1.items() if n != sql0.get(k, 0)}
            queries = sum(statements.values())

            print(f"resume: approving {decisions} random gates, one at a time…", flush=True)
            chosen = random.sample(ids, decisions)
            decided: dict[str, float] = {}
            cpu2, t2 = child.cpu_s(), time.monotonic()
            with service.client("bob") as bob:
                for gate_id in chosen:
                    time.sleep(random.expovariate(5.0))
                    response = bob.post(f"/v1/gates/{gate_id}/decisions", json={"decision": "approve"})
                    decided[gate_id] = time.time()
                    if response.status_code != 200:
                        raise SystemExit(f"benchmark: approving answered {response.status_code}")
                    peak_rss = max(peak_rss, child.rss_mb())
            wait_until(
                "every approved gate's trigger event", lambda: decided.keys() <= child.events.keys(), 120, 0.1
            )
            resume_cpu = (child.cpu_s() - cpu2) / (time.monotonic() - t2)
            latencies = [child.events[g] - decided[g] for g in chosen]
            early = [g for g in child.events if g not in decided]
            if early:
                raise SystemExit(f"benchmark invalid: {len(early)} undecided gates fired (e.g. {early[0]})")
        finally:
            if child is not None:
                stop(child.process)
            stop(service.process)

    figures = [
        info("gates waiting in one triggerer (one event loop)", gates, "gates"),
        info("time until every trigger was waiting", child.ready_s or 0.0, "s"),
        at_most("wait requests per cycle (idle)", requests / cycles, "requests", 1.0),
        at_most(
            "store queries per cycle (idle, all gates)", queries / cycles, "queries", TARGET_QUERIES_PER_CYCLE
        ),
        info("cycles in the idle window", cycles, "cycles"),
        at_most("triggerer CPU, idle", (cpu1 - cpu0) / window, "cores", TARGET_CORES),
        at_most("triggerer CPU, while gates are decided", resume_cpu, "cores", TARGET_CORES),
        at_most("triggerer peak RSS", peak_rss, "MB", TARGET_RSS_MB),
        info("gate service CPU, idle", (serve_cpu1 - serve_cpu0) / window, "cores"),
        info("decision → trigger event p50", percentile(latencies, 50), "s"),
        at_most("decision → trigger event p99", percentile(latencies, 99), "s", TARGET_P99_S),
    ]
    print_figures(f"Airflow triggerer: {gates:,} GateTriggers sharing one waiter", figures)
    per_cycle = ", ".join(f"{k} {n / cycles:.1f}" for k, n in sorted(statements.items()))
    print(f"  store statements per idle cycle: {per_cycle or 'none'}")
    path = write_result(
        NAME,
        figures,
        {
            "gates": gates,
            "decisions": decisions,
            "idle_cycles": idle_cycles,
            "poll_timeout_s": POLL_TIMEOUT_S,
        },
        {
            "open_gates_per_s": round(gates / open_s, 1),
            "wall_s": round(time.monotonic() - began, 1),
            "resume_latencies_s": [round(x, 4) for x in latencies],
            "idle_statements_per_cycle": {k: round(n / cycles, 2) for k, n in sorted(statements.items())},
            "idle_window_s": round(window, 1),
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
