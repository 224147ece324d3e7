"""The Airflow provider on real Airflow 3 against a real `gatehouse serve`.

Airflow gets its own AIRFLOW_HOME (SQLite, migrated once for the module) and a dags folder
holding tests/adapters/airflow_dags/gatehouse_test_dags.py and the example DAG. DAG runs are
``dag.test()`` — deferral and triggers run in-process — inside one long-lived runner process
(tests/adapters/airflow_dags/_run.py), so Airflow's start-up is paid once. Every adapter contract
scenario runs here (the star import below), in both of GateOperator's wait modes (deferred to the
trigger, and ``deferrable=False`` in the worker), plus what is specific to Airflow: provider
metadata, the trigger's serialisation and shared waiter, the sensor, ``@gated`` with a real retry,
``on_reject="skip"``, ``timeout``, the connection type, lineage and OpenLineage.

Airflow is imported only inside tests, after the ``airflow_home`` fixture pointed AIRFLOW_HOME
at the temporary home (importing Airflow writes its config there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gate_core._distribution import distribution_name
from tests.adapters.contract import *  # noqa: F403
from tests.adapters.contract import Live, StepResult, StepSpec, unique

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TEST_DAGS = Path(__file__).parent / "airflow_dags" / "gatehouse_test_dags.py"
EXAMPLE = ROOT / "examples" / "airflow_pii_export.py"
AIRFLOW = str(Path(sys.executable).parent / "airflow")
RUN_TIMEOUT = 240.0  # one DAG run, on a shared 2-core machine


# --------------------------------------------------------------------------- Airflow and a runner


@dataclass
class AirflowHome:
    path: Path
    dags: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def airflow_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch
) -> AirflowHome:
    path = tmp_path_factory.mktemp("airflow-home")
    dags = path / "dags"
    dags.mkdir()
    shutil.copy(TEST_DAGS, dags)
    shutil.copy(EXAMPLE, dags)
    settings = {
        "AIRFLOW_HOME": str(path),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__OPENLINEAGE__DISABLED": "True",  # on only where a test configures a transport
    }
    for name, value in settings.items():
        monkeypatch_module.setenv(name, value)  # before anything here imports Airflow
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")} | settings
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=600)
    return AirflowHome(path, dags, env)


def dag_id_for(run_key: str) -> str:
    return "gh_" + "".join(c if c.isalnum() or c in "_.-" else "_" for c in run_key)


@dataclass
class RunReport:
    states: dict[str, str]
    records: list[dict[str, Any]]
    error: str = ""

    def state(self, task_id: str) -> str:
        return self.states.get(task_id, "none")

    def detail(self, task_id: str) -> str:
        found = [r["detail"] for r in self.records if r.get("task") == task_id and "detail" in r]
        return found[-1] if found else self.error

    def of(self, task_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("task") == task_id]


@dataclass
class AirflowRun:
    """One submitted DAG run (a RunHandle for the contract)."""

    runner: AirflowRunner
    result_path: Path
    run_key: str
    _report: RunReport | None = None

    def report(self, timeout: float = RUN_TIMEOUT) -> RunReport:
        deadline = time.monotonic() + timeout
        while self._report is None:
            if self.result_path.exists():
                data = json.loads(self.result_path.read_text())
                self._report = RunReport(
                    data.get("states", {}), data.get("records", []), data.get("error", "")
                )
            elif self.runner.process.poll() is not None:
                raise AssertionError(f"the Airflow runner died:\n{self.runner.log_tail()}")
            elif time.monotonic() > deadline:
                raise AssertionError(
                    f"DAG run {self.run_key} did not end in {timeout}s:\n{self.runner.log_tail()}"
                )
            else:
                time.sleep(0.1)
        return self._report

    def result(self, timeout: float) -> StepResult:
        report = self.report(timeout)
        state = report.state("gate")
        outcome = {"success": "success", "skipped": "skipped"}.get(state, "failed")
        downstream = report.of("downstream")
        return StepResult(
            outcome=outcome,  # type: ignore[arg-type]
            detail=report.detail("gate"),
            downstream_ran=bool(downstream) and report.state("downstream") == "success",
            decision=(downstream[-1].get("decision") or {}) if downstream else {},
        )


class AirflowRunner:
    """A long-lived ``_run --serve`` process; DAG runs execute one after another, in order."""

    def __init__(self, home: AirflowHome, env: dict[str, str], workdir: Path, name: str = "runner") -> None:
        self.workdir = workdir
        self.log = workdir / f"{name}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.adapters.airflow_dags._run", "--serve"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
                start_new_session=True,  # its own process group: close() also ends what it forked
            )
        self.home = home

    def submit(
        self,
        spec: dict[str, Any],
        *,
        dag_file: str = TEST_DAGS.name,
        dag_id: str | None = None,
        conf: dict[str, Any] | None = None,
        triggering_user: str | None = None,
        **env: str | None,
    ) -> AirflowRun:
        job_id = uuid.uuid4().hex[:8]
        result = self.workdir / f"{job_id}.json"
        job = {
            "dag_file": str(self.home.dags / dag_file),
            "dag_id": dag_id or dag_id_for(spec["run_key"]),
            "result": str(result),
            "env": {
                "GATEHOUSE_TEST_SPEC": json.dumps(spec),
                "GATEHOUSE_TEST_OUT": str(self.workdir / f"{job_id}.jsonl"),
                **env,
            },
            "conf": conf,
            "triggering_user": triggering_user,
        }
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(job) + "\n").encode())
        self.process.stdin.flush()
        return AirflowRun(self, result, spec.get("run_key", dag_id or ""))

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        """End the runner and everything it forked (OpenLineage's process pool, for one)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # Airflow ignores SIGTERM
            self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # forked children outlive a finished runner


def start_runner(home: AirflowHome, live: Live, workdir: Path, name: str, **extra: str) -> AirflowRunner:
    env = home.env | {"GATEHOUSE_URL": live.base_url, "GATEHOUSE_TOKEN": live.gate_requester_token} | extra
    runner = AirflowRunner(home, env, workdir, name)
    warm = runner.submit({"run_key": f"warmup-{name}", "kind": "warmup"})
    assert warm.report(timeout=600).state("downstream") == "success", runner.log_tail()
    return runner


@pytest.fixture(scope="module")
def runner(
    airflow_home: AirflowHome, live: Live, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowRunner]:
    started = start_runner(airflow_home, live, tmp_path_factory.mktemp("runs"), "runner")
    yield started
    started.close()


WAIT_MODES = {"deferred": True, "in_worker": False}  # GateOperator(deferrable=...)


@dataclass
class AirflowHarness:
    """The contract's Harness: GateOperator → downstream, one DAG per run key (the dag id holds it,
    so the gate's idempotency key does too). The DAG owner is the requester (dag.test() names no
    person as the run's trigger); ``attempt`` > 1 re-runs the same run id. ``deferrable`` is the
    operator's: every scenario runs deferred to the trigger and waiting in the worker."""

    runner: AirflowRunner
    live: Live
    deferrable: bool = True
    name: str = "airflow"
    started: list[str] = field(default_factory=list)
    runs: list[AirflowRun] = field(default_factory=list)

    def start(self, spec: StepSpec, **extra: Any) -> AirflowRun:
        job = {
            "kind": "operator",
            "run_key": spec.run_key,
            "action": spec.action,
            "target": spec.target,
            "datasets": list(spec.datasets),
            "environment": spec.environment,
            "requester": spec.requester,
            "reason": spec.reason,
            "parameters": spec.parameter_map,
            "deferrable": self.deferrable,
        } | extra
        self.started.append(spec.run_key)
        run = self.runner.submit(job)
        self.runs.append(run)
        return run

    def withdraw_leftovers(self) -> None:
        """A failed test may leave a run waiting at its gate: cancel it so the runner moves on."""
        with self.live.client("bot") as bot:
            for gate in bot.get("/v1/gates", params={"status": "PENDING", "limit": 1000}).json():
                key = gate["request"].get("idempotency_key") or ""
                if any(run_key in key for run_key in self.started):
                    bot.post(f"/v1/gates/{gate['id']}/cancel", json={"reason": "test cleanup"})
        for run in self.runs:
            run.report(timeout=RUN_TIMEOUT)


@pytest.fixture(params=list(WAIT_MODES))
def harness(runner: AirflowRunner, live: Live, request: pytest.FixtureRequest) -> Iterator[AirflowHarness]:
    made = AirflowHarness(runner, live, deferrable=WAIT_MODES[request.param])
    yield made
    made.withdraw_leftovers()


def gates_with_key(live: Live, run_key: str) -> list[dict[str, Any]]:
    with live.client("admin") as admin:
        gates = admin.get("/v1/gates", params={"limit": 1000}).json()
    return [g for g in gates if run_key in (g["request"].get("idempotency_key") or "")]


# --------------------------------------------------------------------------- provider metadata


def test_provider_info_validates_against_airflows_own_schema(airflow_home: AirflowHome) -> None:
    import airflow
    import jsonschema

    from airflow_provider.get_provider_info import get_provider_info

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == distribution_name()  # Airflow requires the distribution's own name
    assert info["connection-types"] == [
        {
            "connection-type": "gatehouse",
            "hook-class-name": "airflow_provider.hooks.gatehouse.GatehouseHook",
            "hook-name": "Gatehouse",
        }
    ]
    import importlib

    for role in ("operators", "sensors", "hooks", "triggers"):
        for module in info[role][0]["python-modules"]:
            importlib.import_module(module)
    module, _, name = info["task-decorators"][0]["class-name"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


def test_airflow_lists_the_provider_its_connection_type_and_task_decorator(airflow_home: AirflowHome) -> None:
    def cli(*args: str) -> Any:
        done = subprocess.run(
            [AIRFLOW, "providers", *args, "-o", "json"],
            env=airflow_home.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return json.loads(done.stdout[done.stdout.index("[") :])

    providers = {p["package_name"]: p for p in cli("list")}
    assert distribution_name() in providers, sorted(providers)
    assert "approval" in providers[distribution_name()]["description"]
    hooks = [h for h in cli("hooks") if h["connection_type"] == "gatehouse"]
    assert hooks and hooks[0]["class"] == "airflow_provider.hooks.gatehouse.GatehouseHook"
    triggers = [t["class"] for t in cli("triggers") if t["package_name"] == distribution_name()]
    assert triggers == ["airflow_provider.triggers.gate"]


# --------------------------------------------------------------------------- trigger and payloads


def test_trigger_serialize_round_trips(airflow_home: AirflowHome) -> None:
    from airflow.sdk._shared.module_loading import import_string

    from airflow_provider.triggers.gate import GateTrigger

    trigger = GateTrigger(gate_id="g01ABC", gatehouse_conn_id="gh_prod", poll_timeout=12.5, deadline=None)
    classpath, kwargs = trigger.serialize()
    again = import_string(classpath)(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (classpath, kwargs)
    assert kwargs == {
        "gate_id": "g01ABC",
        "gatehouse_conn_id": "gh_prod",
        "poll_timeout": 12.5,
        "deadline": None,
    }
    assert "token" not in json.dumps(kwargs).lower()  # credentials are resolved in the triggerer


def test_gate_event_is_typed_on_both_ends(airflow_home: AirflowHome) -> None:
    from airflow_provider.triggers.events import GateEvent, GateOutcome, MalformedEvent

    event = GateEvent("g01X", GateOutcome.REJECTED, ("carol",), "2026-11-21T14:00:00+00:00", "raw e-mails")
    assert GateEvent.from_payload(json.loads(json.dumps(event.to_payload()))) == event
    assert event.describe() == "gate g01X rejected by carol at 2026-11-21T14:00:00+00:00: raw e-mails"
    for bad in ({"gate_id": "g01X", "outcome": "timeout"}, {"outcome": "approved"}, ["approved"], None):
        with pytest.raises(MalformedEvent):
            GateEvent.from_payload(bad)


def test_requester_is_the_triggering_user_airflow_recorded_then_the_explicit_one_then_the_owner(
    airflow_home: AirflowHome,
) -> None:
    """A templated ``requester=`` is the pipeline's word: it never replaces the user Airflow recorded
    as triggering the run (who could otherwise name a colleague and approve the gate themselves)."""
    from types import SimpleNamespace

    from airflow_provider._context import requester_claims
    from gate_core.session import resolve_requester

    def requester(explicit: str | None, context: dict[str, object], owner: str) -> str:
        return resolve_requester(requester_claims(explicit, context, owner)).principal

    by = SimpleNamespace
    assert requester("dave", {"dag_run": by(triggering_user_name="alice")}, "bob") == "alice"
    assert requester(None, {"dag_run": by(triggering_user_name="alice")}, "bob") == "alice"
    assert requester("dave", {"dag_run": by(triggering_user_name=None)}, "bob") == "dave"
    assert requester(None, {"dag_run": by(triggering_user_name=None)}, "bob,carol") == "bob"
    assert requester("", {"dag_run": by(triggering_user_name="dag_test")}, "bob") == "bob"


def test_datasets_come_from_assets_strings_and_the_catalog(airflow_home: AirflowHome) -> None:
    from airflow.sdk import Asset

    from airflow_provider._context import task_datasets

    found = task_datasets(
        ["warehouse/customers#pii"],
        [Asset(name="orders", uri="postgres://db:5432/warehouse/public/orders", extra={"tags": ["finance"]})],
        [Asset(uri="s3://exports/customers.csv")],
    )
    assert [str(d) for d in found.declared] == ["warehouse/customers#pii"]
    assert [str(d) for d in found.inputs] == ["postgres://db:5432/warehouse/public/orders#finance"]
    assert [str(d) for d in found.outputs] == ["s3://exports/customers.csv"]
    assert [d.qualified_name for d in found.all] == [
        "warehouse/customers",
        "postgres://db:5432/warehouse/public/orders",
        "s3://exports/customers.csv",
    ]


# --------------------------------------------------------------------------- the shared waiter


def open_gates(live: Live, count: int, prefix: str) -> list[str]:
    with live.client("bot") as bot:
        return [
            bot.post(
                "/v1/gates",
                json={
                    "action": "export",
                    "target": f"s3://exports/{prefix}-{i}.csv",
                    "datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["pii"]}],
                    "requester": "alice",
                    "idempotency_key": f"{prefix}-{i}",
                },
            ).json()["id"]
            for i in range(count)
        ]


def test_all_triggers_in_a_loop_share_one_long_poll_per_cycle(airflow_home: AirflowHome, live: Live) -> None:
    from airflow_provider.triggers._waiter import SharedGateWaiter
    from airflow_provider.triggers.events import GateEvent, GateOutcome
    from airflow_provider.triggers.gate import GateTrigger

    gate_ids = open_gates(live, 40, unique("waiter"))
    approve, reject = gate_ids[:3], gate_ids[3]

    async def scenario() -> None:
        triggers = [GateTrigger(gate_id=g, gatehouse_conn_id=None, poll_timeout=1.5) for g in gate_ids]
        tasks = {g: asyncio.ensure_future(anext(t.run())) for g, t in zip(gate_ids, triggers, strict=True)}
        await asyncio.sleep(0.5)
        waiter = SharedGateWaiter.existing("")
        assert waiter is not None and waiter.waiting == 40
        await asyncio.sleep(4.0)  # ~3 cycles of 1.5 s with nothing decided
        assert waiter.stats.cycles >= 2
        assert waiter.stats.polls == waiter.stats.cycles  # one request per cycle, for all 40 gates
        assert set(waiter.stats.ids_polled) == {40}
        for gate_id in approve:
            assert live.decide("bob", gate_id, "approve").status_code == 200
        assert live.decide("carol", reject, "reject", "not this quarter").status_code == 200
        decided = await asyncio.wait_for(asyncio.gather(*(tasks[g] for g in (*approve, reject))), timeout=10)
        events = [GateEvent.from_payload(e.payload) for e in decided]
        assert [e.outcome for e in events] == [GateOutcome.APPROVED] * 3 + [GateOutcome.REJECTED]
        assert events[3].message == "not this quarter"
        assert not any(tasks[g].done() for g in gate_ids[4:])  # the others keep waiting
        polls_before = waiter.stats.polls
        await asyncio.sleep(2.0)
        assert waiter.stats.polls - polls_before <= 3
        assert waiter.stats.ids_polled[-1] == 36
        for task in tasks.values():
            task.cancel()  # triggers removed: they deregister and the waiter stops
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await asyncio.sleep(0.1)
        assert waiter.waiting == 0 and waiter._pump is None

    asyncio.run(scenario())


def test_the_waiter_fails_closed(
    airflow_home: AirflowHome, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unreachable service: keep waiting, never pass. Bad token or unknown gate: an ERROR event."""
    from airflow_provider.triggers._waiter import SharedGateWaiter
    from airflow_provider.triggers.events import GateEvent, GateOutcome
    from airflow_provider.triggers.gate import GateTrigger
    from gate_core import HttpGateClient
    from tests.service.conftest import free_port

    [gate_id] = open_gates(live, 1, unique("closed"))

    async def unreachable() -> None:
        async def connect() -> HttpGateClient:
            return HttpGateClient(f"http://127.0.0.1:{free_port()}", "gh_x_y", retries=0)

        waiter = SharedGateWaiter(connect, poll_timeout=1.0, max_backoff=0.5)
        waiting = asyncio.ensure_future(waiter.wait(gate_id))
        await asyncio.sleep(3.0)
        assert not waiting.done() and waiter.stats.errors >= 2
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)

    asyncio.run(unreachable())

    monkeypatch.setenv(
        "AIRFLOW_CONN_GH_BAD_TOKEN",
        json.dumps({"conn_type": "gatehouse", "host": live.base_url, "password": "gh_nosuch_token"}),
    )

    async def refused() -> list[GateEvent]:
        bad = GateTrigger(gate_id=gate_id, gatehouse_conn_id="gh_bad_token")
        unknown = GateTrigger(gate_id="g01NOSUCHGATE0000000000000", gatehouse_conn_id=None)
        events = await asyncio.wait_for(asyncio.gather(anext(bad.run()), anext(unknown.run())), timeout=30)
        return [GateEvent.from_payload(e.payload) for e in events]

    bad_token, unknown_gate = asyncio.run(refused())
    assert bad_token.outcome is GateOutcome.ERROR and "AuthenticationFailed" in bad_token.message
    assert unknown_gate.outcome is GateOutcome.ERROR and "no gate" in unknown_gate.message
    with live.client("bot") as bot:
        assert bot.get(f"/v1/gates/{gate_id}").json()["status"] == "PENDING"


# --------------------------------------------------------------------------- end to end, Airflow-specific


def test_on_reject_skip_skips_the_task_and_what_depends_on_it(harness: AirflowHarness, live: Live) -> None:
    spec = StepSpec(run_key=unique("skip"))
    run = harness.start(spec, on_reject="skip")
    gate = live.gate_for(spec.run_key)
    live.decide("carol", gate["id"], "reject", "wrong quarter")
    report = run.report()
    assert report.state("gate") == "skipped" and report.state("downstream") == "skipped"
    assert "wrong quarter" in report.detail("gate")  # from the gatehouse_outcome XCom
    [skipped] = report.of("gate")
    assert skipped["outcome"]["outcome"] == "rejected" and skipped["outcome"]["decided_by"] == ["carol"]


def test_timeout_withdraws_the_gate_and_fails_the_task(harness: AirflowHarness, live: Live) -> None:
    spec = StepSpec(run_key=unique("timeout"))
    run = harness.start(spec, timeout_s=3, poll_timeout=1.0)
    report = run.report()
    assert report.state("gate") == "failed" and report.state("downstream") != "success"
    assert "timeout" in report.detail("gate")
    [gate] = gates_with_key(live, spec.run_key)
    assert gate["status"] == "CANCELLED"


def test_the_gate_waits_where_deferrable_says(harness: AirflowHarness, live: Live) -> None:
    """Deferred: the trigger waits and the task resumes from its event. ``deferrable=False``: the
    task itself waits and concludes — no trigger ever runs for its gate."""
    spec = StepSpec(run_key=unique("where"))
    run = harness.start(spec)
    gate = live.gate_for(spec.run_key)
    live.decide("bob", gate["id"], "approve")
    assert run.report().state("downstream") == "success", harness.runner.log_tail()
    lines = [
        line for line in harness.runner.log.read_text(errors="replace").splitlines() if gate["id"] in line
    ]
    waited_in = "the triggerer" if harness.deferrable else "this worker"
    assert any(f"waiting in {waited_in} for gate {gate['id']}" in line for line in lines), lines
    assert any("triggers.gate.GateTrigger" in line for line in lines) == harness.deferrable, lines


def test_the_in_worker_wait_fails_closed(airflow_home: AirflowHome, live: Live) -> None:
    """The in-worker wait is the trigger's: an unreachable service is retried until the backstop,
    then fails (ERROR); a refused token fails at once; the task's deadline ends it TIMED_OUT.
    Nothing but the service's APPROVED passes, and the gate stays PENDING."""
    from datetime import UTC, datetime, timedelta

    from airflow_provider.hooks.gatehouse import Credentials
    from airflow_provider.triggers.events import GateOutcome
    from airflow_provider.triggers.gate import wait_in_worker
    from tests.service.conftest import free_port

    [gate_id] = open_gates(live, 1, unique("worker-closed"))
    started = time.monotonic()
    unreachable = wait_in_worker(
        Credentials(f"http://127.0.0.1:{free_port()}", "gh_x_y"), gate_id, deadline=None, give_up_after=3.0
    )
    assert unreachable.outcome is GateOutcome.ERROR and "no decision or expiry" in unreachable.message
    assert 3.0 <= time.monotonic() - started < 15.0
    refused = wait_in_worker(
        Credentials(live.base_url, "gh_nosuch_token"), gate_id, deadline=None, give_up_after=30
    )
    assert refused.outcome is GateOutcome.ERROR and "AuthenticationFailed" in refused.message
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    bot = Credentials(live.base_url, live.gate_requester_token)
    timed_out = wait_in_worker(bot, gate_id, deadline=soon, give_up_after=30, poll_timeout=5.0)
    assert timed_out.outcome is GateOutcome.TIMED_OUT
    with live.client("bot") as client:
        assert client.get(f"/v1/gates/{gate_id}").json()["status"] == "PENDING"


@pytest.mark.parametrize("mode", list(WAIT_MODES))
def test_gated_task_runs_after_approval_and_its_retry_reuses_the_gate(
    runner: AirflowRunner, live: Live, mode: str
) -> None:
    run_key = unique(f"gated-{mode}")
    spec = {
        "kind": "gated",
        "run_key": run_key,
        "action": "export",
        "target": "s3://exports/customers.csv",
        "datasets": ["warehouse/customers#pii"],
        "requester": "alice",
        "fail_first_try": True,
        "deferrable": WAIT_MODES[mode],
    }
    run = runner.submit(spec)
    gate = live.gate_for(run_key)
    assert gate["request"]["run"]["task_id"] == "export_customers"
    live.decide("bob", gate["id"], "approve", "ok")
    report = run.report()
    assert report.state("export_customers") == "success", report.error or report.records
    tries = report.of("export_customers")
    assert [t["try_number"] for t in tries if "try_number" in t] == [1, 2]  # a real Airflow retry
    assert {t["lineage_gate"] for t in tries if "lineage_gate" in t} == {gate["id"]}
    assert {t["actor"] for t in tries if "actor" in t} == {"alice"}
    assert report.of("downstream")[-1]["decision"] == "exported"
    assert [g["id"] for g in gates_with_key(live, run_key)] == [gate["id"]]  # one gate for both tries


@pytest.mark.parametrize("mode", ["deferrable", "reschedule"])
def test_sensor_waits_for_a_gate_opened_elsewhere(runner: AirflowRunner, live: Live, mode: str) -> None:
    run_key = unique(f"sensor-{mode}")
    spec = {
        "kind": "sensor",
        "run_key": run_key,
        "action": "export",
        "datasets": ["warehouse/customers#pii"],
        "requester": "alice",
        "deferrable": mode == "deferrable",
        "mode": "reschedule" if mode == "reschedule" else "poke",
    }
    run = runner.submit(spec)
    gate = live.gate_for(run_key)
    live.decide("bob", gate["id"], "approve", "fine")
    report = run.report()
    assert report.state("gate") == "success" and report.state("downstream") == "success", report.records
    decision = report.of("downstream")[-1]["decision"]
    assert decision["gate_id"] == gate["id"] and decision["approvers"] == ["bob"]


def test_connection_type_and_lineage_under_the_gate(
    airflow_home: AirflowHome, live: Live, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No GATEHOUSE_* variables: the operator, the trigger and lineage use an Airflow connection."""
    run_key = unique("connection")
    connection = {"conn_type": "gatehouse", "host": live.base_url, "password": live.gate_requester_token}
    runner = AirflowRunner(
        airflow_home,
        {k: v for k, v in airflow_home.env.items() if not k.startswith("GATEHOUSE_")}
        | {"AIRFLOW_CONN_GATEHOUSE_PROD": json.dumps(connection)},
        tmp_path_factory.mktemp("conn-runs"),
        "conn-runner",
    )
    try:
        spec = {
            "kind": "operator",
            "run_key": run_key,
            "action": "export",
            "target": "s3://exports/customers.csv",
            "datasets": ["warehouse/customers#pii"],
            "inlets": ["postgres://db:5432/warehouse/public/orders"],
            "requester": "alice",
            "conn_id": "gatehouse_prod",
        }
        run = runner.submit(spec)
        gate = live.gate_for(run_key, timeout=600)
        live.decide("carol", gate["id"], "approve")
        report = run.report(timeout=600)
        assert report.state("downstream") == "success", report.error or runner.log_tail()
    finally:
        runner.close()
    with live.client("admin") as admin:
        rows = admin.get(f"/v1/lineage/gates/{gate['id']}").json()["rows"]
    accesses = {(r["dataset"], r["operation"]) for r in rows}
    assert accesses == {
        ("warehouse/customers", "export"),
        ("postgres://db:5432/warehouse/public/orders", "read"),
    }
    assert {(r["actor"], r["orchestrator"], r["pipeline"], r["task_id"]) for r in rows} == {
        ("alice", "airflow", dag_id_for(run_key), "gate")
    }


def test_the_example_dag_stops_at_the_gate_until_approved(runner: AirflowRunner, live: Live) -> None:
    run = runner.submit(
        {"run_key": "example"},
        dag_file=EXAMPLE.name,
        dag_id="gatehouse_pii_export",
        GATEHOUSE_DEMO_EXPORT_DIR=str(runner.workdir),
    )
    gate = live.gate_for("gatehouse_pii_export")
    assert (gate["rule"], gate["request"]["requester"]) == ("pii-export", "alice")
    time.sleep(2.0)
    assert not run.result_path.exists()  # still waiting at the gate
    with live.client("bot") as bot:
        assert bot.get(f"/v1/gates/{gate['id']}").json()["status"] == "PENDING"
    live.decide("bob", gate["id"], "approve", "aggregates only")
    report = run.report()
    assert report.states == {"approve_export": "success", "export_customers": "success"}, runner.log_tail()
    assert (runner.workdir / "customers.csv").read_text().startswith("region,customers")


def test_openlineage_events_carry_the_approval_facet(
    airflow_home: AirflowHome, live: Live, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Airflow's own OpenLineage provider (file transport) reports the gate task with its approval."""
    events_file = tmp_path_factory.mktemp("openlineage") / "events.jsonl"
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    runner = start_runner(
        airflow_home,
        live,
        tmp_path_factory.mktemp("ol-runs"),
        "ol-runner",
        AIRFLOW__OPENLINEAGE__DISABLED="False",
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(transport),
        AIRFLOW__OPENLINEAGE__NAMESPACE="gatehouse-test",
    )
    try:
        run_key = unique("openlineage")
        run = runner.submit(
            {
                "kind": "operator",
                "run_key": run_key,
                "action": "export",
                "target": "s3://exports/customers.csv",
                "datasets": ["warehouse/customers#pii"],
                "requester": "alice",
            }
        )
        gate = live.gate_for(run_key)
        live.decide("bob", gate["id"], "approve", "for the board")
        assert run.report().state("downstream") == "success", runner.log_tail()
    finally:
        runner.close()
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    complete = [
        e
        for e in events
        if e.get("eventType") == "COMPLETE" and e["job"]["name"] == f"{dag_id_for(run_key)}.gate"
    ]
    assert complete, [(e.get("eventType"), e["job"]["name"]) for e in events]
    facet = complete[-1]["run"]["facets"]["gatehouse_approval"]
    assert facet["gate_id"] == gate["id"] and facet["rule"] == "pii-export"
    assert [a["principal_id"] for a in facet["approvers"]] == ["bob"]
    assert {(d["namespace"], d["name"]) for d in complete[-1]["outputs"]} == {("warehouse", "customers")}


def test_the_hook_reads_a_connection_or_the_environment(
    airflow_home: AirflowHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

    from airflow_provider.hooks.gatehouse import GatehouseHook

    monkeypatch.setenv("GATEHOUSE_URL", "http://gatehouse.local:8080/")
    monkeypatch.setenv("GATEHOUSE_TOKEN", "gh_env_secret")
    monkeypatch.setenv(
        "AIRFLOW_CONN_GH_BARE",
        json.dumps(
            {
                "conn_type": "gatehouse",
                "host": "gh.internal",
                "schema": "https",
                "port": 8443,
                "password": "p",
            }
        ),
    )
    assert GatehouseHook.resolve("gh_bare").base_url == "https://gh.internal:8443"
    from_env = GatehouseHook.resolve("gatehouse_default")  # the default id falls back to the environment
    assert (from_env.base_url, from_env.token) == ("http://gatehouse.local:8080", "gh_env_secret")
    assert "gh_env_secret" not in repr(from_env)
    with pytest.raises(AirflowNotFoundException):
        GatehouseHook.resolve("gh_typo")  # a connection a DAG names explicitly must exist
    monkeypatch.delenv("GATEHOUSE_TOKEN")
    with pytest.raises(AirflowException, match="GATEHOUSE_URL/GATEHOUSE_TOKEN are not set"):
        GatehouseHook.resolve(None)
    assert GatehouseHook.get_ui_field_behaviour()["relabeling"]["password"] == "API token"
