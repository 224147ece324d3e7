"""Decision → the step running on a real Airflow deployment: Gatehouse vs Airflow's own approval.

The deployment: a scratch PostgreSQL metadata database and, as separate processes,
``airflow api-server`` (REST and execution API), ``airflow scheduler`` (LocalExecutor: the tasks
run in its worker processes), ``airflow dag-processor`` and ``airflow triggerer``, all on
Airflow's default loop settings (reported with the result). Every sample is one DAG run of
``[gate] >> downstream`` (for ``@gated``, the one gated task) triggered through the REST API, the
systems taking turns (each round starting with the next one):

  gatehouse   GateOperator (deferred to GateTrigger in the triggerer, long-polling a real
              `gatehouse serve` through the ``gatehouse_default`` connection); answered by bob's
              ``POST /v1/gates/{id}/decisions``, as the console and the Slack button do.
  airflow     Airflow 3.3's ApprovalOperator (parked AWAITING_INPUT); answered by
              ``PATCH …/taskInstances/gate/-1/hitlDetails`` on the api-server, as the Required
              Actions UI does.
  gatehouse_inworker
              GateOperator(deferrable=False): the gate task keeps its LocalExecutor worker and
              waits there on the same long-poll; answered like ``gatehouse``.
  gatehouse_gated
              ``@gated(..., deferrable=False)``: the gate and the step are one task, which waits in
              its LocalExecutor worker, consumes the approval and runs its own function right
              there; no downstream task. Answered like ``gatehouse``.

The clock starts when the decision's HTTP response arrives and stops when the step's Python
starts — the downstream task's, or for ``gatehouse_gated`` the gated function's own first
statement (each writes ``time.time()``; one machine, one clock), as in bench/airflow_resume.py.
A decision is sent once the gate really waits (Gatehouse: the trigger's — or in the worker, the
task's — long-poll is open at the service; Airflow: the task is AWAITING_INPUT) and the scheduler
has handled the end of the run that parked it (a gate waiting in its worker parks nowhere: its
task is running), after a random 0–1 s (see DECIDE_AFTER_S).

Where the time goes, from the task instance rows (timestamps Airflow's processes wrote):

  resume signal      decision → gate task SCHEDULED again (the trigger event handled by the
                     triggerer; for ApprovalOperator the PATCH itself, so ≤ 0)
  gate queued        → the scheduler queues the gate task             (a scheduler pass)
  gate resumed       → the gate task finished in a LocalExecutor worker (execute_complete)
  downstream queued  gate finished → downstream queued                (a scheduler pass)
  downstream start   → the downstream task's Python runs               (worker, task process)

The in-worker gate skips the first three — no trigger event, no re-queue, no second task start:

  gate concluded     decision → the gate task finished in the worker it never left

The ``@gated`` step has no downstream task; its two phases come from the gate's ``consumed_at``
(the service's clock, the same machine's) and the function's own first statement:

  gate consumed      decision → the service committed the step's consumption of the approval
  step code running  → the gated function's first statement (the consume's answer, the decision
                     pushed to XCom, the lineage scope opened)

What the scheduler's share is, and why Gatehouse cannot remove it from outside: on Airflow 3.3
only the scheduler moves a downstream task to SCHEDULED and QUEUED — ``DagRun.schedule_tis`` has
one caller, ``SchedulerJobRunner._schedule_dag_run`` (airflow/jobs/scheduler_job_runner.py:2962
in 3.3.2), reached from ``_do_scheduling`` once per loop; when a pass finds nothing to do the loop
sleeps up to ``[scheduler] scheduler_idle_sleep_time`` (1 s) before the next (same file, lines
1870–1874). A task's end reaches the database through the execution API's ``ti_update_state``
(airflow/api_fastapi/execution_api/routes/task_instances.py:345), which writes the state and
schedules nothing. Airflow 2's "mini scheduler" — ``[scheduler] schedule_after_task_execution``,
the finished task's own process queueing its downstream tasks — was removed for 3.0 with no
replacement (apache/airflow#43741, Nov 2024: with task isolation the worker has no database to
do it with); only stale mentions remain (``[core] task_success_overtime`` in
airflow/config_templates/config.yml:382, a comment in airflow/models/dagrun.py:1586). So
"downstream queued" — up to one idle sleep, then a pass — bounds every system here, the in-worker
gate included. What removes it: no downstream task — ``@gated`` puts the gate and the
work in one task, so with ``deferrable=False`` the function runs the moment the decision lands,
with no scheduler pass in between (measured here as ``gatehouse_gated``); or a shorter
``scheduler_idle_sleep_time`` (``--scheduler-idle-sleep``), which shortens it for every DAG
alike at the cost of an idle scheduler's CPU.

    python -m bench.airflow_real_stack                   # 20 samples each
    python -m bench.airflow_real_stack --quick           # 4 each
    python -m bench.airflow_real_stack --workdir /tmp/x  # keep the logs (every process's) there
    python -m bench.airflow_real_stack --scheduler-idle-sleep 0.1
        # the same with the scheduler's idle pause changed from Airflow's default (1 s): how much of
        # the time the scheduler's loop accounts for; written as airflow_real_stack@idle0.1.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench._airflow import (
    BIN,
    CLOCK_STOP,
    GATED,
    IN_WORKER,
    KINDS,
    AirflowApi,
    GateService,
    Started,
    airflow_users,
    alternate,
    approve_gate,
    approve_hitl,
    compare,
    comparison_parser,
    free_port,
    gate_of_run,
    hitl_parked,
    scratch_root,
    spawn,
    stack_env,
    stop,
    wait_until,
)
from bench._common import (
    Figure,
    info,
    libpq_url,
    percentile,
    postgres_base_url,
    print_figures,
    scratch_postgres,
    warn_if_busy,
    write_result,
)

NAME = "airflow_real_stack"
START_TIMEOUT_S = 600.0  # a cold Airflow on a busy 2-core machine
RUN_TIMEOUT_S = 300.0
DEFERRED_PHASES = ("resume signal", "gate queued", "gate resumed", "downstream queued", "downstream start")
IN_WORKER_PHASES = ("gate concluded", "downstream queued", "downstream start")
GATED_PHASES = ("gate consumed", "step code running")
PHASES = {
    "gatehouse": DEFERRED_PHASES,
    "airflow": DEFERRED_PHASES,
    IN_WORKER: IN_WORKER_PHASES,
    GATED: GATED_PHASES,
}
LABELS = {
    "gatehouse": "Gatehouse",
    "airflow": "Airflow's approval",
    IN_WORKER: "Gatehouse in the worker",
    GATED: "Gatehouse @gated step",
}
WAITS_IN_WORKER = (IN_WORKER, GATED)  # their task never ends to park: it runs, waiting
SCHEDULER_PHASES = ("gate queued", "downstream queued")
# A decision comes once the scheduler has handled the executor's event for the run that parked
# the gate task, then after a random 0 to 1 s (anywhere in the scheduler's 1 s loop). Not sooner: on
# Airflow 3.3.2 a task re-queued by its answer before that event is handled is failed by the
# scheduler ("finished with state success, but the task instance's state attribute is queued" /
# "… is running": the event carries the same try number as the resumed run). Seen here with both
# systems — ApprovalOperator answered 0.5 s after AWAITING_INPUT, and a GateOperator whose deferring
# run took 5.7 s to exit on a loaded machine. People take longer than that anyway.
DECIDE_AFTER_S = (0.0, 1.0)
PARKED_EVENT = (
    "Received executor event with state success for task instance "
    "TaskInstanceKey(dag_id='{dag_id}', task_id='gate', run_id='{run_id}', try_number=1"
)

# Airflow's own defaults, spelled out so the result records what the figures were measured with.
SETTINGS = {
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",  # the loop's pause when a pass did nothing
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "5",  # the scheduler job's heartbeat (not its loop)
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # runs triggered through the API start
}

DAG_FILE = "gatehouse_real_stack_dags.py"
DAG_TEXT = '''\
"""Benchmark DAGs (bench/airflow_real_stack.py), one per system: [gate] >> downstream, or @gated."""
import json
import os
import time
from datetime import datetime

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, get_current_context, task

from airflow_provider import GateOperator, gated


@task
def downstream():
    started = time.time()
    run_id = get_current_context()["run_id"]
    with open(os.environ["BENCH_OUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"run_id": run_id, "downstream_started": started}) + "\\n")


@gated(action="export", target="s3://exports/bench.csv", datasets=["warehouse/customers#pii"],
       reason="benchmark", deferrable=False)
@task
def gated_step():
    started = time.time()
    run_id = get_current_context()["run_id"]
    with open(os.environ["BENCH_OUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"run_id": run_id, "step_started": started}) + "\\n")


for kind in ("gatehouse", "airflow", "gatehouse_inworker", "gatehouse_gated"):
    with DAG(f"bench_stack_{kind}", schedule=None, start_date=datetime(2026, 1, 1),
             catchup=False, default_args={"owner": "alice"}) as dag:
        if kind == "gatehouse_gated":
            gated_step()
        elif kind.startswith("gatehouse"):
            gate = GateOperator(task_id="gate", action="export", target="s3://exports/bench.csv",
                                datasets=["warehouse/customers#pii"], reason="benchmark",
                                deferrable=kind != "gatehouse_inworker")
        else:
            gate = ApprovalOperator(task_id="gate", subject="Export customers?", body="benchmark")
        if kind != "gatehouse_gated":
            gate >> downstream()
    globals()[dag.dag_id] = dag
'''


def dag_id(kind: str) -> str:
    return f"bench_stack_{kind}"


def answers(client: httpx.Client, path: str) -> bool:
    return client.get(path).is_success


def epoch(value: datetime | None) -> float:
    if value is None:
        raise SystemExit("benchmark invalid: a task instance row lacks a timestamp")
    return value.timestamp()


@dataclass
class Stack:
    """The gate service and Airflow's four processes on a scratch metadata database."""

    root: Path
    database_url: str
    service: GateService
    api: AirflowApi
    bob_token: str  # bob's, at Airflow: he answers the ApprovalOperator
    processes: list[Started] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, database_url: str, settings: Mapping[str, str], cleanup: ExitStack) -> Stack:
        service = GateService.start(root / "service")
        cleanup.callback(stop, service.process)
        (root / "dags").mkdir(parents=True, exist_ok=True)
        (root / "dags" / DAG_FILE).write_text(DAG_TEXT, encoding="utf-8")
        api_port = free_port()
        connection = {
            "conn_type": "gatehouse",
            "host": service.base_url,
            "password": service.tokens["etl-bot"],
        }
        users, passwords = airflow_users(root, ("alice", "bob"))  # alice triggers, bob approves
        env = stack_env(
            root,
            database_url,
            api_port,
            connection,
            {**settings, **users, "BENCH_OUT": str(root / "downstream.jsonl")},
        )
        airflow = str(BIN / "airflow")
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=900)
        processes: list[Started] = []

        def stop_all() -> None:
            for started in reversed(processes):
                stop(started.process)

        cleanup.callback(stop_all)
        for name, command in (
            ("scheduler", [airflow, "scheduler", "--skip-serve-logs"]),
            ("dag-processor", [airflow, "dag-processor"]),
            ("triggerer", [airflow, "triggerer", "--skip-serve-logs"]),
        ):
            processes.append(spawn(name, command, env, root))
        alice = ("alice", passwords["alice"])
        api = AirflowApi.start(env, root / "api-server.log", port=api_port, apps="all", user=alice)
        cleanup.callback(stop, api.process)
        stack = cls(root, database_url, service, api, api.sign_in("bob", passwords["bob"]), processes)
        with api.client() as client:
            for kind in KINDS:
                stack.wait(
                    f"DAG {dag_id(kind)} parsed", partial(answers, client, f"/api/v2/dags/{dag_id(kind)}")
                )
        return stack

    def wait(
        self, what: str, check: Callable[[], Any], timeout: float = START_TIMEOUT_S, poll_s: float = 0.05
    ) -> Any:
        """``wait_until``, failing at once with the logs' tails when a process of the stack died."""

        def alive_and(check_now: Callable[[], Any]) -> Any:
            dead = [p for p in self.processes if p.process.poll() is not None]
            if dead:
                raise SystemExit(f"benchmark: {dead[0].name} exited\n" + "\n".join(p.tail() for p in dead))
            return check_now()

        return wait_until(what, lambda: alive_and(check), timeout, poll_s)

    def scheduler_saw(self, line: str) -> bool:
        """The scheduler logged ``line`` (its LocalExecutor's and its own events go to its log)."""
        scheduler = next(p for p in self.processes if p.name == "scheduler")
        return line in scheduler.log.read_text(encoding="utf-8", errors="replace")

    def rows(self, run_id: str) -> dict[str, dict[str, datetime | None]]:
        with psycopg.connect(libpq_url(self.database_url), autocommit=True) as conn:
            found = conn.execute(
                "SELECT task_id, scheduled_dttm, queued_dttm, end_date FROM task_instance WHERE run_id = %s",
                (run_id,),
            ).fetchall()
        keys = ("scheduled", "queued", "end")
        return {task_id: dict(zip(keys, times, strict=True)) for task_id, *times in found}


class Bench:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.bob = stack.service.client("bob")
        self.bot = stack.service.client("etl-bot")
        self.airflow = stack.api.client()  # alice: she triggers the runs
        self.airflow_bob = stack.api.client(stack.bob_token)
        self.out = stack.root / "downstream.jsonl"
        self.runs = 0
        self.phases: dict[str, dict[str, list[float]]] = {}
        self.load: list[float] = []
        self.reset()

    def reset(self) -> None:
        """Forget the warm-up's samples."""
        self.phases = {kind: {phase: [] for phase in PHASES[kind]} for kind in KINDS}
        self.load.clear()

    def sample(self, kind: str) -> float:
        """One DAG run: the seconds from the decision's response to the step starting (the
        downstream task, or the ``@gated`` task's function)."""
        self.runs += 1
        run_id = f"bench_{kind}_{self.runs}"
        response = self.airflow.post(
            f"/api/v2/dags/{dag_id(kind)}/dagRuns", json={"dag_run_id": run_id, "logical_date": None}
        )
        if response.status_code != 200:
            raise SystemExit(
                f"benchmark: triggering {kind} answered {response.status_code}: {response.text[:300]}"
            )
        path = AirflowApi.ti_path(dag_id(kind), run_id, "gate")
        gate_id: str | None = None
        if kind == "airflow":
            self.stack.wait(
                "the task awaiting input", lambda: hitl_parked(self.airflow, path), RUN_TIMEOUT_S, 0.1
            )
            decide: Callable[[], float] = lambda: approve_hitl(self.airflow_bob, path)  # noqa: E731
        else:
            opened: str = self.stack.wait(
                "the gate", lambda: gate_of_run(self.bot, run_id), RUN_TIMEOUT_S, 0.1
            )
            self.stack.wait("the gate's long-poll", lambda: self.stack.service.waiting_gates() >= 1)
            decide = lambda: approve_gate(self.bob, opened)  # noqa: E731
            gate_id = opened
        if kind not in WAITS_IN_WORKER:
            parked = PARKED_EVENT.format(dag_id=dag_id(kind), run_id=run_id)
            self.stack.wait(
                "the parking run's end", lambda: self.stack.scheduler_saw(parked), RUN_TIMEOUT_S, 0.1
            )
        time.sleep(random.uniform(*DECIDE_AFTER_S))
        decided_at = decide()
        started: float = self.stack.wait("the step", lambda: self._clock_stopped(kind, run_id), RUN_TIMEOUT_S)
        self.stack.wait(
            "the DAG run's end", lambda: self._run_state(kind, run_id) == "success", RUN_TIMEOUT_S, 0.1
        )
        self._phases(kind, run_id, gate_id, decided_at, started)
        self.load.append(os.getloadavg()[0])
        return started - decided_at

    def _clock_stopped(self, kind: str, run_id: str) -> float | None:
        """When the step of ``run_id`` started, as it wrote it (CLOCK_STOP), once it has."""
        if not self.out.exists():
            return None
        for line in self.out.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record["run_id"] == run_id:
                return float(record[CLOCK_STOP[kind]])
        return None

    def _run_state(self, kind: str, run_id: str) -> str:
        state = str(self.airflow.get(f"/api/v2/dags/{dag_id(kind)}/dagRuns/{run_id}").json()["state"])
        if state == "failed":
            raise SystemExit(f"benchmark invalid: {kind} run {run_id} failed; see {self.stack.root}")
        return state

    def _phases(self, kind: str, run_id: str, gate_id: str | None, decided_at: float, started: float) -> None:
        if kind == GATED:  # one task: nothing between the decision and the step but the consume
            if gate_id is None:
                raise SystemExit(f"benchmark: {kind} run {run_id} has no gate")
            marks = [decided_at, self._consumed_at(gate_id), started]
        else:
            rows = self.stack.rows(run_id)
            gate, after = rows["gate"], rows["downstream"]
            resumed = [] if kind == IN_WORKER else [epoch(gate["scheduled"]), epoch(gate["queued"])]
            marks = [decided_at, *resumed, epoch(gate["end"]), epoch(after["queued"]), started]
        for phase, (begin, end) in zip(PHASES[kind], pairwise(marks), strict=True):
            self.phases[kind][phase].append(end - begin)

    def _consumed_at(self, gate_id: str) -> float:
        """When the service committed the gated step's consumption (its own clock, this machine's)."""
        consumed = self.bot.get(f"/v1/gates/{gate_id}").json().get("consumed_at")
        if consumed is None:
            raise SystemExit(f"benchmark invalid: gate {gate_id} ran its step but was never consumed")
        moment = datetime.fromisoformat(consumed)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def breakdown(phases: Mapping[str, Mapping[str, Sequence[float]]]) -> list[Figure]:
    """Each phase's p50 per system, and how much of it is waiting for the scheduler's passes."""
    figures = []
    for kind, by_phase in phases.items():
        label, names = LABELS[kind], PHASES[kind]
        figures += [info(f"{label}: {phase} p50", percentile(by_phase[phase], 50), "s") for phase in names]
        rounds = range(len(by_phase[names[0]]))
        waits = [sum(by_phase[p][i] for p in SCHEDULER_PHASES if p in by_phase) for i in rounds]
        totals = [sum(by_phase[p][i] for p in names) for i in rounds]
        figures += [
            info(f"{label}: waiting for scheduler passes p50", percentile(waits, 50), "s"),
            info(
                f"{label}: share of the total waiting for the scheduler", 100 * sum(waits) / sum(totals), "%"
            ),
        ]
    return figures


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = comparison_parser("airflow_real_stack", __doc__, quick=4)
    parser.add_argument(
        "--scheduler-idle-sleep",
        type=float,
        help="[scheduler] scheduler_idle_sleep_time instead of the default 1 s (a separate result)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop every process of the stack
    samples = args.samples or (4 if args.quick else 20)
    settings, name = dict(SETTINGS), NAME
    if args.scheduler_idle_sleep is not None:
        settings["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] = f"{args.scheduler_idle_sleep:g}"
        name = f"{NAME}@idle{args.scheduler_idle_sleep:g}"
    warn_if_busy()
    started = time.monotonic()
    with ExitStack() as cleanup:
        root = scratch_root(cleanup, args.workdir, "gh-bench-airflow-stack-")
        database_url = cleanup.enter_context(scratch_postgres(postgres_base_url()))
        stack = Stack.start(root, database_url, settings, cleanup)
        bench = Bench(stack)
        print("warming up (the first task of each DAG starts cold)…", flush=True)
        for kind in KINDS:
            bench.sample(kind)
        bench.reset()
        measured = alternate(samples, bench.sample)
    figures = compare(measured) + breakdown(bench.phases)
    print_figures("Airflow: decision → the step running (real deployment)", figures)
    path = write_result(
        name,
        figures,
        {
            "samples": samples,
            "wall_s": round(time.monotonic() - started, 1),
            "processes": ["api-server", "scheduler (LocalExecutor)", "dag-processor", "triggerer"],
            "airflow_settings": {key.split("__", 2)[-1].lower(): value for key, value in settings.items()},
            "load_average_1m_during_run": [round(x, 2) for x in bench.load],
        },
        {
            "samples_s": {k: [round(v, 4) for v in vs] for k, vs in measured.items()},
            "phases_s": {
                kind: {phase: [round(v, 4) for v in vs] for phase, vs in by_phase.items()}
                for kind, by_phase in bench.phases.items()
            },
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
