"""Dagster: decision → step continues, and the approval sensor's tick cost with 1,000 pending gates.

Everything is real: a `gatehouse serve` subprocess on the embedded default (SQLite, example
policy), Dagster jobs run with ``execute_in_process`` on a persistent (SQLite) Dagster instance,
the resource configured with ``EnvVar`` as users configure it.

  1. Resume latency. A job ``gated → after``: the gated op blocks in ``require_approval`` (the
     gate service's long-poll). Once the service reports the waiter parked (``/healthz``), bob's
     approval is sent; measured from *decision sent* to (a) the op's next line after
     ``require_approval`` (target p50 ≤ 250 ms) and (b) the downstream op's first line. Between
     the two: consume, the decision metadata, lineage, and Dagster's step hand-over.
  2. Sensor tick. 1,000 pending gates (opened by etl-bot for alice, straight in the store) in an
     ``approval_sensor``'s cursor; each tick's wall time and HTTP requests (counted on the
     client's own connection; target: one batched ``POST /v1/gates/wait``), then one tick after
     a gate is approved (its RunRequest).

    python -m bench.dagster_resume            # 30 resume samples, 10 ticks
    python -m bench.dagster_resume --quick    # 8 samples, 3 ticks

No ``from __future__ import annotations``: Dagster reads the op's resource parameter annotation.
"""

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import httpx

from bench._common import (
    Figure,
    at_most,
    info,
    percentile,
    print_figures,
    warn_if_busy,
    write_result,
)
from dagster_resources import RUN_KEY_TAG, ApprovalGateResource, SensorCursor, approval_sensor
from gate_core import (
    AuthMethod,
    DatasetRef,
    GateRequest,
    HttpGateClient,
    RunContext,
    Scope,
    Settings,
    init_home,
    open_gatekeeper,
)
from gate_core.testing import actor

NAME = "dagster_resume"
TARGET_RESUME_P50_MS = 250.0
TARGET_REQUESTS_PER_TICK = 1.0
PENDING_GATES = 1_000
WARMUP = 2
SERVER_START_TIMEOUT_S = 60.0
PARK_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 120.0

# perf_counter() marks the ops leave, keyed by the sample's run key (same process: one clock).
MARKS: dict[str, dict[str, float]] = {}


# ------------------------------------------------------------------ the job


class ResumeConfig(dg.Config):
    sample: str


@dg.op
def gated(context: dg.OpExecutionContext, config: ResumeConfig, approval_gate: ApprovalGateResource) -> str:
    approval_gate.require_approval(
        context,
        action="export",
        target="s3://exports/customers.csv",
        datasets=["warehouse/customers#pii"],
        reason="benchmark",
    )
    MARKS.setdefault(config.sample, {})["continued"] = time.perf_counter()
    return config.sample


@dg.op
def after(sample: str) -> None:
    MARKS.setdefault(sample, {})["downstream"] = time.perf_counter()


@dg.job(executor_def=dg.in_process_executor)
def resume_job() -> None:
    after(gated())


def resource(**extra: Any) -> ApprovalGateResource:
    return ApprovalGateResource(url=dg.EnvVar("GATEHOUSE_URL"), token=dg.EnvVar("GATEHOUSE_TOKEN"), **extra)


# ------------------------------------------------------------------ the service


@dataclass
class Service:
    base_url: str
    settings: Settings
    tokens: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, who: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gate_service(workdir: Path) -> Iterator[Service]:
    """`gatehouse serve` on a fresh example home; tokens for etl-bot (request) and bob (decide)."""
    home = workdir / "gatehouse"
    settings = Settings(
        home=home,
        database_url=f"sqlite:///{home / 'gatehouse.db'}",
        policy_path=home / "policy.yaml",
        directory_path=home / "directory.yaml",
    )
    init_home(settings, example=True)
    gatekeeper = open_gatekeeper(settings)
    tokens = {  # a person's token by that person; the service's by a gatehouse-admins member
        "bot": gatekeeper.tokens.create("etl-bot", Scope.REQUEST, created_by=actor("frank"))[1],
        "bob": gatekeeper.tokens.create("bob", Scope.DECIDE, created_by=actor("bob"))[1],
    }
    gatekeeper.store.close()
    port = free_port()
    log = workdir / "serve.log"
    env = {**os.environ, "GATEHOUSE_HOME": str(home), "GATEHOUSE_DATABASE_URL": settings.database_url}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gate_core.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(f"http://127.0.0.1:{port}", settings, tokens, process, log)
    try:
        wait_healthy(service)
        yield service
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_healthy(service: Service) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise SystemExit(f"gatehouse serve exited at start:\n{service.log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{service.base_url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"gatehouse serve not healthy after {SERVER_START_TIMEOUT_S:g}s")


# ------------------------------------------------------------------ (1) resume latency


@dataclass(frozen=True, slots=True)
class Resume:
    continued_s: float  # decision sent → the op's next line
    downstream_s: float  # decision sent → the downstream op's first line
    decide_rtt_s: float  # the approve request's own round trip


def until_parked(http: httpx.Client, run: threading.Thread) -> None:
    """Wait until the service holds a long-poll waiter (ours: nothing else waits on it)."""
    deadline = time.monotonic() + PARK_TIMEOUT_S
    while time.monotonic() < deadline:
        if not run.is_alive():
            raise SystemExit("the Dagster run ended before it waited on its gate")
        if http.get("/healthz").json().get("waiting_gates", 0) >= 1:
            return
        time.sleep(0.002)
    raise SystemExit(f"the gated op did not park on the gate within {PARK_TIMEOUT_S:g}s")


def pending_gate(bot: httpx.Client, sample: str) -> str:
    for gate in bot.get("/v1/gates", params={"status": "PENDING", "limit": 50}).json():
        if sample in (gate["request"].get("idempotency_key") or ""):
            return str(gate["id"])
    raise SystemExit(f"no pending gate for sample {sample}")


def resume_once(service: Service, instance: dg.DagsterInstance, sample: str, settle_s: float) -> Resume:
    outcome: dict[str, Any] = {}

    def execute() -> None:
        result = resume_job.execute_in_process(
            run_config={"ops": {"gated": {"config": {"sample": sample}}}},
            resources={"approval_gate": resource()},
            instance=instance,
            tags={RUN_KEY_TAG: sample, "dagster/user": "alice"},
            raise_on_error=False,
        )
        outcome["success"] = result.success

    run = threading.Thread(target=execute, daemon=True)
    with service.client("bot") as bot, service.client("bob") as bob:
        run.start()
        until_parked(bot, run)
        gate_id = pending_gate(bot, sample)
        time.sleep(settle_s)
        t0 = time.perf_counter()
        answer = bob.post(f"/v1/gates/{gate_id}/decisions", json={"decision": "approve"})
        t_ack = time.perf_counter()
    run.join(RUN_TIMEOUT_S)
    if answer.status_code != 200 or run.is_alive() or not outcome.get("success"):
        raise SystemExit(f"sample {sample} failed: approve {answer.status_code}, run {outcome}")
    marks = MARKS.pop(sample)
    return Resume(marks["continued"] - t0, marks["downstream"] - t0, t_ack - t0)


def resume_figures(samples: Sequence[Resume]) -> list[Figure]:
    cont = [s.continued_s * 1000 for s in samples]
    down = [s.downstream_s * 1000 for s in samples]
    rtt = [s.decide_rtt_s * 1000 for s in samples]
    return [
        at_most("decision sent → op continues p50", percentile(cont, 50), "ms", TARGET_RESUME_P50_MS),
        info("decision sent → op continues p99", percentile(cont, 99), "ms"),
        info("decision sent → downstream op starts p50", percentile(down, 50), "ms"),
        info("decision sent → downstream op starts p99", percentile(down, 99), "ms"),
        info("approve request round trip p50", percentile(rtt, 50), "ms"),
    ]


# ------------------------------------------------------------------ (2) sensor tick


REQUESTS: list[httpx.Request] = []


class CountingGateResource(ApprovalGateResource):
    """The real resource; every HTTP request its clients send is appended to ``REQUESTS``."""

    def get_client(self) -> HttpGateClient:
        client = super().get_client()
        client.http.event_hooks["request"].append(REQUESTS.append)
        return client


def seed_pending(settings: Settings, count: int) -> list[str]:
    gatekeeper = open_gatekeeper(settings)
    try:
        request = GateRequest(
            action="export",
            target="s3://exports/customers.csv",
            datasets=(DatasetRef.parse("warehouse/customers#pii"),),
            requester="alice",
            run=RunContext(orchestrator="dagster", pipeline="bench", run_id="bench-sensor"),
        )
        bot = actor("etl-bot", AuthMethod.API_TOKEN)
        return [gatekeeper.open(request, submitted_by=bot).id for _ in range(count)]
    finally:
        gatekeeper.store.close()


@dataclass(frozen=True, slots=True)
class Tick:
    wall_s: float
    requests: int
    run_requests: int
    cursor: str


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str) -> Tick:
    gates = CountingGateResource(url=dg.EnvVar("GATEHOUSE_URL"), token=dg.EnvVar("GATEHOUSE_TOKEN"))
    REQUESTS.clear()
    started = time.perf_counter()
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, sensor_name=sensor.name, resources={"approval_gate": gates}
    ) as context:
        result = sensor.evaluate_tick(context)
    wall = time.perf_counter() - started
    return Tick(wall, len(REQUESTS), len(result.run_requests or []), result.cursor or "")


def sensor_ticks(service: Service, instance: dg.DagsterInstance, ticks: int) -> tuple[list[Figure], int]:
    sensor = approval_sensor(job=resume_job, asset_key="bench/customers_export", name="bench_sensor")
    started = time.perf_counter()
    gate_ids = seed_pending(service.settings, PENDING_GATES)
    seeded_s = time.perf_counter() - started
    cursor = SensorCursor(pending=dict.fromkeys(gate_ids, "")).dump()
    tick(sensor, instance, cursor)  # warm-up: imports, the instance's first event-log query
    pending = [tick(sensor, instance, cursor) for _ in range(ticks)]
    with service.client("bob") as bob:
        bob.post(f"/v1/gates/{gate_ids[0]}/decisions", json={"decision": "approve"}).raise_for_status()
    launched = tick(sensor, instance, cursor)
    if launched.run_requests != 1 or any(t.run_requests for t in pending):
        raise SystemExit(f"benchmark invalid: {launched.run_requests} run requests after one approval")
    walls = [t.wall_s * 1000 for t in pending]
    figures = [
        at_most(
            f"sensor tick, {PENDING_GATES:,} pending: HTTP requests (max)",
            max(t.requests for t in [*pending, launched]),
            "requests",
            TARGET_REQUESTS_PER_TICK,
        ),
        info(f"sensor tick, {PENDING_GATES:,} pending: wall p50", percentile(walls, 50), "ms"),
        info(f"sensor tick, {PENDING_GATES:,} pending: wall max", max(walls), "ms"),
        info(f"sensor tick launching 1 of {PENDING_GATES:,}: wall", launched.wall_s * 1000, "ms"),
        info(f"sensor cursor with {PENDING_GATES:,} pending", len(cursor.encode()), "bytes"),
        info(f"seeding {PENDING_GATES:,} gates in the store (setup)", seeded_s, "s"),
    ]
    return figures, len(pending)


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="8 resume samples, 3 ticks")
    parser.add_argument("--samples", type=int, default=None, help="resume samples (default 30, quick 8)")
    parser.add_argument("--ticks", type=int, default=None, help="sensor ticks (default 10, quick 3)")
    parser.add_argument("--settle-ms", type=float, default=50.0, help="pause after the op parks")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    samples = args.samples or (8 if args.quick else 30)
    ticks = args.ticks or (3 if args.quick else 10)
    warn_if_busy()
    with tempfile.TemporaryDirectory(prefix="gh-bench-dagster-") as tmp, gate_service(Path(tmp)) as service:
        os.environ["GATEHOUSE_URL"] = service.base_url
        os.environ["GATEHOUSE_TOKEN"] = service.tokens["bot"]
        dagster_home = Path(tmp) / "dagster"
        dagster_home.mkdir()
        overrides = {"telemetry": {"enabled": False}}
        with dg.DagsterInstance.local_temp(str(dagster_home), overrides=overrides) as instance:
            resumes = [
                resume_once(service, instance, f"resume-{k}-{time.time_ns()}", args.settle_ms / 1000)
                for k in range(samples + WARMUP)
            ][WARMUP:]
            figures = resume_figures(resumes)
            tick_figures, measured_ticks = sensor_ticks(service, instance, ticks)
            figures += tick_figures
    print_figures("Dagster: decision → step continues; approval sensor tick", figures)
    params = {
        "quick": args.quick,
        "resume_samples": samples,
        "warmup_samples": WARMUP,
        "settle_ms": args.settle_ms,
        "sensor_ticks": measured_ticks,
        "pending_gates": PENDING_GATES,
        "service": "gatehouse serve, SQLite, example policy (one process)",
        "dagster_instance": "persistent local (SQLite), in-process executor",
        "dagster": dg.__version__,
    }
    # Dagster has no approval step of its own to compare with: the distributions are ours alone.
    samples = {
        "decision sent → op continues": [round(r.continued_s, 4) for r in resumes],
        "decision sent → downstream op starts": [round(r.downstream_s, 4) for r in resumes],
    }
    print(f"\nresults written to {write_result(NAME, figures, params, {'samples_s': samples})}")


if __name__ == "__main__":
    main()
