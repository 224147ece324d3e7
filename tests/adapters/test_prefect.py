"""The Prefect block on real Prefect (a test-harness server, a process worker) against a real
`gatehouse serve`: every contract scenario, plus what only Prefect has — the Paused state and its
description, the verified approver in the run input, a resume from outside Gatehouse that must not
open the gate, suspension with its re-run passing without a second gate, the block's standard
suite, registration through the CLI and the collections entry point, and lineage."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import urllib.response
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import Flow, flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.input import read_flow_run_input
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_HOME,
    PREFECT_MEMO_STORE_PATH,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    get_current_settings,
    temporary_settings,
)
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect.testing.utilities import prefect_test_harness
from prefect.workers.process import ProcessWorker
from pydantic import SecretStr

import prefect_blocks
from examples.prefect_pii_export import pii_export
from prefect_blocks import ApprovalGate, GateDecision
from prefect_blocks._block import LOGO_URL
from tests.adapters.contract import *  # noqa: F403 - every contract scenario runs on Prefect
from tests.adapters.contract import Live, StepResult, StepSpec, unique

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")
BLOCK = "gatehouse-test"  # poll_seconds=30: only the resumer can make a run continue fast
FAST_POLL_BLOCK = "gatehouse-test-fastpoll"  # poll_seconds=0.3: notices resumes made elsewhere
POOL = "gatehouse-test-pool"
DOWNSTREAM: dict[str, float] = {}  # run key → time.monotonic() when the step after the gate ran


# --------------------------------------------------------------------------- Prefect


@dataclass(frozen=True)
class PrefectApi:
    url: str
    env: dict[str, str]  # for subprocesses: the harness's API and this test's Prefect home


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectApi]:
    """A temporary Prefect server (SQLite) for this module, with its own Prefect home."""
    home = tmp_path_factory.mktemp("prefect-home")
    updates = {
        PREFECT_HOME: str(home),
        PREFECT_MEMO_STORE_PATH: str(home / "memo_store.toml"),
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 120,
    }
    with temporary_settings(updates=updates), prefect_test_harness(server_startup_timeout=120):
        url = str(PREFECT_API_URL.value())
        env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True)}
        env["PREFECT_API_URL"] = url
        yield PrefectApi(url, env)


@pytest.fixture(scope="module")
def blocks(prefect_api: PrefectApi, live: Live) -> dict[str, ApprovalGate]:
    """The block saved in Prefect, as flows load it (the pipeline's token: etl-bot, scope request)."""
    saved = {
        BLOCK: ApprovalGate(url=live.base_url, token=SecretStr(live.gate_requester_token), poll_seconds=30),
        FAST_POLL_BLOCK: ApprovalGate(
            url=live.base_url, token=SecretStr(live.gate_requester_token), poll_seconds=0.3
        ),
    }
    for name, block in saved.items():
        block.save(name, overwrite=True)
    return saved


def flow_run(flow_run_id: UUID | str) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(str(flow_run_id)))


def wait_for_state(
    flow_run_id: UUID | str, check: Callable[[State[Any]], bool], timeout: float = 120.0
) -> FlowRun:
    deadline = time.monotonic() + timeout
    run = flow_run(flow_run_id)
    while time.monotonic() < deadline:
        run = flow_run(flow_run_id)
        if run.state is not None and check(run.state):
            return run
        time.sleep(0.1)
    raise AssertionError(f"flow run {flow_run_id} is {run.state!r} after {timeout}s")


def state_names(flow_run_id: UUID | str) -> list[str]:
    """The run's states in order, by name (Running, Suspended, Resuming, …)."""
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(UUID(str(flow_run_id)))
    return [s.name or s.type.value for s in sorted(states, key=lambda s: s.timestamp)]


def run_input(flow_run_id: UUID | str, key: str) -> Any:
    return read_flow_run_input(key, flow_run_id=UUID(str(flow_run_id)))


# --------------------------------------------------------------------------- the contract harness


@task
def downstream(run_key: str) -> None:
    DOWNSTREAM[run_key] = time.monotonic()


@flow(name="gatehouse-contract")
def gated_step(
    run_key: str,
    action: str,
    target: str,
    datasets: list[str],
    environment: str,
    requester: str,
    reason: str,
    block_name: str,
    parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Export customers behind a gate, then a downstream step that records it ran."""
    gate = ApprovalGate.load(block_name)
    decision = gate.require(
        action,
        target=target,
        datasets=datasets,
        environment=environment,
        requester=requester,
        reason=reason,
        parameters=parameters,
        key=run_key,
    )
    downstream(run_key)
    return decision.model_dump(mode="json")


class PrefectRun:
    """One flow run in a background thread (with the harness's settings, which live in context)."""

    def __init__(self, target: Callable[[], State[Any]], run_key: str) -> None:
        self.run_key = run_key
        self.state: State[Any] | None = None
        self.error: BaseException | None = None
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=context.run, args=(self._run, target), daemon=True)
        self.thread.start()

    def _run(self, target: Callable[[], State[Any]]) -> None:
        try:
            self.state = target()
        except BaseException as exc:
            self.error = exc

    def result(self, timeout: float) -> StepResult:
        self.thread.join(timeout)
        if self.thread.is_alive():
            pytest.fail(f"the flow run for {self.run_key} was still running after {timeout}s")
        if self.error is not None:
            raise self.error
        assert self.state is not None
        ran = self.run_key in DOWNSTREAM
        if self.state.is_completed():
            decision = self.state.result()
            return StepResult("success", downstream_ran=ran, decision=dict(decision))
        return StepResult("failed", detail=self.state.message or "", downstream_ran=ran)


@dataclass
class PrefectHarness:
    name: str = "prefect"
    block_name: str = BLOCK

    def start(self, spec: StepSpec) -> PrefectRun:
        def target() -> State[Any]:
            state: State[Any] = gated_step(
                run_key=spec.run_key,
                action=spec.action,
                target=spec.target,
                datasets=list(spec.datasets),
                environment=spec.environment,
                requester=spec.requester,
                reason=spec.reason,
                block_name=self.block_name,
                parameters=spec.parameter_map,
                return_state=True,
            )
            return state

        return PrefectRun(target, spec.run_key)


@pytest.fixture
def harness(blocks: dict[str, ApprovalGate]) -> PrefectHarness:
    return PrefectHarness()


# --------------------------------------------------------------------------- pause mode


def test_paused_run_shows_the_gate_and_continues_at_once_with_the_verified_approver(
    harness: PrefectHarness, live: Live
) -> None:
    spec = StepSpec(run_key=unique("paused"))
    run = harness.start(spec)
    gate = live.gate_for(spec.run_key)
    run_id = gate["request"]["run"]["run_id"]
    paused = wait_for_state(run_id, lambda s: s.type is StateType.PAUSED)
    assert paused.state is not None
    assert paused.state.name == "Paused"
    assert paused.state.state_details.pause_key == f"gatehouse-{gate['id'].lower()}"
    assert gate["id"] in (paused.state.message or "")
    assert "requested by alice" in (paused.state.message or "")
    assert gate["id"] in run_input(run_id, f"paused-gatehouse-{gate['id'].lower()}-description")

    decided_at = time.monotonic()
    assert live.decide("bob", gate["id"], "approve", "aggregates only").status_code == 200
    result = run.result(timeout=180)
    assert result.outcome == "success", result.detail
    # the block's own fallback poll is 30 s: only the resumer can have continued the run this fast
    assert DOWNSTREAM[spec.run_key] - decided_at < 5.0
    assert result.decision["approvers"] == ["bob"]
    assert result.decision["comment"] == "aggregates only"

    stored = run_input(run_id, f"paused-gatehouse-{gate['id'].lower()}-response")
    assert stored["gate_id"] == gate["id"]
    assert stored["status"] == "APPROVED"
    assert stored["requester"] == "alice"
    [decision] = stored["decisions"]
    assert decision["principal_id"] == "bob"
    assert decision["via"] == "api-token"
    assert decision["verdict"] == "approve"
    assert decision["comment"] == "aggregates only"
    assert flow_run(run_id).state.type is StateType.COMPLETED  # type: ignore[union-attr]


def test_a_resume_from_outside_gatehouse_does_not_open_the_gate(
    live: Live, blocks: dict[str, ApprovalGate]
) -> None:
    spec = StepSpec(run_key=unique("forged"))
    run = PrefectHarness(block_name=FAST_POLL_BLOCK).start(spec)
    gate = live.gate_for(spec.run_key)
    run_id = gate["request"]["run"]["run_id"]
    wait_for_state(run_id, lambda s: s.type is StateType.PAUSED)
    forged = GateDecision(gate_id=gate["id"], status="APPROVED", approvers=["mallory"])
    with get_client(sync_client=True) as client:  # what anyone with Prefect API access can do
        client.resume_flow_run(UUID(run_id), run_input=forged.run_input())
    repaused = wait_for_state(
        run_id, lambda s: s.is_paused() and s.state_details.pause_key == f"gatehouse-{gate['id'].lower()}-2"
    )
    assert spec.run_key not in DOWNSTREAM
    assert repaused.state is not None and gate["id"] in (repaused.state.message or "")
    live.decide("carol", gate["id"], "approve")
    result = run.result(timeout=180)
    assert result.outcome == "success", result.detail
    assert result.decision["approvers"] == ["carol"]  # the service's word, not the forged input
    assert run_input(run_id, f"paused-gatehouse-{gate['id'].lower()}-2-response")["approvers"] == ["carol"]


def test_rejection_fails_the_run_with_the_reason_and_records_who_rejected(
    harness: PrefectHarness, live: Live
) -> None:
    spec = StepSpec(run_key=unique("rejected"))
    run = harness.start(spec)
    gate = live.gate_for(spec.run_key)
    live.decide("carol", gate["id"], "reject", "needs a DPIA first")
    result = run.result(timeout=180)
    assert result.outcome == "failed"
    assert f"gate {gate['id']} was rejected by carol: needs a DPIA first" in result.detail
    assert "GateRejected" in result.detail
    stored = run_input(gate["request"]["run"]["run_id"], f"paused-gatehouse-{gate['id'].lower()}-response")
    assert stored["status"] == "REJECTED"
    assert [d["principal_id"] for d in stored["decisions"]] == ["carol"]


def test_the_steps_own_timeout_withdraws_the_gate(live: Live, blocks: dict[str, ApprovalGate]) -> None:
    @flow(name="gatehouse-timeout")
    def impatient(run_key: str) -> None:
        ApprovalGate.load(BLOCK).require("export", requester="alice", key=run_key, timeout_seconds=2)

    run_key = unique("timeout")
    state = PrefectRun(lambda: impatient(run_key, return_state=True), run_key)
    gate = live.gate_for(run_key)
    result = state.result(timeout=120)
    assert result.outcome == "failed"
    assert "was not decided within 2s" in result.detail
    with live.client("bot") as bot:
        assert bot.get(f"/v1/gates/{gate['id']}").json()["status"] == "CANCELLED"


def test_require_outside_a_flow_run_says_so(blocks: dict[str, ApprovalGate]) -> None:
    with pytest.raises(RuntimeError, match="inside a Prefect flow run"):
        blocks[BLOCK].require("export", requester="alice")


def test_the_async_twin_waits_without_blocking_the_loop(live: Live, blocks: dict[str, ApprovalGate]) -> None:
    ticks: list[float] = []

    @flow(name="gatehouse-async")
    async def async_step(run_key: str) -> dict[str, Any]:
        async def heartbeat() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.1)

        beating = asyncio.create_task(heartbeat())
        gate = await ApprovalGate.load(BLOCK)  # type: ignore[misc]
        with pytest.raises(TypeError, match="arequire"):
            gate.require("export", requester="alice", key=run_key)
        decision = await gate.arequire(
            "export", requester="alice", key=run_key, datasets=["warehouse/orders"]
        )
        beating.cancel()
        return decision.model_dump(mode="json")

    run_key = unique("async")
    run = PrefectRun(lambda: asyncio.run(async_step(run_key, return_state=True)), run_key)
    gate = live.gate_for(run_key)
    wait_for_state(gate["request"]["run"]["run_id"], lambda s: s.is_paused())
    waited_from = time.monotonic()
    time.sleep(1.0)
    live.decide("bob", gate["id"], "approve")
    run.thread.join(120)
    assert run.state is not None and run.state.is_completed(), run.state
    assert run.state.result()["approvers"] == ["bob"]
    assert len([t for t in ticks if t > waited_from]) >= 5  # the loop kept running while it waited


# --------------------------------------------------------------------------- the example flow, lineage


def lineage_rows(live: Live, gate_id: str) -> list[dict[str, Any]]:
    with live.client("admin") as admin:
        response = admin.get(f"/v1/lineage/gates/{gate_id}")
    assert response.status_code == 200, response.text
    return list(response.json()["rows"])


def assert_lineage(live: Live, gate_id: str, run_id: str) -> None:
    rows = lineage_rows(live, gate_id)
    seen = {(r["dataset"], r["operation"]) for r in rows}
    assert seen == {
        ("warehouse/customers", "export"),  # named at the gate
        ("warehouse/customers", "read"),  # the DataFrame the export task read
        ("exports/customers_by_region.csv", "export"),  # the DataFrame it wrote
    }
    for row in rows:
        assert (row["orchestrator"], row["run_id"], row["actor"], row["gate_id"]) == (
            "prefect",
            run_id,
            "alice",
            gate_id,
        )
    read = next(r for r in rows if r["operation"] == "read")
    assert read["row_count"] == 200
    assert "pii" in read["tags"]


def test_the_example_stops_at_the_gate_shows_paused_and_records_lineage(
    live: Live, blocks: dict[str, ApprovalGate], tmp_path: Path
) -> None:
    def target() -> State[Any]:
        state: State[Any] = pii_export(
            requester="alice", mode="pause", block_name=BLOCK, out_dir=str(tmp_path), return_state=True
        )
        return state

    run = PrefectRun(target, "example")
    # the default idempotency key names the flow run, the step and the target; this module's
    # suspend tests use the same target, but run later
    gate = live.gate_for("exports/customers_by_region.csv")
    assert gate["status"] == "PENDING"
    run_id = gate["request"]["run"]["run_id"]
    assert gate["request"]["run"]["pipeline"] == "pii-export"
    paused = wait_for_state(run_id, lambda s: s.type is StateType.PAUSED)
    time.sleep(1.0)
    assert flow_run(run_id).state.type is StateType.PAUSED  # type: ignore[union-attr]  # still waiting
    assert not (tmp_path / "customers_by_region.csv").exists()
    assert paused.state is not None and gate["id"] in (paused.state.message or "")
    live.decide("bob", gate["id"], "approve", "aggregates only")
    run.thread.join(180)
    assert run.state is not None and run.state.is_completed(), run.state
    assert run.state.result()["approved_by"] == ["bob"]
    assert (tmp_path / "customers_by_region.csv").read_text().startswith("region,customers,churn_risk")
    assert_lineage(live, gate["id"], run_id)


# --------------------------------------------------------------------------- suspend mode


@dataclass(frozen=True)
class Worker:
    deployment_id: UUID
    logs: Path


def _launch(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def worker(
    prefect_api: PrefectApi, blocks: dict[str, ApprovalGate], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """The example flow deployed to a process work pool, a worker polling it every second and the
    resumer operators run next to the gate service (`python -m prefect_blocks watch`)."""
    logs = tmp_path_factory.mktemp("prefect-worker")
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(
                name=POOL, type="process", base_job_template=ProcessWorker.get_default_base_job_template()
            )
        )
    source: Flow[Any, Any] = Flow.from_source(  # type: ignore[assignment]
        source=str(ROOT / "examples"), entrypoint="prefect_pii_export.py:pii_export"
    )
    deployment_id = source.deploy(
        name="suspend-test", work_pool_name=POOL, build=False, push=False, print_next_steps=False
    )
    env = {**prefect_api.env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PYTHONPATH": str(ROOT)}
    worker = _launch(
        [PREFECT, "worker", "start", "--pool", POOL, "--type", "process"], env, logs / "worker.log"
    )
    watcher = _launch(
        [sys.executable, "-m", "prefect_blocks", "watch", "--block", BLOCK, "--poll", "1"],
        env,
        logs / "watch.log",
    )
    try:
        yield Worker(deployment_id, logs)
    finally:
        _stop(watcher)
        _stop(worker)


def start_deployment(worker: Worker, tmp_path: Path) -> UUID:
    parameters = {"requester": "alice", "mode": "suspend", "block_name": BLOCK, "out_dir": str(tmp_path)}
    with get_client(sync_client=True) as client:
        return client.create_flow_run_from_deployment(worker.deployment_id, parameters=parameters).id


def logs_of(worker: Worker) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(worker.logs.iterdir()))


def infrastructure_gone(run: FlowRun, timeout: float = 60.0) -> bool:
    """Whether the process that ran the flow has exited (the worker records it as host:pid)."""
    pid = int(str(run.infrastructure_pid).rsplit(":", 1)[-1])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_suspend_releases_the_run_and_its_rerun_passes_without_a_second_gate(
    worker: Worker, live: Live, tmp_path: Path
) -> None:
    run_id = str(start_deployment(worker, tmp_path))
    try:
        gate = live.gate_for(run_id, timeout=300)
        suspended = wait_for_state(run_id, lambda s: s.is_paused() and s.name == "Suspended", timeout=120)
    except AssertionError:
        raise AssertionError(logs_of(worker)) from None
    assert suspended.state is not None
    assert suspended.state.state_details.pause_key == f"gatehouse-{gate['id'].lower()}"
    assert suspended.state.state_details.pause_reschedule
    assert infrastructure_gone(suspended), "the flow's process still runs while the run is suspended"
    assert gate["id"] in run_input(run_id, f"suspended-gatehouse-{gate['id'].lower()}-description")

    live.decide("bob", gate["id"], "approve", "aggregates only")
    try:
        done = wait_for_state(run_id, lambda s: s.is_final(), timeout=300)
    except AssertionError:
        raise AssertionError(logs_of(worker)) from None
    assert done.state is not None and done.state.type is StateType.COMPLETED, (done.state, logs_of(worker))
    history = state_names(run_id)  # it really stopped, was rescheduled and ran again
    assert history[history.index("Suspended") :][:3] == ["Suspended", "Resuming", "Pending"], history
    assert history[-2:] == ["Running", "Completed"], history
    with live.client("admin") as admin:
        gates = [
            g
            for g in admin.get("/v1/gates", params={"limit": 1000}).json()
            if g["request"]["run"]["run_id"] == run_id
        ]
    assert [g["id"] for g in gates] == [gate["id"]]  # the re-run found its gate: no second one
    assert gates[0]["status"] == "CONSUMED"
    stored = run_input(run_id, f"suspended-gatehouse-{gate['id'].lower()}-response")
    assert stored["approvers"] == ["bob"]
    assert stored["decisions"][0]["via"] == "api-token"
    assert (tmp_path / "customers_by_region.csv").exists()
    assert_lineage(live, gate["id"], run_id)


def test_a_rejected_suspended_run_fails_without_starting_again(
    worker: Worker, live: Live, tmp_path: Path
) -> None:
    run_id = str(start_deployment(worker, tmp_path))
    try:
        gate = live.gate_for(run_id, timeout=300)
        wait_for_state(run_id, lambda s: s.is_paused() and s.name == "Suspended", timeout=120)
    except AssertionError:
        raise AssertionError(logs_of(worker)) from None
    live.decide("carol", gate["id"], "reject", "contains raw e-mails")
    done = wait_for_state(run_id, lambda s: s.is_final(), timeout=120)
    assert done.state is not None and done.state.type is StateType.FAILED
    assert "was rejected by carol: contains raw e-mails" in (done.state.message or "")
    history = state_names(run_id)
    assert history[-2:] == ["Suspended", "Failed"], history  # failed by the watcher, never started again
    stored = run_input(run_id, f"suspended-gatehouse-{gate['id'].lower()}-response")
    assert stored["status"] == "REJECTED" and stored["decisions"][0]["principal_id"] == "carol"


# --------------------------------------------------------------------------- the block itself


class _PackagedLogo(urllib.request.BaseHandler):
    """No network here: answer the published logo URL with the logo the package ships."""

    handler_order = 100  # ahead of urllib's own HTTPSHandler

    def https_open(self, request: urllib.request.Request) -> Any:
        if request.full_url != LOGO_URL:
            return None
        body = (Path(prefect_blocks.__file__).parent / "logo.png").read_bytes()
        headers = Message()
        headers["Content-Type"] = "image/png"
        response = urllib.response.addinfourl(io.BytesIO(body), headers, request.full_url, 200)
        response.msg = "OK"  # read by urllib's HTTPErrorProcessor
        return response


class TestApprovalGateBlock(BlockStandardTestSuite):
    @pytest.fixture(autouse=True)
    def _offline_logo(self) -> Iterator[None]:
        urllib.request.install_opener(urllib.request.build_opener(_PackagedLogo()))
        try:
            yield
        finally:
            urllib.request.install_opener(None)  # type: ignore[arg-type]

    @pytest.fixture
    def block(self) -> type[ApprovalGate]:
        return ApprovalGate


def test_the_block_saves_and_loads_with_its_token_kept_secret(
    live: Live, blocks: dict[str, ApprovalGate]
) -> None:
    loaded = ApprovalGate.load(BLOCK)
    assert loaded.token.get_secret_value() == live.gate_requester_token
    assert live.gate_requester_token not in repr(loaded)
    assert loaded.get_client().base_url == live.base_url
    assert ApprovalGate.get_block_type_name() == "Gatehouse Approval Gate"


def test_prefect_block_register_finds_the_block(prefect_api: PrefectApi) -> None:
    done = subprocess.run(
        [PREFECT, "block", "register", "-m", "prefect_blocks"],
        env=prefect_api.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Gatehouse Approval Gate" in done.stdout
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug("gatehouse-approval-gate")
    assert block_type.name == "Gatehouse Approval Gate"


def test_prefect_loads_the_package_as_a_collection() -> None:
    from prefect.plugins import load_prefect_collections

    [entry] = [e for e in entry_points(group="prefect.collections") if e.name == "prefect_blocks"]
    assert entry.value == "prefect_blocks"
    assert load_prefect_collections()["prefect_blocks"] is prefect_blocks


def test_the_public_api_is_exactly_all() -> None:
    assert set(prefect_blocks.__all__) == {
        "ApprovalGate",
        "DecisionRecord",
        "GateCancelled",
        "GateDecision",
        "GateExpired",
        "GateNotApproved",
        "GateRejected",
        "watch_and_resume",
    }
    assert all(hasattr(prefect_blocks, name) for name in prefect_blocks.__all__)
    assert json.loads(GateDecision.input_schema())["title"] == "GateDecision"
