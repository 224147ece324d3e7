"""`kill -9` of the Airflow triggerer while GateOperators are deferred on their gates.

A real Airflow 3 stack on a scratch PostgreSQL metadata DB: ``airflow api-server`` (the execution
API the task SDK calls), a runner doing ``dag.test(use_executor=True)`` with the LocalExecutor
(tasks run in real worker processes; a DEFERRED task is re-queued once something marks it
SCHEDULED) and a real ``airflow triggerer``. The DAG holds four GateOperators, each before a task
that records the decision it was handed. Once all four are DEFERRED with their triggers running
in triggerer #1 (its job owns the four trigger rows; the gate service sees all four gates
long-polled), its whole process group gets SIGKILL. While no triggerer runs, bob approves one
gate and carol rejects two (one task fails on reject, one skips). Triggerer #2 then starts,
adopts the orphaned triggers (the health-check threshold is lowered to seconds), and the fourth
gate is approved only after that. Proved:

* every gate survives with its state; every decision made while the triggerer was dead is
  honoured when the task resumes; resuming opens no second gate (one gate per task);
* the approved tasks resume and their downstream tasks run with the decision of the same gate;
* the rejected task fails (``on_reject="fail"``) or skips (``"skip"``) with carol's reason,
  its downstream does not run, and the run ends (nothing hangs);
* the gate service's audit trail verifies.

``python -m tests.reliability.test_airflow_triggerer_crash DAG_FILE DAG_ID RESULT`` is the
runner's own process (``dag.test(use_executor=True)``; how the run ended goes to RESULT).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from bench._airflow import Started, api_healthy, spawn, stack_env
from gate_core import GateFilter, GateStatus, Verdict, open_gatekeeper
from tests.conftest import PostgresServer
from tests.reliability.conftest import Report, example_home
from tests.service.conftest import free_port, launch_server, make_tokens, stop_server

PREFIX = "Airflow triggerer kill -9"
AIRFLOW = str(Path(sys.executable).parent / "airflow")
RUNNER_MODULE = "tests.reliability.test_airflow_triggerer_crash"  # this file, as the runner
LOGICAL_DATE = datetime(2026, 1, 1, tzinfo=UTC)
DAG_ID = "gh_triggerer_crash"
APPROVED, REJECTED, SKIPPED, LATE = "gate_approved", "gate_rejected", "gate_skipped", "gate_late"
GATES = (APPROVED, REJECTED, SKIPPED, LATE)
HEALTH_CHECK_S = 5  # triggerer #2 adopts triggers whose triggerer missed heartbeats this long
# Triggerer #1 heartbeats every second; triggerer #2 adopts its triggers HEALTH_CHECK_S after it died.
TRIGGERER_SETTINGS = {
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(HEALTH_CHECK_S),
}
START_TIMEOUT = 600.0  # Airflow start-up and first deferral, on a shared 2-core machine
RUN_TIMEOUT = 300.0

# Four branches: gate → a task that records the decision XCom it was handed.
DAG_TEXT = '''"""Written by tests/reliability/test_airflow_triggerer_crash.py."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, get_current_context, task

from airflow_provider import GateOperator

RECORDS = Path(@RECORDS@)


@task
def after(decision: dict[str, Any]) -> None:
    ti = get_current_context()["ti"]
    record = {"task": ti.task_id, "gate_id": decision["gate_id"], "approvers": decision["approvers"]}
    with RECORDS.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\\n")


with DAG(
    @DAG_ID@,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"owner": "alice"},
) as dag:
    branches = (("approved", "fail"), ("rejected", "fail"), ("skipped", "skip"), ("late", "fail"))
    for name, on_reject in branches:
        gate = GateOperator(
            task_id=f"gate_{name}",
            action="export",
            target="s3://exports/customers.csv",
            datasets=["warehouse/customers#pii"],
            reason=f"triggerer crash test: {name}",
            on_reject=on_reject,
        )
        gate >> after.override(task_id=f"after_{name}")(gate.output)
'''

T = TypeVar("T")


# --------------------------------------------------------------------------- processes


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, ...]; [] once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def kill_9(started: Started) -> list[int]:
    """SIGKILL the process group and every descendant; returns the descendants' pids.

    The task SDK puts each task process in a group of its own, so the runner's tasks are killed
    one by one; the triggerer's trigger-runner subprocess shares the triggerer's group."""
    family = descendants(started.process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(started.process.pid, signal.SIGKILL)
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    started.process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(running(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.05)  # orphans are reaped by init
    return family


def poll(
    what: str, check: Callable[[], T | None], timeout: float, watch: list[Started], poll_s: float = 0.2
) -> T:
    """``check()`` until it returns something truthy; fail at the deadline or when a process dies."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        dead = [s for s in watch if s.process.poll() is not None]
        if dead or time.monotonic() > deadline:
            why = (
                f"{dead[0].name} exited ({dead[0].process.returncode})" if dead else f"{timeout:.0f}s passed"
            )
            raise AssertionError(f"no {what}: {why}\n" + "\n".join(s.tail() for s in watch))
        time.sleep(poll_s)


# --------------------------------------------------------------------------- Airflow's metadata DB


@contextlib.contextmanager
def airflow_database(server: PostgresServer, worker_id: str) -> Iterator[str]:
    """An empty scratch database (the gate template would clash with Airflow's alembic table)."""
    name = f"gh_airflow_{worker_id}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.url_for(name)
    finally:
        with server.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class AirflowDb:
    url: str

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def states(self) -> dict[str, str]:
        rows = self.rows("SELECT task_id, state FROM task_instance WHERE dag_id = %s", DAG_ID)
        return {task_id: state or "none" for task_id, state in rows}

    def run_state(self) -> str | None:
        """The DAG run's state once it has ended (success or failed), else None."""
        rows = self.rows("SELECT state FROM dag_run WHERE dag_id = %s", DAG_ID)
        ended = [state for (state,) in rows if state in ("success", "failed")]
        return ended[0] if ended else None

    def trigger_owners(self) -> dict[str, int | None]:
        """Each deferred task's trigger → the triggerer job it is assigned to."""
        rows = self.rows(
            "SELECT ti.task_id, t.triggerer_id FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id"
            " WHERE ti.dag_id = %s AND ti.state = 'deferred'",
            DAG_ID,
        )
        return dict(rows)

    def triggerer_job(self, after: int = 0) -> int | None:
        """The first triggerer job registered after job ``after`` (jobs record no pid)."""
        rows = self.rows("SELECT min(id) FROM job WHERE job_type = 'TriggererJob' AND id > %s", after)
        found: int | None = rows[0][0]
        return found

    def outcome_xcom(self, task_id: str) -> dict[str, Any]:
        rows = self.rows(
            "SELECT value FROM xcom WHERE dag_id = %s AND task_id = %s AND key = 'gatehouse_outcome'",
            DAG_ID,
            task_id,
        )
        assert rows, f"no gatehouse_outcome XCom for {task_id}"
        value = rows[0][0]
        parsed: dict[str, Any] = json.loads(value) if isinstance(value, str) else value
        return parsed


# --------------------------------------------------------------------------- the test


def stop_all(started: list[Started]) -> None:
    for process in reversed(started):
        try:
            kill_9(process)
        except Exception as exc:  # keep cleaning up; the test's own failure is the one to see
            print(f"could not stop {process.name}: {exc!r}", file=sys.stderr)


def decide(base_url: str, gate_id: str, token: str, verdict: str, comment: str) -> None:
    httpx.post(
        f"{base_url}/v1/gates/{gate_id}/decisions",
        json={"decision": verdict, "comment": comment},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).raise_for_status()


@pytest.mark.slow
def test_kill_9_of_the_triggerer_loses_no_gate_and_no_decision(
    tmp_path: Path, report: Report, postgres_server: PostgresServer, worker_id: str
) -> None:
    test_started = time.monotonic()
    settings = example_home(tmp_path / "gatehouse", f"sqlite:///{tmp_path / 'gatehouse.db'}")
    gatekeeper = open_gatekeeper(settings)
    tokens = make_tokens(gatekeeper)
    gatekeeper.store.close()
    started: list[Started] = []
    with contextlib.ExitStack() as cleanup:  # unwinds: Airflow's processes, its database, the service
        server = launch_server(settings, tmp_path / "serve.log")
        cleanup.callback(stop_server, server)
        database_url = cleanup.enter_context(airflow_database(postgres_server, worker_id))
        cleanup.callback(stop_all, started)
        db = AirflowDb(database_url)
        api_port = free_port()
        connection = {"conn_type": "gatehouse", "host": server.base_url, "password": tokens["bot"]}
        env = stack_env(tmp_path, database_url, api_port, connection, TRIGGERER_SETTINGS)
        (tmp_path / "dags").mkdir()
        records = tmp_path / "records.jsonl"
        dag_file = tmp_path / "dags" / "triggerer_crash.py"
        dag_file.write_text(
            DAG_TEXT.replace("@RECORDS@", repr(str(records))).replace("@DAG_ID@", repr(DAG_ID))
        )
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=900)

        api_command = [AIRFLOW, "api-server", "-H", "127.0.0.1", "-p", str(api_port), "-w", "1"]
        started.append(api := spawn("api-server", api_command, env, tmp_path))
        triggerer = [AIRFLOW, "triggerer", "--skip-serve-logs"]
        started.append(first := spawn("triggerer-1", triggerer, env, tmp_path))
        poll(
            "Airflow api-server",
            lambda: api_healthy(f"http://127.0.0.1:{api_port}"),
            START_TIMEOUT,
            started,
            0.5,
        )
        result = tmp_path / "run-result.json"
        runner_command = [sys.executable, "-m", RUNNER_MODULE, str(dag_file), DAG_ID, str(result)]
        started.append(runner := spawn("runner", runner_command, env, tmp_path))

        # 1. all four tasks deferred, their triggers in triggerer #1, which long-polls their gates
        stack = [api, first, runner]
        first_job = poll("triggerer #1's job", db.triggerer_job, START_TIMEOUT, stack)
        poll(
            "four triggers in triggerer #1",
            lambda: db.trigger_owners() == dict.fromkeys(GATES, first_job),
            START_TIMEOUT,
            stack,
        )
        listed = httpx.get(
            f"{server.base_url}/v1/gates",
            params={"limit": 100},
            headers={"Authorization": f"Bearer {tokens['admin']}"},
            timeout=30,
        ).json()
        gates = {gate["request"]["run"]["task_id"]: gate for gate in listed}
        assert set(gates) == set(GATES) and {g["status"] for g in gates.values()} == {"PENDING"}
        poll(
            "a long-poll on all four gates",
            lambda: httpx.get(f"{server.base_url}/healthz", timeout=5).json()["waiting_gates"] == len(GATES),
            120,
            stack,
        )
        ready_s = time.monotonic() - test_started

        # 2. kill -9 of triggerer #1's process group (the triggerer and its trigger runner)
        family = kill_9(first)
        started.remove(first)
        assert first.process.returncode == -signal.SIGKILL
        assert family and not any(running(pid) for pid in family)

        # 3. decisions while no triggerer runs; nothing else may resume the tasks
        decisions = {
            APPROVED: ("bob", "approve", "fine while the triggerer is down"),
            REJECTED: ("carol", "reject", "not while the triggerer is down"),
            SKIPPED: ("carol", "reject", "skip this one"),
        }
        for task_id, (who, verdict, comment) in decisions.items():
            decide(server.base_url, gates[task_id]["id"], tokens[who], verdict, comment)
        assert {db.states()[g] for g in GATES} == {"deferred"}

        # 4. triggerer #2 adopts the orphaned triggers; the decided tasks resume
        restarted_at = time.monotonic()
        started.append(second := spawn("triggerer-2", triggerer, env, tmp_path))
        stack = [api, second, runner]
        second_job = poll(
            "triggerer #2's job", lambda: db.triggerer_job(after=first_job), START_TIMEOUT, stack
        )
        poll(
            "the late gate's trigger in triggerer #2",
            lambda: db.trigger_owners().get(LATE) == second_job,
            START_TIMEOUT,
            stack,
        )
        adopted_s = time.monotonic() - restarted_at
        poll("the approved task resumed", lambda: db.states()[APPROVED] != "deferred", RUN_TIMEOUT, stack)
        resumed_s = time.monotonic() - restarted_at

        # 5. a gate still pending at the restart, approved now, is waited for by triggerer #2
        late_at = time.monotonic()
        decide(server.base_url, gates[LATE]["id"], tokens["bob"], "approve", "after the restart")
        poll("the late task resumed", lambda: db.states()[LATE] != "deferred", RUN_TIMEOUT, stack)
        late_s = time.monotonic() - late_at

        # 6. the run ends on its own: approved branches ran, rejected ones failed or skipped. Its
        # end is read from Airflow's database: dag.test() returns (and the runner writes its
        # result) only after the LocalExecutor's shutdown has waited for its worker processes,
        # which on a loaded machine once took over RUN_TIMEOUT after the run had ended.
        state = poll("the DAG run's end", db.run_state, RUN_TIMEOUT, stack)
        done_s = time.monotonic() - restarted_at
        ended = json.loads(result.read_text()) if result.exists() else {"state": state}
        assert "error" not in ended, ended["error"]
        assert db.states() == {
            APPROVED: "success",
            "after_approved": "success",
            REJECTED: "failed",
            "after_rejected": "upstream_failed",
            SKIPPED: "skipped",
            "after_skipped": "skipped",
            LATE: "success",
            "after_late": "success",
        }, "\n".join(s.tail() for s in stack)
        assert state == ended["state"] == "failed"  # gate_rejected failed, so the run did; it did not hang
        ran = {r["task"]: r for r in map(json.loads, records.read_text().splitlines())}
        assert ran == {
            "after_approved": {
                "task": "after_approved",
                "gate_id": gates[APPROVED]["id"],
                "approvers": ["bob"],
            },
            "after_late": {"task": "after_late", "gate_id": gates[LATE]["id"], "approvers": ["bob"]},
        }
        for task_id in (REJECTED, SKIPPED):
            outcome = db.outcome_xcom(task_id)
            assert (outcome["gate_id"], outcome["outcome"]) == (gates[task_id]["id"], "rejected")
            assert (outcome["decided_by"], outcome["message"]) == (["carol"], decisions[task_id][2])

    # 7. the gate service: one gate per task, every decision kept, the audit trail intact
    gatekeeper = open_gatekeeper(settings)
    try:
        prefix = f"airflow:{DAG_ID}:"
        stored = [
            g
            for g in gatekeeper.store.list_gates(GateFilter(limit=1000))
            if (g.request.idempotency_key or "").startswith(prefix)
        ]
        audit_ok = gatekeeper.audit.verify().ok
    finally:
        gatekeeper.store.close()
    by_task = {g.request.run.task_id: g for g in stored}
    expected = {
        APPROVED: (GateStatus.CONSUMED, "bob", Verdict.APPROVE),
        REJECTED: (GateStatus.REJECTED, "carol", Verdict.REJECT),
        SKIPPED: (GateStatus.REJECTED, "carol", Verdict.REJECT),
        LATE: (GateStatus.CONSUMED, "bob", Verdict.APPROVE),
    }
    kept = {
        task_id
        for task_id, (_, who, verdict) in expected.items()
        if task_id in by_task
        and [(d.principal_id, d.verdict) for d in by_task[task_id].decisions] == [(who, verdict)]
    }
    gates_lost = len(set(GATES) - set(by_task))
    duplicates = len(stored) - len(by_task)
    report(f"{PREFIX}: gates lost", gates_lost, "gates", "0")
    report(f"{PREFIX}: decisions lost", len(expected) - len(kept), "decisions", "0")
    report(f"{PREFIX}: duplicate gates after restart", duplicates, "gates", "0")
    report(f"{PREFIX}: triggerer #2 start to orphaned triggers adopted", round(adopted_s, 1), "s")
    report(f"{PREFIX}: triggerer #2 start to approved task resumed", round(resumed_s, 1), "s")
    report(f"{PREFIX}: triggerer #2 start to DAG run ended", round(done_s, 1), "s")
    report(f"{PREFIX}: approval after the restart to task resumed", round(late_s, 1), "s")
    report(f"{PREFIX}: stack start to four tasks deferred", round(ready_s, 1), "s")
    assert gates_lost == 0 and duplicates == 0 and kept == set(expected)
    assert {t: g.id for t, g in by_task.items()} == {t: g["id"] for t, g in gates.items()}
    assert {t: g.status for t, g in by_task.items()} == {t: e[0] for t, e in expected.items()}
    assert audit_ok


# --------------------------------------------------------------------------- the runner process


def run_dag(dag_file: str, dag_id: str, result: str) -> None:
    """``dag.test(use_executor=True)``: tasks go to the LocalExecutor; a DEFERRED task is queued
    again once a triggerer marks it SCHEDULED."""
    try:
        from airflow.sdk import DAG

        spec = importlib.util.spec_from_file_location("gh_triggerer_crash_dag", dag_file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dag = next(v for v in vars(module).values() if isinstance(v, DAG) and v.dag_id == dag_id)
        run = dag.test(logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE, use_executor=True)
        ended: dict[str, Any] = {"run_id": run.run_id, "state": str(getattr(run.state, "value", run.state))}
    except BaseException:
        ended = {"error": traceback.format_exc()}
        print(ended["error"], file=sys.stderr)  # for the test's failure message (the log's tail)
    partial = Path(f"{result}.partial")
    partial.write_text(json.dumps(ended))
    partial.replace(result)


if __name__ == "__main__":
    run_dag(*sys.argv[1:4])
