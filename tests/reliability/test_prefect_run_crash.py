"""`kill -9` of a Prefect flow run while it waits at an ApprovalGate: nothing is lost.

Real Prefect (a test-harness server, a `prefect worker start` process worker running a deployment of
the example flow, each flow run in its own OS process) against a real `gatehouse serve`:

- pause mode: the flow run's process is SIGKILLed while the run is Paused at its gate. The worker
  reports the run Crashed; the gate stays PENDING in Gatehouse. A decision made while the process is
  dead (bob approves one run, carol rejects another) is kept; `prefect flow-run retry` (what a Prefect
  user does with a crashed run) starts the same flow run in a new process, whose step finds the same
  gate by its idempotency key (no second gate, no second wait): the approved run continues past the
  gate and completes, the rejected one fails with the rejection's reason, without running the step.
- suspend mode: the run's process exits by design, so the process that can die mid-wait is the
  resumer (`python -m prefect_blocks watch`). It is SIGKILLed while runs are suspended, the gates are
  decided while it is dead, and a restarted resumer settles both runs: approved → resumed, re-run past
  the gate, Completed; rejected → Failed with the reason, never started again.

In both, the audit chain still verifies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.workers.process import ProcessWorker

import tests.adapters.conftest as adapter_fixtures
import tests.adapters.test_prefect as prefect_fixtures
from gate_core import Settings, open_gatekeeper
from tests.adapters.contract import Live
from tests.adapters.test_prefect import (
    BLOCK,
    PREFECT,
    ROOT,
    PrefectApi,
    assert_lineage,
    flow_run,
    infrastructure_gone,
    run_input,
    state_names,
    wait_for_state,
)
from tests.reliability.conftest import Report

# the adapter tests' module-scoped fixtures: a live `gatehouse serve`, a Prefect test server, saved blocks
live_settings = adapter_fixtures.live_settings
monkeypatch_module = adapter_fixtures.monkeypatch_module
live = adapter_fixtures.live
prefect_api = prefect_fixtures.prefect_api
blocks = prefect_fixtures.blocks

PREFIX = "Prefect run kill -9"
REASON = "contains raw e-mails"


# --------------------------------------------------------------------------- processes


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Its own process group, so ``_kill_group`` also ends the flow runs a worker started."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):  # a flow-run child may outlive the worker
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait(timeout=10)


def _proc(pid: int) -> tuple[int, str]:
    """(parent pid, command line) of a live process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    ppid = int(stat.rsplit(")", 1)[1].split()[1])
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ppid, cmdline


def until_each(
    checks: dict[str, Callable[[], bool]], timeout: float, what: str, logs: Callable[[], str] = str
) -> dict[str, float]:
    """Poll every check until all were true once; return when each first was (time.monotonic())."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, check in checks.items():
            if name not in seen and check():
                seen[name] = time.monotonic()
        if len(seen) == len(checks):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"not {what} within {timeout}s: only {sorted(seen)}\n{logs()}")


@dataclass
class Deployed:
    deployment_id: UUID
    worker: subprocess.Popen[bytes]
    env: dict[str, str]
    logs: Path

    def start(self, mode: str, out_dir: Path) -> str:
        out_dir.mkdir()
        parameters = {"requester": "alice", "mode": mode, "block_name": BLOCK, "out_dir": str(out_dir)}
        with get_client(sync_client=True) as client:
            return str(client.create_flow_run_from_deployment(self.deployment_id, parameters=parameters).id)

    def log_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-6000:]}" for p in sorted(self.logs.iterdir()))


@pytest.fixture(scope="module")
def deployed(
    prefect_api: PrefectApi, blocks: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    """The example flow deployed to a process work pool and a `prefect worker start` polling it."""
    logs = tmp_path_factory.mktemp("prefect-crash")
    pool = f"gatehouse-crash-{os.getpid()}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(
                name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template()
            )
        )
    source: Flow[Any, Any] = Flow.from_source(  # type: ignore[assignment]
        source=str(ROOT / "examples"), entrypoint="prefect_pii_export.py:pii_export"
    )
    deployment_id = source.deploy(
        name="crash-test", work_pool_name=pool, build=False, push=False, print_next_steps=False
    )
    assert isinstance(deployment_id, UUID)  # deploy() called outside an event loop runs synchronously
    env = {**prefect_api.env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PYTHONPATH": str(ROOT)}
    worker = _spawn(
        [PREFECT, "worker", "start", "--pool", pool, "--type", "process"], env, logs / "worker.log"
    )
    try:
        yield Deployed(deployment_id, worker, env, logs)
    finally:
        _kill_group(worker)


# --------------------------------------------------------------------------- Gatehouse views


def gates_of(live: Live, run_id: str) -> list[dict[str, Any]]:
    with live.client("admin") as admin:
        listed = admin.get("/v1/gates", params={"limit": 1000}).json()
    return [g for g in listed if g["request"]["run"]["run_id"] == run_id]


def gate(live: Live, gate_id: str) -> dict[str, Any]:
    with live.client("admin") as admin:
        return dict(admin.get(f"/v1/gates/{gate_id}").json())


def verdicts(gate: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(d["principal_id"], d["verdict"], d["comment"]) for d in gate["decisions"]]


def audit_verifies(settings: Settings) -> bool:
    gatekeeper = open_gatekeeper(settings)
    try:
        return gatekeeper.audit.verify().ok
    finally:
        gatekeeper.store.close()


def final(run_id: str) -> bool:
    state = flow_run(run_id).state
    return state is not None and state.is_final()


def report_losses(
    report: Report, what: str, live: Live, runs: dict[str, str], opened: dict[str, dict[str, Any]]
) -> tuple[dict[str, list[dict[str, Any]]], FlowRun, FlowRun]:
    """Report gates lost, decisions lost and duplicates for the "approve" and "reject" runs (bob
    approved one, carol rejected the other while nothing was running); returns their gates and runs."""
    after = {kind: gates_of(live, run_id) for kind, run_id in runs.items()}
    approved_run, rejected_run = flow_run(runs["approve"]), flow_run(runs["reject"])
    found = {g["id"] for gates in after.values() for g in gates}
    kept = {
        "approve": approved_run.state is not None
        and approved_run.state.type is StateType.COMPLETED
        and [verdicts(g) for g in after["approve"]] == [[("bob", "approve", "aggregates only")]],
        "reject": rejected_run.state is not None
        and rejected_run.state.type is StateType.FAILED
        and [verdicts(g) for g in after["reject"]] == [[("carol", "reject", REASON)]],
    }
    report(f"{what}: gates lost", len({g["id"] for g in opened.values()} - found), "gates", "0")
    report(f"{what}: decisions lost", sum(not ok for ok in kept.values()), "decisions", "0")
    report(f"{what}: duplicate gates after restart", len(found) - len(runs), "gates", "0")
    return after, approved_run, rejected_run


def retry(deployed: Deployed, run_id: str) -> None:
    """What a Prefect user does with a crashed run: `prefect flow-run retry` (Scheduled, forced)."""
    done = subprocess.run(
        [PREFECT, "flow-run", "retry", run_id],
        env=deployed.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "scheduled for retry" in done.stdout, done.stdout


# --------------------------------------------------------------------------- pause mode


@pytest.mark.slow
def test_kill_9_of_a_paused_flow_run_keeps_its_gate_and_the_decision_made_while_it_was_dead(
    deployed: Deployed, live: Live, live_settings: Settings, tmp_path: Path, report: Report
) -> None:
    runs = {"approve": deployed.start("pause", tmp_path / "approve")}
    runs["reject"] = deployed.start("pause", tmp_path / "reject")
    csv = {kind: tmp_path / kind / "customers_by_region.csv" for kind in runs}

    opened: dict[str, dict[str, Any]] = {}
    for kind, run_id in runs.items():
        try:
            opened[kind] = live.gate_for(run_id, timeout=300)
            wait_for_state(run_id, lambda s: s.type is StateType.PAUSED, timeout=120)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{deployed.log_text()}") from None
        assert opened[kind]["status"] == "PENDING"

    # SIGKILL the process each run executes in (the worker's child, recorded on the flow run)
    killed_at: dict[str, float] = {}
    for kind, run_id in runs.items():
        paused = flow_run(run_id)
        assert paused.state is not None and paused.state.type is StateType.PAUSED
        assert opened[kind]["id"] in (paused.state.message or "")
        pid = int(str(paused.infrastructure_pid).rsplit(":", 1)[-1])
        ppid, cmdline = _proc(pid)
        assert ppid == deployed.worker.pid and "prefect.engine" in cmdline, (ppid, cmdline)
        os.kill(pid, signal.SIGKILL)
        killed_at[kind] = time.monotonic()

    crashed: dict[str, FlowRun] = {}
    crash_s = []
    for kind, run_id in runs.items():
        crashed[kind] = wait_for_state(run_id, lambda s: s.is_final(), timeout=120)
        crash_s.append(time.monotonic() - killed_at[kind])
        state = crashed[kind].state
        assert state is not None and state.type is StateType.CRASHED, (state, deployed.log_text())
        assert "-9" in (state.message or ""), state.message  # the worker saw the SIGKILL
        assert infrastructure_gone(crashed[kind], timeout=5)

    # while the processes are dead: every gate is still there, PENDING, and can be decided
    before = {kind: gate(live, opened[kind]["id"]) for kind in runs}
    assert {kind: g["status"] for kind, g in before.items()} == {"approve": "PENDING", "reject": "PENDING"}
    assert live.decide("bob", opened["approve"]["id"], "approve", "aggregates only").status_code == 200
    assert live.decide("carol", opened["reject"]["id"], "reject", REASON).status_code == 200
    assert flow_run(runs["approve"]).state.type is StateType.CRASHED  # type: ignore[union-attr]

    # restart as a Prefect user would; the worker runs each flow run again in a new process
    retried_at: dict[str, float] = {}
    for kind, run_id in runs.items():
        retried_at[kind] = time.monotonic()
        retry(deployed, run_id)
    seen = until_each(
        {
            "past the gate": csv["approve"].exists,
            "approved run finished": lambda: final(runs["approve"]),
            "rejected run finished": lambda: final(runs["reject"]),
        },
        300,
        "finished after the retry",
        deployed.log_text,
    )

    # the figures first, so a failing run still reports what it lost
    after, approved_run, rejected_run = report_losses(report, PREFIX, live, runs, opened)
    report(f"{PREFIX}: kill to Crashed (worker)", round(max(crash_s), 2), "s")
    report(
        f"{PREFIX}: retry to the step after the gate (approved while dead)",
        round(seen["past the gate"] - retried_at["approve"], 2),
        "s",
    )
    report(
        f"{PREFIX}: retry to Failed (rejected while dead)",
        round(seen["rejected run finished"] - retried_at["reject"], 2),
        "s",
    )

    assert approved_run.state is not None and approved_run.state.type is StateType.COMPLETED, (
        approved_run.state,
        deployed.log_text(),
    )
    assert rejected_run.state is not None and rejected_run.state.type is StateType.FAILED, rejected_run.state
    rejected_message = rejected_run.state.message or ""
    assert f"gate {opened['reject']['id']} was rejected by carol: {REASON}" in rejected_message
    assert not csv["reject"].exists()  # the step after the gate never ran
    for kind, run_id in runs.items():
        history = state_names(run_id)
        assert history.count("Paused") == 1, history  # the re-run did not wait a second time
        assert history.count("Running") == 2, history  # ...and it ran in a second process
        assert history.index("Paused") < history.index("Crashed") < len(history) - 2, history
        assert history[-2:] == ["Running", "Completed" if kind == "approve" else "Failed"], history

    assert [g["id"] for g in after["approve"]] == [opened["approve"]["id"]]  # the same gate: no second one
    assert [g["id"] for g in after["reject"]] == [opened["reject"]["id"]]
    assert after["approve"][0]["status"] == "CONSUMED"
    assert verdicts(after["approve"][0]) == [("bob", "approve", "aggregates only")]
    assert after["reject"][0]["status"] == "REJECTED"
    assert verdicts(after["reject"][0]) == [("carol", "reject", REASON)]
    assert_lineage(live, opened["approve"]["id"], runs["approve"])
    assert audit_verifies(live_settings)


# --------------------------------------------------------------------------- suspend mode


@pytest.mark.slow
def test_kill_9_of_the_resumer_while_runs_are_suspended_loses_no_decision(
    deployed: Deployed, live: Live, live_settings: Settings, tmp_path: Path, report: Report
) -> None:
    watch = [sys.executable, "-m", "prefect_blocks", "watch", "--block", BLOCK, "--poll", "1"]
    watcher = _spawn(watch, deployed.env, deployed.logs / "watch.log")
    restarted: subprocess.Popen[bytes] | None = None
    try:
        runs = {"approve": deployed.start("suspend", tmp_path / "approve")}
        runs["reject"] = deployed.start("suspend", tmp_path / "reject")
        csv = tmp_path / "approve" / "customers_by_region.csv"
        opened: dict[str, dict[str, Any]] = {}
        for kind, run_id in runs.items():
            try:
                opened[kind] = live.gate_for(run_id, timeout=300)
                suspended = wait_for_state(
                    run_id, lambda s: s.is_paused() and s.name == "Suspended", timeout=120
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{deployed.log_text()}") from None
            assert infrastructure_gone(suspended), "the flow's process still runs while the run is suspended"

        assert watcher.poll() is None, deployed.log_text()
        watcher.send_signal(signal.SIGKILL)
        assert watcher.wait(timeout=10) == -signal.SIGKILL

        assert live.decide("bob", opened["approve"]["id"], "approve", "aggregates only").status_code == 200
        assert live.decide("carol", opened["reject"]["id"], "reject", REASON).status_code == 200
        for run_id in runs.values():  # nobody resumes them while the resumer is dead
            assert flow_run(run_id).state.name == "Suspended"  # type: ignore[union-attr]

        restarted_at = time.monotonic()
        restarted = _spawn(watch, deployed.env, deployed.logs / "watch.log")
        seen = until_each(
            {
                "resumed": lambda: flow_run(runs["approve"]).state.name != "Suspended",  # type: ignore[union-attr]
                "past the gate": csv.exists,
                "approved run finished": lambda: final(runs["approve"]),
                "rejected run finished": lambda: final(runs["reject"]),
            },
            300,
            "settled after the resumer's restart",
            deployed.log_text,
        )

        what = f"{PREFIX} (suspended, resumer killed)"
        after, approved_run, rejected_run = report_losses(report, what, live, runs, opened)
        report(f"{what}: resumer restart to run resumed", round(seen["resumed"] - restarted_at, 2), "s")
        report(
            f"{what}: resumer restart to the step after the gate",
            round(seen["past the gate"] - restarted_at, 2),
            "s",
        )
        report(
            f"{what}: resumer restart to Failed (rejected while dead)",
            round(seen["rejected run finished"] - restarted_at, 2),
            "s",
        )

        assert approved_run.state is not None and approved_run.state.type is StateType.COMPLETED, (
            approved_run.state,
            deployed.log_text(),
        )
        assert rejected_run.state is not None and rejected_run.state.type is StateType.FAILED
        assert f"was rejected by carol: {REASON}" in (rejected_run.state.message or "")
        assert state_names(runs["reject"])[-2:] == ["Suspended", "Failed"]  # never started again
        assert not (tmp_path / "reject" / "customers_by_region.csv").exists()
        history = state_names(runs["approve"])
        assert history[history.index("Suspended") :][:3] == ["Suspended", "Resuming", "Pending"], history
        assert history[-2:] == ["Running", "Completed"], history
        assert [g["id"] for g in after["approve"]] == [opened["approve"]["id"]]  # no second gate
        assert [g["id"] for g in after["reject"]] == [opened["reject"]["id"]]
        assert after["approve"][0]["status"] == "CONSUMED"
        assert verdicts(after["approve"][0]) == [("bob", "approve", "aggregates only")]
        assert after["reject"][0]["status"] == "REJECTED"
        assert verdicts(after["reject"][0]) == [("carol", "reject", REASON)]
        key = f"suspended-gatehouse-{opened['approve']['id'].lower()}-response"
        assert run_input(runs["approve"], key)["approvers"] == ["bob"]
        key = f"suspended-gatehouse-{opened['reject']['id'].lower()}-response"
        assert run_input(runs["reject"], key)["decisions"][0]["principal_id"] == "carol"
        assert audit_verifies(live_settings)
    finally:
        _kill_group(watcher)
        if restarted is not None:
            _kill_group(restarted)
