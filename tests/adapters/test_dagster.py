"""The Dagster adapter on real Dagster against a real `gatehouse serve`.

The adapter contract (tests/adapters/contract.py) runs on a tiny job — a gated op, then a
downstream op that records it ran — executed with ``execute_in_process`` in a background thread;
a retry (``attempt`` > 1) is a real Dagster re-execution of the first run (``execute_job`` with
``ReexecutionOptions``: new run id, same root run), which must find the same gate.

Dagster-specific: the decision as step and asset metadata, ``Failure`` metadata on reject, a step
retry inside one run, lineage with Dagster's standard table metadata, the long-wait sensor
(``build_sensor_context``: exactly one run per approved gate across ticks, rejected and expired
gates reported, one batched HTTP call per tick with 1,000 pending gates), and the example
Definitions (``dagster definitions validate``; its gated asset waits for approval).

No ``from __future__ import annotations`` here: Dagster reads the config and resource parameters
of ops and assets from their annotations and cannot resolve them as strings.
"""

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from dagster_resources import (
    GATE_ID_TAG,
    RUN_KEY_TAG,
    ApprovalDecision,
    ApprovalGateResource,
    SensorCursor,
    approval_sensor,
)
from gate_core import AuthMethod, DatasetRef, GateRequest, RunContext, Settings, open_gatekeeper
from gate_core.testing import actor
from tests.adapters.contract import *  # noqa: F403 - every contract scenario runs on Dagster
from tests.adapters.contract import Live, Outcome, StepResult, StepSpec, unique

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "dagster_definitions.py"
RUN_TIMEOUT_S = 180.0


def gate_resource(**overrides: Any) -> ApprovalGateResource:
    """The pipeline's resource as users configure it: URL and token from the environment (the
    ``live`` fixture sets GATEHOUSE_URL and GATEHOUSE_TOKEN to etl-bot's request token)."""
    return ApprovalGateResource(
        url=dg.EnvVar("GATEHOUSE_URL"), token=dg.EnvVar("GATEHOUSE_TOKEN"), poll_seconds=5, **overrides
    )


def test_the_public_api_is_exactly_all() -> None:
    import dagster_resources

    assert set(dagster_resources.__all__) == {
        "ApprovalGateResource",
        "ApprovalDecision",
        "approval_sensor",
        "SensorCursor",
        "table_metadata",
        "GATE_ID_TAG",
        "REQUESTER_TAG",
        "RUN_KEY_TAG",
    }
    public = {name for name in vars(dagster_resources) if not name.startswith("_")}
    assert public - set(dagster_resources.__all__) == {"annotations"}  # the __future__ import


# --------------------------------------------------------------------------- the contract's job


class GatedStepConfig(dg.Config):
    action: str
    target: str
    datasets: list[str]
    environment: str
    reason: str
    parameters: dict[str, str] = {}  # noqa: RUF012 — Dagster config fields are pydantic fields
    retry_once_after_approval: bool = False


@dg.op(retry_policy=dg.RetryPolicy(max_retries=1))
def gated_step(
    context: dg.OpExecutionContext, config: GatedStepConfig, approval_gate: ApprovalGateResource
) -> dict[str, Any]:
    decision = approval_gate.require_approval(
        context,
        action=config.action,
        target=config.target,
        datasets=config.datasets,
        environment=config.environment,
        reason=config.reason,
        parameters=config.parameters,
    )
    if config.retry_once_after_approval and context.retry_number == 0:
        raise dg.RetryRequested(max_retries=1)  # Dagster retries the step inside this run
    return decision.as_dict()


@dg.op
def downstream(context: dg.OpExecutionContext, decision: dict[str, Any]) -> str:
    context.log.info(f"downstream ran after gate {decision['gate_id']}")
    return "ran"


# Bound resources and the in-process executor: execute_job re-executes it from `reconstructable`.
@dg.job(executor_def=dg.in_process_executor, resource_defs={"approval_gate": gate_resource()})
def contract_job() -> None:
    downstream(gated_step())


def run_config(spec: StepSpec, **extra: Any) -> dict[str, Any]:
    config = {
        "action": spec.action,
        "target": spec.target,
        "datasets": list(spec.datasets),
        "environment": spec.environment,
        "reason": spec.reason,
        "parameters": spec.parameter_map,
        **extra,
    }
    return {"ops": {"gated_step": {"config": config}}}


class DagsterRun:
    """One run in a background thread; the outcome is read from the instance's event log."""

    def __init__(self, instance: dg.DagsterInstance, execute: Callable[[], str]) -> None:
        self.instance = instance
        self.run_id: str | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(execute,), daemon=True)
        self._thread.start()

    def _run(self, execute: Callable[[], str]) -> None:
        try:
            self.run_id = execute()
        except BaseException as exc:
            self.error = exc

    def wait(self, timeout: float) -> str:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the Dagster run did not end within {timeout}s"
        if self.error is not None:
            raise self.error
        assert self.run_id is not None
        return self.run_id

    def result(self, timeout: float) -> StepResult:
        run_id = self.wait(timeout)
        return step_result(self.instance, run_id, "gated_step", "downstream")


def events_of(
    instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType, step: str | None = None
) -> list[dg.DagsterEvent]:
    found = []
    for entry in instance.all_logs(run_id, of_type=event_type):
        event = entry.dagster_event
        if event is not None and (step is None or event.step_key == step):
            found.append(event)
    return found


def output_metadata(instance: dg.DagsterInstance, run_id: str, step: str) -> dict[str, Any]:
    outputs = events_of(instance, run_id, dg.DagsterEventType.STEP_OUTPUT, step)
    assert outputs, f"step {step} yielded no output"
    return dict(outputs[-1].step_output_data.metadata)


def run_status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None, f"no run {run_id}"
    return run.status


def step_result(instance: dg.DagsterInstance, run_id: str, gated: str, after: str) -> StepResult:
    failures = events_of(instance, run_id, dg.DagsterEventType.STEP_FAILURE, gated)
    detail = ""
    if failures:
        data = failures[-1].step_failure_data
        user = data.user_failure_data
        if user is not None and user.description:
            detail = user.description
        elif data.error is not None:
            detail = data.error.message
    ran = bool(events_of(instance, run_id, dg.DagsterEventType.STEP_SUCCESS, after))
    decision: dict[str, Any] = {}
    if events_of(instance, run_id, dg.DagsterEventType.STEP_OUTPUT, gated):
        decision = ApprovalDecision.from_metadata(output_metadata(instance, run_id, gated)).as_dict()
    outcome: Outcome = "success" if run_status(instance, run_id) is dg.DagsterRunStatus.SUCCESS else "failed"
    return StepResult(outcome=outcome, detail=detail, downstream_ran=ran, decision=decision)


class DagsterHarness:
    """The contract's ``Harness`` on Dagster. ``attempt`` 1 launches a run tagged with the spec's
    run key (``gatehouse/run_key`` names the logical run in the idempotency key); a later attempt
    re-executes that run as the Dagster UI's "Re-execute all" does."""

    name = "dagster"

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.first_run: dict[str, str] = {}

    def start(self, spec: StepSpec) -> DagsterRun:
        tags = {RUN_KEY_TAG: spec.run_key, "dagster/user": spec.requester}
        if spec.attempt == 1:

            def execute() -> str:
                result = contract_job.execute_in_process(
                    run_config=run_config(spec), instance=self.instance, tags=tags, raise_on_error=False
                )
                self.first_run[spec.run_key] = result.run_id
                return result.run_id

            return DagsterRun(self.instance, execute)
        parent = self.first_run[spec.run_key]

        def reexecute() -> str:
            result = dg.execute_job(
                dg.reconstructable(contract_job),
                instance=self.instance,
                run_config=run_config(spec),
                tags={"dagster/user": spec.requester},
                reexecution_options=dg.ReexecutionOptions(
                    parent_run_id=parent, step_selection=["gated_step", "downstream"]
                ),
            )
            return result.run_id

        return DagsterRun(self.instance, reexecute)


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.DagsterInstance]:
    """A persistent (SQLite) Dagster instance: re-execution and sensors need stored runs."""
    home = str(tmp_path_factory.mktemp("dagster-home"))
    with dg.DagsterInstance.local_temp(home, overrides={"telemetry": {"enabled": False}}) as inst:
        yield inst


@pytest.fixture
def harness(instance: dg.DagsterInstance, live: Live) -> DagsterHarness:
    return DagsterHarness(instance)


# --------------------------------------------------------------------------- Dagster specifics


def test_the_decision_is_step_metadata_visible_in_the_ui(harness: DagsterHarness, live: Live) -> None:
    spec = StepSpec(run_key=unique("metadata"))
    run = harness.start(spec)
    gate = live.gate_for(spec.run_key)
    assert gate["request"]["run"]["pipeline"] == "contract_job"
    assert gate["request"]["run"]["task_id"] == "gated_step"
    assert gate["request"]["idempotency_key"] == f"dagster:contract_job:{spec.run_key}:gated_step"
    live.decide("bob", gate["id"], "approve", "aggregates only")
    run_id = run.wait(RUN_TIMEOUT_S)
    metadata = output_metadata(harness.instance, run_id, "gated_step")
    assert metadata["gatehouse/gate_id"] == dg.MetadataValue.text(gate["id"])
    assert metadata["gatehouse/approvers"] == dg.MetadataValue.json(["bob"])
    assert metadata["gatehouse/rule"] == dg.MetadataValue.text("pii-export")
    assert metadata["gatehouse/comments"] == dg.MetadataValue.json(["bob: aggregates only"])
    assert metadata["gatehouse/gate"] == dg.MetadataValue.url(f"{live.base_url}/console/gates/{gate['id']}")
    assert isinstance(metadata["gatehouse/decided_at"], dg.TimestampMetadataValue)
    with live.client("bot") as bot:
        stored = bot.get(f"/v1/gates/{gate['id']}").json()
    assert stored["status"] == "CONSUMED"
    assert stored["request"]["run"]["run_id"] == run_id


def test_a_rejection_fails_the_step_with_the_gate_as_failure_metadata(
    harness: DagsterHarness, live: Live
) -> None:
    spec = StepSpec(run_key=unique("reject-metadata"))
    run = harness.start(spec)
    gate = live.gate_for(spec.run_key)
    live.decide("carol", gate["id"], "reject", "contains raw e-mails")
    run_id = run.wait(RUN_TIMEOUT_S)
    failures = events_of(harness.instance, run_id, dg.DagsterEventType.STEP_FAILURE, "gated_step")
    assert len(failures) == 1  # a decision is final: the RetryPolicy does not retry it
    user = failures[0].step_failure_data.user_failure_data
    assert user is not None
    assert user.description == f"gate {gate['id']} was rejected by carol: contains raw e-mails"
    assert user.metadata["gatehouse/status"] == dg.MetadataValue.text("REJECTED")
    assert user.metadata["gatehouse/decided_by"] == dg.MetadataValue.json(["carol"])
    assert user.metadata["gatehouse/rule"] == dg.MetadataValue.text("pii-export")
    assert user.metadata["gatehouse/gate"] == dg.MetadataValue.url(
        f"{live.base_url}/console/gates/{gate['id']}"
    )


def test_a_step_retry_in_the_same_run_reuses_its_approval(harness: DagsterHarness, live: Live) -> None:
    spec = StepSpec(run_key=unique("step-retry"))
    instance = harness.instance

    def execute() -> str:
        return contract_job.execute_in_process(
            run_config=run_config(spec, retry_once_after_approval=True),
            instance=instance,
            tags={RUN_KEY_TAG: spec.run_key, "dagster/user": "alice"},
            raise_on_error=False,
        ).run_id

    run = DagsterRun(instance, execute)
    gate = live.gate_for(spec.run_key)
    live.decide("bob", gate["id"], "approve")
    result = run.result(RUN_TIMEOUT_S)
    assert result.outcome == "success", result.detail
    assert run.run_id is not None
    restarts = events_of(instance, run.run_id, dg.DagsterEventType.STEP_RESTARTED, "gated_step")
    assert len(restarts) == 1  # the first attempt asked for a retry after its approval
    with live.client("admin") as admin:
        audit = admin.get("/v1/audit/export", params={"format": "jsonl"}).text
        gates = [
            g
            for g in admin.get("/v1/gates", params={"limit": 1000}).json()
            if spec.run_key in (g["request"].get("idempotency_key") or "")
        ]
    assert [g["id"] for g in gates] == [gate["id"]]
    consumed = [line for line in audit.splitlines() if gate["id"] in line and "consumed" in line]
    assert len(consumed) == 2  # try 1 and try 2, both recorded under the one approval


# --------------------------------------------------------------------------- the example Definitions


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory, live: Live) -> Any:
    """examples/dagster_definitions.py, exporting into a temporary directory."""
    import importlib

    patch = pytest.MonkeyPatch()
    patch.setenv("GATEHOUSE_EXAMPLE_EXPORT_DIR", str(tmp_path_factory.mktemp("exports")))
    try:
        sys.modules.pop("examples.dagster_definitions", None)
        yield importlib.import_module("examples.dagster_definitions")
    finally:
        sys.modules.pop("examples.dagster_definitions", None)
        patch.undo()


def test_the_example_definitions_validate_in_dagster(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-f", str(EXAMPLE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All code locations passed validation" in proc.stdout + proc.stderr


def materialization_metadata(instance: dg.DagsterInstance, run_id: str, asset: str) -> dict[str, Any]:
    for event in events_of(instance, run_id, dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key == dg.AssetKey(asset):
            return dict(materialization.metadata)
    raise AssertionError(f"{asset} was not materialized in run {run_id}")


def test_the_example_gated_asset_waits_for_approval(
    example: Any, instance: dg.DagsterInstance, live: Live
) -> None:
    run_key = unique("example-asset")
    job: dg.JobDefinition = example.defs.resolve_job_def("export_customers")

    def execute() -> str:
        tags = {RUN_KEY_TAG: run_key, "dagster/user": "alice"}
        return job.execute_in_process(instance=instance, tags=tags, raise_on_error=False).run_id

    run = DagsterRun(instance, execute)
    gate = live.gate_for(run_key)
    assert gate["request"]["run"]["task_id"] == "customers_export"
    assert gate["rule"] == "pii-export"
    time.sleep(1.0)
    assert run.run_id is None  # still inside the asset, waiting for a person
    live.decide("bob", gate["id"], "approve", "aggregates only")
    run_id = run.wait(RUN_TIMEOUT_S)
    assert run_status(instance, run_id) is dg.DagsterRunStatus.SUCCESS

    exported = materialization_metadata(instance, run_id, "customers_export")
    assert ApprovalDecision.from_metadata(exported).approvers == ("bob",)
    assert exported["dagster/row_count"] == dg.MetadataValue.int(4)
    schema = exported["dagster/column_schema"].schema
    assert [c.name for c in schema.columns] == ["customer_id", "country", "churn_score"]

    table = materialization_metadata(instance, run_id, "customers")
    columns = {c.name: c for c in table["dagster/column_schema"].schema.columns}
    assert {"pii", "email"} <= set(columns["email"].tags)  # classification tags, shown per column
    assert columns["churn_score"].type == "float64"
    assert table["dagster/row_count"] == dg.MetadataValue.int(4)

    with live.client("admin") as admin:
        rows = admin.get(f"/v1/lineage/runs/{run_id}").json()["rows"]
    accesses = {(r["dataset"], r["operation"], r["actor"], r["gate_id"]) for r in rows}
    assert ("warehouse/customers", "read", "alice", None) in accesses
    assert ("warehouse/customers", "export", "alice", gate["id"]) in accesses  # the gated dataset
    assert (example.EXPORT_TARGET, "export", "alice", gate["id"]) in accesses  # the file it wrote
    assert all(r["orchestrator"] == "dagster" and r["pipeline"] == "export_customers" for r in rows)


# --------------------------------------------------------------------------- the long-wait sensor


class OpenGatesConfig(dg.Config):
    asset_key: str
    count: int = 1
    action: str = "export"
    target: str = "s3://exports/customers.csv"
    datasets: list[str] = ["warehouse/customers#pii"]  # noqa: RUF012 - pydantic copies defaults


@dg.op
def open_gates(
    context: dg.OpExecutionContext, config: OpenGatesConfig, approval_gate: ApprovalGateResource
) -> list[str]:
    """Open ``count`` gates (told apart by ``key``) and end at once: the long-wait pattern."""
    return [
        approval_gate.open_gate(
            context,
            action=config.action,
            target=config.target,
            datasets=config.datasets,
            key=f"g{i}" if config.count > 1 else None,
            asset_key=config.asset_key,
        ).id
        for i in range(config.count)
    ]


@dg.job(executor_def=dg.in_process_executor)
def open_gates_job() -> None:
    open_gates()


REQUESTS: list[httpx.Request] = []


class CountingGateResource(ApprovalGateResource):
    """The real resource, with every HTTP request its clients send appended to ``REQUESTS``."""

    def get_client(self) -> Any:
        client = super().get_client()
        client.http.event_hooks["request"].append(REQUESTS.append)
        return client


def open_requests(instance: dg.DagsterInstance, asset_key: str, **config: Any) -> list[str]:
    result = open_gates_job.execute_in_process(
        run_config={"ops": {"open_gates": {"config": {"asset_key": asset_key, **config}}}},
        resources={"approval_gate": gate_resource()},
        instance=instance,
        tags={"dagster/user": "alice"},
    )
    return list(result.output_for_node("open_gates"))


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None) -> Any:
    """One sensor evaluation, as the daemon runs it: resources set up, then torn down."""
    gates = CountingGateResource(url=dg.EnvVar("GATEHOUSE_URL"), token=dg.EnvVar("GATEHOUSE_TOKEN"))
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, sensor_name=sensor.name, resources={"approval_gate": gates}
    ) as context:
        return sensor.evaluate_tick(context)


def test_the_sensor_launches_exactly_one_run_per_approved_gate(
    example: Any, instance: dg.DagsterInstance, live: Live
) -> None:
    sensor = example.customers_export_on_approval
    opened = [
        example.defs.resolve_job_def("request_customers_export")
        .execute_in_process(instance=instance, tags={"dagster/user": "alice"})
        .output_for_node("request_export_approval")
        for _ in range(2)
    ]
    approved, rejected = opened
    first = tick(sensor, instance, None)
    assert first.run_requests == []
    assert "2 gate(s) awaiting a decision" in (first.skip_message or "")

    live.decide("bob", approved, "approve", "ok for Q3")
    live.decide("carol", rejected, "reject", "not this quarter")
    second = tick(sensor, instance, first.cursor)
    assert [r.run_key for r in second.run_requests] == [approved]
    request = second.run_requests[0]
    assert request.tags[GATE_ID_TAG] == approved
    assert request.tags["gatehouse/approvers"] == "bob"
    assert request.tags["gatehouse/requester"] == "alice"
    [report] = second.asset_events
    assert report.asset_key == dg.AssetKey("customers_export")
    assert report.metadata["gatehouse/event"] == dg.MetadataValue.text("rejected")
    assert report.description == f"gate {rejected} was rejected by carol: not this quarter"

    cursor = second.cursor
    for _ in range(3):  # later ticks launch nothing more: one run per approved gate
        later = tick(sensor, instance, cursor)
        assert later.run_requests == []
        assert later.asset_events == []
        cursor = later.cursor

    # The launched run (tagged as the sensor daemon tags it) consumes its gate at once: no wait.
    job = example.defs.resolve_job_def("export_customers")
    launched = {**request.tags, "dagster/run_key": request.run_key}
    run = DagsterRun(
        instance,
        lambda: job.execute_in_process(instance=instance, tags=launched, raise_on_error=False).run_id,
    )
    run_id = run.wait(60)  # a run that opened a gate of its own would still be waiting
    assert run_status(instance, run_id) is dg.DagsterRunStatus.SUCCESS
    with live.client("bot") as bot:
        assert bot.get(f"/v1/gates/{approved}").json()["status"] == "CONSUMED"
    exported = materialization_metadata(instance, run_id, "customers_export")
    assert ApprovalDecision.from_metadata(exported).gate_id == approved

    # The tag copied onto another run does not carry the approval over: that run asks anew.
    copied = unique("copied-tag")
    spec = StepSpec(run_key=copied, target=example.EXPORT_TARGET, datasets=example.EXPORT_DATASETS)
    run = DagsterRun(
        instance,
        lambda: (
            contract_job.execute_in_process(
                run_config=run_config(spec),
                instance=instance,
                tags={GATE_ID_TAG: approved, RUN_KEY_TAG: copied, "dagster/user": "alice"},
                raise_on_error=False,
            ).run_id
        ),
    )
    own = live.gate_for(copied)
    assert own["id"] != approved
    assert own["status"] == "PENDING"
    live.decide("carol", own["id"], "reject", "ask through the sensor")
    assert run.result(RUN_TIMEOUT_S).outcome == "failed"


def test_the_sensor_reports_an_expired_gate(instance: dg.DagsterInstance, live: Live) -> None:
    watched = unique("expiring")
    sensor = approval_sensor(job=contract_job, asset_key=watched, name="expiring_sensor")
    [gate_id] = open_requests(instance, watched, action="infra_change", target="expire-fast", datasets=[])
    first = tick(sensor, instance, None)
    assert first.run_requests == []
    time.sleep(3.5)  # the live policy's expire-fast rule: 3 s
    second = tick(sensor, instance, first.cursor)
    assert second.run_requests == []
    [report] = second.asset_events
    assert report.metadata["gatehouse/event"] == dg.MetadataValue.text("expired")
    assert report.metadata["gatehouse/gate_id"] == dg.MetadataValue.text(gate_id)
    assert f"{gate_id} EXPIRED" in (second.skip_message or "")
    assert tick(sensor, instance, second.cursor).asset_events == []


def seed_pending_gates(settings: Settings, count: int) -> list[str]:
    """``count`` pending pii-export gates opened by etl-bot for alice, straight in the store the
    live server uses (as fast as setup gets; the HTTP path is what the other tests exercise)."""
    gatekeeper = open_gatekeeper(settings)
    try:
        request = GateRequest(
            action="export",
            target="s3://exports/customers.csv",
            datasets=(DatasetRef.parse("warehouse/customers#pii"),),
            requester="alice",
            run=RunContext(orchestrator="dagster", pipeline="many", run_id=unique("many")),
        )
        bot = actor("etl-bot", AuthMethod.API_TOKEN)
        return [gatekeeper.open(request, submitted_by=bot).id for _ in range(count)]
    finally:
        gatekeeper.store.close()


def test_a_sensor_tick_with_1000_pending_gates_makes_one_batched_call(
    instance: dg.DagsterInstance, live: Live, live_settings: Settings
) -> None:
    sensor = approval_sensor(job=contract_job, asset_key=unique("many"), name="many_sensor")
    gate_ids = seed_pending_gates(live_settings, 1000)
    cursor = SensorCursor(pending=dict.fromkeys(gate_ids, "")).dump()
    REQUESTS.clear()
    first = tick(sensor, instance, cursor)
    assert [(r.method, r.url.path) for r in REQUESTS] == [("POST", "/v1/gates/wait")]
    assert first.skip_message == "1000 gate(s) awaiting a decision"
    live.decide("bob", gate_ids[500], "approve")
    REQUESTS.clear()
    started = time.perf_counter()
    second = tick(sensor, instance, first.cursor)
    elapsed = time.perf_counter() - started
    assert len(REQUESTS) == 1
    assert [r.run_key for r in second.run_requests] == [gate_ids[500]]
    assert len(SensorCursor.parse(second.cursor).pending) == 999
    assert elapsed < 30, f"a tick over 1,000 pending gates took {elapsed:.1f}s"
