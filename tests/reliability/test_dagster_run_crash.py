"""`kill -9` of a Dagster run worker while its op waits in ``ApprovalGateResource.require_approval``.

Everything is the real thing, as a Dagster OSS deployment runs it: a persistent instance (SQLite
storage in a temporary DAGSTER_HOME), a code server (`dagster api grpc`) serving the adapter
tests' ``contract_job`` with its resource pointed at a live `gatehouse serve` (etl-bot's token),
a run launched with `dagster job launch` through the instance's DefaultRunLauncher, which has the
code server start the run worker in its own OS process. The op opens its gate and waits; the test
SIGKILLs the run worker. Dagster itself notices the dead worker and marks the run failed (with the
DefaultRunLauncher that is the code server's orphaned-run check — the daemon's run monitoring
only health-checks workers of launchers that support it, such as Kubernetes or ECS — with the
same ``report_run_failed`` the daemon would call). While the worker is dead a person decides.
The run is then re-executed from failure as the UI's "Re-execute from failure" and the run-retry
daemon do it (``create_reexecuted_run`` with ``FROM_FAILURE``, submitted to the same code server:
a new run id, a new worker process, the same root run).

Proved: the gate survives the crash in its state; the re-executed step finds the SAME gate (its
idempotency key is the root run + step; no second gate) and honours the decision made while the
worker was dead — an approval lets it pass at once and the downstream op runs; a rejection fails
it cleanly with ``dagster.Failure`` carrying the reason (no hang, no pass); the audit verifies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.execution.plan.resume_retry import ReexecutionStrategy
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import GrpcServerTarget
from dagster._grpc.client import DagsterGrpcClient

from gate_core import Settings, open_gatekeeper
from tests.adapters.contract import Live, StepSpec
from tests.adapters.test_dagster import events_of, run_config, run_status, step_result
from tests.reliability.conftest import Report, example_home
from tests.service.conftest import free_port, launch_server, make_tokens, stop_server

PREFIX = "Dagster run kill -9"
REPO = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).parent / "dagster")
JOB = "contract_job"  # tests/adapters/test_dagster.py: gated_step (require_approval), then downstream
RUN_TIMEOUT_S = 180.0


@dataclass
class Deployment:
    """A gate service and a Dagster deployment (instance + code server) that uses it."""

    live: Live
    settings: Settings
    instance: dg.DagsterInstance
    env: dict[str, str]  # DAGSTER_HOME and the resource's GATEHOUSE_URL / GATEHOUSE_TOKEN
    grpc_port: int
    code_server: subprocess.Popen[bytes]
    code_server_log: Path


def poll(condition: Callable[[], Any], timeout: float, what: Callable[[], str]) -> Any:
    """The condition's first truthy value, or fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s: {what()}")


def code_server_serving(port: int, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "the code server exited"
    try:
        DagsterGrpcClient(port=port, host="127.0.0.1").ping("up")
    except dg.DagsterError:
        return False
    return True


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group (the code server and the run workers it started)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("dagster-run-crash")
    settings = example_home(root, f"sqlite:///{root / 'gatehouse.db'}")
    gatekeeper = open_gatekeeper(settings)
    tokens = make_tokens(gatekeeper)
    gatekeeper.store.close()
    home = root / "dagster-home"
    home.mkdir()
    # DefaultRunCoordinator: runs launch on submit (the default QueuedRunCoordinator needs the daemon).
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    server = launch_server(settings, root / "serve.log")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "GATEHOUSE_URL": server.base_url,
        "GATEHOUSE_TOKEN": tokens["bot"],
    }
    port = free_port()
    log = root / "code-server.log"
    serve = ["-m", "tests.adapters.test_dagster", "-a", JOB, "-d", str(REPO)]
    code_server: subprocess.Popen[bytes] | None = None
    try:
        with log.open("wb") as out:
            code_server = subprocess.Popen(
                [DAGSTER, "api", "grpc", "--host", "127.0.0.1", "--port", str(port), *serve],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the run workers die with it
            )
        running = code_server
        poll(lambda: code_server_serving(port, running), 180, log.read_text)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield Deployment(
                Live(server.base_url, tokens, tokens["bot"]), settings, instance, env, port, code_server, log
            )
    finally:
        if code_server is not None:
            kill_group(code_server)
        stop_server(server)


# --------------------------------------------------------------------------- Dagster, as a user drives it


def launch(deployment: Deployment, run_id: str) -> None:
    """`dagster job launch` against the code server: the instance's run launcher starts the run."""
    config = json.dumps(run_config(StepSpec(run_key=run_id)))
    server = ["--grpc-host", "127.0.0.1", "--grpc-port", str(deployment.grpc_port)]
    tags = json.dumps({"dagster/user": "alice"})
    proc = subprocess.run(
        [
            DAGSTER,
            "job",
            "launch",
            *server,
            "-j",
            JOB,
            "--run-id",
            run_id,
            "--config-json",
            config,
            "--tags",
            tags,
        ],
        cwd=REPO,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def reexecute_from_failure(deployment: Deployment, parent_run_id: str) -> str:
    """What the UI's "Re-execute from failure" (and the run-retry daemon) does: a new run of the
    failed and unfinished steps, with the parent's tags, submitted to the same code location."""
    instance = deployment.instance
    target = GrpcServerTarget(host="127.0.0.1", port=deployment.grpc_port, socket=None, location_name=None)
    with WorkspaceProcessContext(instance, target) as process_context:
        workspace = process_context.create_request_context()
        parent = instance.get_run_by_id(parent_run_id)
        assert parent is not None and parent.remote_job_origin is not None
        repository = parent.remote_job_origin.repository_origin
        location = workspace.get_code_location(repository.code_location_origin.location_name)
        remote_job = location.get_repository(repository.repository_name).get_full_job(parent.job_name)
        run = instance.create_reexecuted_run(
            request_context=workspace,
            parent_run=parent,
            code_location=location,
            remote_job=remote_job,
            strategy=ReexecutionStrategy.FROM_FAILURE,
            use_parent_run_tags=True,
        )
        instance.submit_run(run.run_id, workspace)
        return run.run_id


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The run worker's pid, from the engine event it logs when it starts ("Started process for
    run (pid: …)"); with the in-process executor the ops run in that process."""
    for event in events_of(instance, run_id, dg.DagsterEventType.ENGINE_EVENT):
        pid = event.engine_event_data.metadata.get("pid")
        if pid is not None and (event.message or "").startswith("Started process for run"):
            return int(str(pid.value))
    return None


def logged(instance: dg.DagsterInstance, run_id: str, text: str) -> bool:
    return any(text in (entry.message or "") for entry in instance.all_logs(run_id))


def run_story(deployment: Deployment, run_id: str) -> str:
    """What Dagster recorded of a run (status and log lines), and the code server's log tail."""
    run = deployment.instance.get_run_by_id(run_id)
    lines = [e.message for e in deployment.instance.all_logs(run_id)] if run else []
    server = deployment.code_server_log.read_text()[-3000:]
    return f"run {run_id}: {run.status if run else 'not found'}\n" + "\n".join(lines) + f"\n{server}"


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, ...), None once reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()


def is_dead(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def finished(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus | None:
    status = run_status(instance, run_id)
    return status if status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE) else None


def seconds_to_step_event(
    instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType, since: float
) -> float:
    """Seconds from ``since`` (wall clock) to the gated step's last ``kind`` event in the run."""
    entries = [
        e
        for e in instance.all_logs(run_id, of_type=kind)
        if e.dagster_event is not None and e.dagster_event.step_key == "gated_step"
    ]
    assert entries, f"no {kind} for gated_step in run {run_id}"
    return float(entries[-1].timestamp) - since


def gates_of(live: Live, run_id: str) -> list[dict[str, Any]]:
    with live.client("admin") as admin:
        return [
            g
            for g in admin.get("/v1/gates", params={"limit": 1000}).json()
            if run_id in (g["request"].get("idempotency_key") or "")
        ]


def gate_state(live: Live, gate_id: str) -> dict[str, Any]:
    with live.client("admin") as admin:
        response = admin.get(f"/v1/gates/{gate_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


@dataclass
class Crash:
    run_id: str
    gate: dict[str, Any]
    state_after_kill: dict[str, Any]
    marked_failed_s: float


def crash_while_waiting(deployment: Deployment, decide: Callable[[str], None]) -> Crash:
    """Launch the job, SIGKILL its run worker while the op waits at the gate, ``decide`` while it
    is dead, and return once Dagster has marked the run failed."""
    instance, live = deployment.instance, deployment.live
    run_id = str(uuid.uuid4())
    launch(deployment, run_id)
    [gate] = poll(lambda: gates_of(live, run_id), RUN_TIMEOUT_S, lambda: run_story(deployment, run_id))
    assert gate["status"] == "PENDING"
    assert gate["request"]["idempotency_key"] == f"dagster:{JOB}:{run_id}:gated_step"
    waiting = f"gatehouse: waiting for approval of gate {gate['id']}"
    poll(lambda: logged(instance, run_id, waiting), 60, lambda: f"run {run_id} never logged {waiting!r}")
    assert run_status(instance, run_id) is dg.DagsterRunStatus.STARTED
    pid = run_worker_pid(instance, run_id)
    assert pid is not None, "the run worker logged no pid"
    stat = proc_stat(pid)
    assert stat is not None and int(stat[1]) == deployment.code_server.pid  # the worker, not the server

    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    poll(lambda: is_dead(pid), 30, lambda: f"run worker {pid} survived SIGKILL")
    state_after_kill = gate_state(live, gate["id"])
    decide(gate["id"])
    poll(
        lambda: run_status(instance, run_id) is dg.DagsterRunStatus.FAILURE,
        60,
        lambda: f"Dagster did not mark run {run_id} failed: {run_status(instance, run_id)}",
    )
    marked_failed_s = time.monotonic() - killed_at
    crash = f"Run execution process for {run_id} was terminated by signal 9 (SIGKILL)."
    assert logged(instance, run_id, crash), deployment.code_server_log.read_text()[-3000:]
    assert not events_of(instance, run_id, dg.DagsterEventType.STEP_SUCCESS, "gated_step")
    return Crash(run_id, gate, state_after_kill, marked_failed_s)


def restart(deployment: Deployment, crash: Crash) -> tuple[str, float]:
    """Re-execute the crashed run from failure; the new run's id and when it was asked for."""
    started = time.time()
    new_run_id = reexecute_from_failure(deployment, crash.run_id)
    poll(
        lambda: finished(deployment.instance, new_run_id),
        RUN_TIMEOUT_S,
        lambda: f"re-executed run {new_run_id} still {run_status(deployment.instance, new_run_id)}",
    )
    new_run = deployment.instance.get_run_by_id(new_run_id)
    assert new_run is not None
    assert new_run.root_run_id == crash.run_id and new_run.parent_run_id == crash.run_id
    assert sorted(new_run.step_keys_to_execute or []) == ["downstream", "gated_step"]
    return new_run_id, started


def audit_ok(settings: Settings) -> bool:
    gatekeeper = open_gatekeeper(settings)
    try:
        return bool(gatekeeper.audit.verify().ok)
    finally:
        gatekeeper.store.close()


# --------------------------------------------------------------------------- the scenarios


@pytest.mark.slow
def test_kill_9_of_a_waiting_run_then_approval_while_dead_passes_on_reexecution(
    deployment: Deployment, report: Report
) -> None:
    live = deployment.live

    def approve(gate_id: str) -> None:
        answer = live.decide("bob", gate_id, "approve", "approved while the run was dead")
        assert answer.status_code == 200, answer.text

    crash = crash_while_waiting(deployment, approve)
    new_run_id, started = restart(deployment, crash)
    resumed_s = seconds_to_step_event(
        deployment.instance, new_run_id, dg.DagsterEventType.STEP_SUCCESS, started
    )

    result = step_result(deployment.instance, new_run_id, "gated_step", "downstream")
    gates = gates_of(live, crash.run_id)
    final = gate_state(live, crash.gate["id"])
    gates_lost = int(crash.state_after_kill["status"] != "PENDING") + int(not gates)
    decisions_lost = int(final["status"] != "CONSUMED" or "bob" not in final["decided_by"])
    report(f"{PREFIX}: gates lost", gates_lost, "gates", "0")
    report(f"{PREFIX}: decisions lost", decisions_lost, "decisions", "0")
    report(f"{PREFIX}: duplicate gates after restart", len(gates) - 1, "gates", "0")
    report(f"{PREFIX}: re-execution start to past the gate", round(resumed_s, 2), "s")
    report(f"{PREFIX}: kill to run marked failed by Dagster", round(crash.marked_failed_s, 2), "s")

    assert crash.state_after_kill["status"] == "PENDING"
    assert [g["id"] for g in gates] == [crash.gate["id"]]  # the re-execution found the same gate
    assert result.outcome == "success", result.detail
    assert result.downstream_ran
    assert result.decision["gate_id"] == crash.gate["id"]
    assert result.decision["approvers"] == ["bob"]
    assert final["status"] == "CONSUMED"
    assert final["request"]["run"]["run_id"] == crash.run_id  # opened by the killed run, used by the new one
    assert final["consumed_at"] is not None
    assert audit_ok(deployment.settings)


@pytest.mark.slow
def test_kill_9_of_a_waiting_run_then_rejection_while_dead_fails_the_reexecution(
    deployment: Deployment, report: Report
) -> None:
    live = deployment.live
    reason = "raw e-mails in the extract"

    def reject(gate_id: str) -> None:
        answer = live.decide("carol", gate_id, "reject", reason)
        assert answer.status_code == 200, answer.text

    crash = crash_while_waiting(deployment, reject)
    new_run_id, started = restart(deployment, crash)
    stopped_s = seconds_to_step_event(
        deployment.instance, new_run_id, dg.DagsterEventType.STEP_FAILURE, started
    )

    result = step_result(deployment.instance, new_run_id, "gated_step", "downstream")
    gates = gates_of(live, crash.run_id)
    final = gate_state(live, crash.gate["id"])
    gates_lost = int(crash.state_after_kill["status"] != "PENDING") + int(not gates)
    decisions_lost = int(final["status"] != "REJECTED" or final["decided_by"] != ["carol"])
    report(f"{PREFIX} (rejected while dead): gates lost", gates_lost, "gates", "0")
    report(f"{PREFIX} (rejected while dead): decisions lost", decisions_lost, "decisions", "0")
    report(f"{PREFIX} (rejected while dead): duplicate gates after restart", len(gates) - 1, "gates", "0")
    report(f"{PREFIX} (rejected while dead): re-execution start to step failed", round(stopped_s, 2), "s")

    assert crash.state_after_kill["status"] == "PENDING"
    assert [g["id"] for g in gates] == [crash.gate["id"]]
    assert run_status(deployment.instance, new_run_id) is dg.DagsterRunStatus.FAILURE
    assert result.detail == f"gate {crash.gate['id']} was rejected by carol: {reason}"
    assert not result.downstream_ran
    failures = events_of(deployment.instance, new_run_id, dg.DagsterEventType.STEP_FAILURE, "gated_step")
    assert len(failures) == 1  # a Failure, not retried by the op's RetryPolicy: the decision is final
    user = failures[0].step_failure_data.user_failure_data
    assert user is not None
    assert user.metadata["gatehouse/status"] == dg.MetadataValue.text("REJECTED")
    assert final["status"] == "REJECTED"
    assert audit_ok(deployment.settings)
