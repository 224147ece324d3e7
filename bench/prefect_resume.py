"""Decision → flow running again on Prefect: the Gatehouse block vs Prefect's own pause/resume.

Same install, same machine, same Prefect server (a test-harness server on SQLite), side by side:

  (a) Gatehouse: a flow calls ``ApprovalGate.require()`` in pause mode (the run shows Paused);
      once Prefect reports it PAUSED we wait a random 0.2–1 s, then approve the gate through the
      gate service's API (a real `gatehouse serve` on SQLite). Measured: the approval is sent →
      the flow's next line runs (``require()`` has returned: approval verified, consumed and
      the gate's datasets recorded as lineage).
  (b) The anchor, as Prefect users get it: ``pause_flow_run(wait_for_input=..., key=...)`` with
      the default ``poll_interval`` (10 s), resumed with ``resume_flow_run(id, run_input=...)``
      at a random moment in its poll cycle (uniform over one interval after the run is PAUSED: a
      person decides whenever they decide). Measured: the resume is sent → the flow's next line.
  (c) The same anchor with ``poll_interval=1``, labelled separately: a tuned setting.

The ratio is anchor (b) p50 / Gatehouse p50 (target ≥ 10×; Gatehouse p50 target ≤ 250 ms).

    python -m bench.prefect_resume            # 20 Gatehouse samples, 6 anchor (10 s), 10 anchor (1 s)
    python -m bench.prefect_resume --quick    # 8 / 3 / 4
"""

from __future__ import annotations

import argparse
import contextvars
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import prefect
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.settings import (
    PREFECT_HOME,
    PREFECT_MEMO_STORE_PATH,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    temporary_settings,
)
from prefect.testing.utilities import prefect_test_harness
from pydantic import SecretStr

from bench._common import (
    Figure,
    at_least,
    at_most,
    info,
    percentile,
    print_figures,
    warn_if_busy,
    write_result,
)
from gate_core import Scope, Settings, init_home, open_gatekeeper
from gate_core.testing import actor
from prefect_blocks import ApprovalGate

NAME = "prefect_resume"
TARGET_P50_MS = 250.0
TARGET_RATIO = 10.0
BLOCK = "gatehouse-bench"
GATEHOUSE_WARMUP = 2
SAMPLE_TIMEOUT_S = 120.0

MARKS: dict[str, float] = {}  # run key → time.perf_counter() when the flow's line after the wait ran


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------ the flows


@flow(name="bench-gatehouse-pause")
def gatehouse_step(run_key: str) -> None:
    gate = ApprovalGate.load(BLOCK)
    gate.require(
        "export",
        target="s3://exports/customers.csv",
        datasets=["warehouse/customers#pii"],
        requester="alice",
        reason="benchmark",
        key=run_key,
    )
    MARKS[run_key] = time.perf_counter()


class Approval(RunInput):
    approver: str


@flow(name="bench-native-pause")
def native_step(run_key: str, poll_interval: int) -> None:
    answer = pause_flow_run(wait_for_input=Approval, timeout=600, poll_interval=poll_interval, key="approval")
    MARKS[run_key] = time.perf_counter()
    if answer.approver != "bob":
        raise RuntimeError(f"resumed with {answer!r}")


# ------------------------------------------------------------------ plumbing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Service:
    url: str
    bot: str  # etl-bot, scope request: what the block holds
    bob: str  # bob, scope decide: the approver


@contextmanager
def gate_service(tmp: Path) -> Iterator[Service]:
    """A real `gatehouse serve` on SQLite with the example policy and directory."""
    settings = Settings(
        home=tmp / "gatehouse",
        database_url=f"sqlite:///{tmp / 'gatehouse' / 'gatehouse.db'}",
        policy_path=tmp / "gatehouse" / "policy.yaml",
        directory_path=tmp / "gatehouse" / "directory.yaml",
    )
    init_home(settings, example=True)
    gatekeeper = open_gatekeeper(settings)
    bot = gatekeeper.tokens.create("etl-bot", Scope.REQUEST, created_by=actor("frank"))[1]
    bob = gatekeeper.tokens.create("bob", Scope.DECIDE, created_by=actor("bob"))[1]
    gatekeeper.store.close()
    port = free_port()
    env = {
        **os.environ,
        "GATEHOUSE_HOME": str(settings.home),
        "GATEHOUSE_DATABASE_URL": settings.database_url,
    }
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gate_core.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"gatehouse serve did not start: {(tmp / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield Service(url, bot, bob)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def prefect_server(tmp: Path) -> Iterator[None]:
    home = tmp / "prefect"
    home.mkdir()
    updates = {
        PREFECT_HOME: str(home),
        PREFECT_MEMO_STORE_PATH: str(home / "memo_store.toml"),
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
    }
    with temporary_settings(updates=updates), prefect_test_harness(server_startup_timeout=120):
        yield


class Background:
    """A flow run in a thread of this process, with Prefect's settings (they live in context)."""

    def __init__(self, target: Callable[[], object]) -> None:
        self.error: BaseException | None = None
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=context.run, args=(self._run, target), daemon=True)
        self.thread.start()

    def _run(self, target: Callable[[], object]) -> None:
        try:
            target()
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self.thread.join(SAMPLE_TIMEOUT_S)
        if self.thread.is_alive():
            raise SystemExit("benchmark invalid: a flow run did not finish in time")
        if self.error is not None:
            raise SystemExit(f"benchmark invalid: the flow failed: {self.error!r}")


def paused_run(flow_name: str, seen: set[UUID]) -> UUID:
    """The id of the new PAUSED run of ``flow_name``, once its run-input schema is saved (a resume
    with input is refused before that)."""
    flows = FlowFilter(name=FlowFilterName(any_=[flow_name]))
    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    deadline = time.monotonic() + SAMPLE_TIMEOUT_S
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            for run in client.read_flow_runs(flow_filter=flows, flow_run_filter=paused, limit=10):
                keyset = run.state.state_details.run_input_keyset if run.state else None
                if run.id not in seen and keyset and _has_input(client, run.id, keyset["schema"]):
                    seen.add(run.id)
                    return run.id
            time.sleep(0.02)
    raise SystemExit(f"benchmark invalid: no paused run of {flow_name} appeared")


def _has_input(client: Any, flow_run_id: UUID, key: str) -> bool:
    try:
        client.read_flow_run_input(flow_run_id, key)
    except Exception:
        return False
    return True


# ------------------------------------------------------------------ samples


def gatehouse_sample(service: Service, seen: set[UUID], rng: random.Random) -> float:
    run_key = f"bench-{time.time_ns()}"
    run = Background(lambda: gatehouse_step(run_key))
    paused_run("bench-gatehouse-pause", seen)
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {service.bob}"}) as bob:
        gate = _gate_for(bob, run_key)
        time.sleep(rng.uniform(0.2, 1.0))
        sent = time.perf_counter()
        response = bob.post(f"/v1/gates/{gate}/decisions", json={"decision": "approve"})
    if response.status_code != 200:
        raise SystemExit(f"benchmark invalid: approval refused: {response.text}")
    run.join()
    return MARKS[run_key] - sent


def _gate_for(client: httpx.Client, run_key: str) -> str:
    for gate in client.get("/v1/gates", params={"status": "PENDING", "limit": 50}).json():
        if run_key in (gate["request"].get("idempotency_key") or ""):
            return str(gate["id"])
    raise SystemExit(f"benchmark invalid: no gate for {run_key}")


def native_sample(poll_interval: int, seen: set[UUID], rng: random.Random) -> float:
    run_key = f"native-{time.time_ns()}"
    run = Background(lambda: native_step(run_key, poll_interval))
    flow_run_id = paused_run("bench-native-pause", seen)
    time.sleep(rng.uniform(0.0, poll_interval))
    sent = time.perf_counter()
    with get_client(sync_client=True) as client:
        client.resume_flow_run(flow_run_id, run_input={"approver": "bob"})
    run.join()
    return MARKS[run_key] - sent


def collect(label: str, count: int, sample: Callable[[], float], warmup: int = 0) -> list[float]:
    for _ in range(warmup):
        sample()
    samples = []
    for i in range(count):
        samples.append(sample())
        say(f"{label} {i + 1}/{count}: {samples[-1] * 1000:.0f} ms")
    return samples


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.prefect_resume", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples (CI)")
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.getLogger("prefect").setLevel(logging.WARNING)  # one line per flow run state is noise here
    counts = (8, 3, 4) if args.quick else (20, 6, 10)
    rng = random.Random(args.seed)
    warn_if_busy()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gh-bench-prefect-") as tmp_dir:
        tmp = Path(tmp_dir)
        say("starting gatehouse serve and a Prefect test server")
        with gate_service(tmp) as service, prefect_server(tmp):
            ApprovalGate(url=service.url, token=SecretStr(service.bot), poll_seconds=30).save(
                BLOCK, overwrite=True
            )
            seen: set[UUID] = set()
            ours = collect(
                "gatehouse", counts[0], lambda: gatehouse_sample(service, seen, rng), warmup=GATEHOUSE_WARMUP
            )
            anchor = collect(
                "prefect pause_flow_run (poll 10 s)", counts[1], lambda: native_sample(10, seen, rng)
            )
            tuned = collect(
                "prefect pause_flow_run (poll 1 s)", counts[2], lambda: native_sample(1, seen, rng), warmup=1
            )
    report(args, ours, anchor, tuned, time.monotonic() - started)


def report(
    args: argparse.Namespace, ours: list[float], anchor: list[float], tuned: list[float], took: float
) -> None:
    def ms(samples: list[float], pct: float) -> float:
        return percentile(samples, pct) * 1000

    ratio_p50 = ms(anchor, 50) / ms(ours, 50)
    figures: list[Figure] = [
        at_most("Gatehouse block (pause): decision → running, p50", ms(ours, 50), "ms", TARGET_P50_MS),
        info("Gatehouse block (pause): decision → running, p99", ms(ours, 99), "ms"),
        info("Prefect pause_flow_run, poll 10 s (default): p50", ms(anchor, 50), "ms"),
        info("Prefect pause_flow_run, poll 10 s (default): p99", ms(anchor, 99), "ms"),
        info("Prefect pause_flow_run, poll 1 s (tuned): p50", ms(tuned, 50), "ms"),
        info("Prefect pause_flow_run, poll 1 s (tuned): p99", ms(tuned, 99), "ms"),
        at_least("ratio: Prefect default p50 / Gatehouse p50", ratio_p50, "×", TARGET_RATIO),
        info("ratio: Prefect default p99 / Gatehouse p99", ms(anchor, 99) / ms(ours, 99), "×"),
        info("ratio: Prefect poll 1 s p50 / Gatehouse p50", ms(tuned, 50) / ms(ours, 50), "×"),
    ]
    print_figures(f"Prefect {prefect.__version__}: decision → flow running again", figures)
    params = {
        "quick": args.quick,
        "seed": args.seed,
        "samples": {"gatehouse": len(ours), "prefect_poll_10s": len(anchor), "prefect_poll_1s": len(tuned)},
        "prefect": prefect.__version__,
        "wall_seconds": round(took, 1),
    }
    samples = {  # the report plots these distributions side by side
        "Gatehouse ApprovalGate (pause)": [round(s, 4) for s in ours],
        "Prefect pause_flow_run, poll 10 s (default)": [round(s, 4) for s in anchor],
        "Prefect pause_flow_run, poll 1 s (tuned)": [round(s, 4) for s in tuned],
    }
    path = write_result(NAME, figures, params, {"samples_s": samples})
    print(f"\nwrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
