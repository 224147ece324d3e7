"""Decision → the step running, in one Airflow install: Gatehouse vs Airflow's own approval.

Every sample is one DAG run of ``[gate] → downstream`` (for ``@gated``, the one gated task) under
``dag.test()`` (deferral and triggers in-process), all in one long-lived Airflow process,
alternating between the systems so all see the same machine load:

  gatehouse   GateOperator (deferred to GateTrigger and its shared long-poll) against a real
              `gatehouse serve`; answered the way its users answer it — bob's
              ``POST /v1/gates/{id}/decisions``, which the console and the Slack button call.
  airflow     Airflow 3.3's own ApprovalOperator (AWAITING_INPUT, no trigger); answered the way its
              users answer it — ``PATCH …/taskInstances/gate/-1/hitlDetails`` on a real
              `airflow api-server` sharing the metadata database (what the Required Actions UI calls).
  gatehouse_inworker
              GateOperator(deferrable=False): the gate task waits in its own worker on the same
              long-poll and concludes there; answered like ``gatehouse``.
  gatehouse_gated
              ``@gated(..., deferrable=False)``: the gate and the step are one task — it waits in
              its worker, consumes the approval, then runs its own function; no downstream task.
              Answered like ``gatehouse``.

The clock starts when the decision's HTTP response arrives (the decision is committed) and stops
when the step's Python starts — the downstream task's, or for ``gatehouse_gated`` the gated
function's own first statement (each writes ``time.time()``; one machine, one clock). A
decision is sent only once the gate is really waiting (Gatehouse: the trigger's — or in the worker,
the task's — long-poll is open at the service; Airflow: the task is AWAITING_INPUT/DEFERRED), after a
random 0–0.5 s. The systems take turns, each round starting with the next one.

On Airflow 3.1/3.2 the same ApprovalOperator deferred to HITLTrigger, which polls every 5 s; that
path cannot run under 3.3's ``dag.test()`` (its in-process supervisor does not answer the trigger's
GetHITLDetail request), so it is not measured here.

    python -m bench.airflow_resume                   # 20 samples each
    python -m bench.airflow_resume --quick           # 5 each
    python -m bench.airflow_resume --workdir /tmp/x  # keep the logs (runner, services) there
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._airflow import (
    CLOCK_STOP,
    GATED,
    KINDS,
    AirflowApi,
    DagRunner,
    GateService,
    Job,
    airflow_home,
    alternate,
    approve_gate,
    approve_hitl,
    compare,
    comparison_parser,
    gate_of_run,
    hitl_parked,
    scratch_root,
    stop,
    wait_until,
)
from bench._common import print_figures, warn_if_busy, write_result

NAME = "airflow_resume"
RUN_TIMEOUT_S = 600.0

DAG_FILE = "gatehouse_bench_dags.py"
DAG_TEXT = '''\
"""Benchmark DAGs (bench/airflow_resume.py): [gate] -> downstream, the gate chosen by BENCH_KIND."""
import json
import os
import time
from datetime import datetime

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, task

from airflow_provider import GateOperator, gated

KIND = os.environ.get("BENCH_KIND", "")


@task
def downstream():
    started = time.time()
    with open(os.environ["BENCH_OUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"downstream_started": started}) + "\\n")


@gated(action="export", target="s3://exports/bench.csv", datasets=["warehouse/customers#pii"],
       reason="benchmark", deferrable=False)
@task
def gated_step():
    started = time.time()
    with open(os.environ["BENCH_OUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"step_started": started}) + "\\n")


if KIND:
    with DAG("bench_" + KIND.replace("-", "_").replace(".", ""), schedule=None,
             start_date=datetime(2026, 1, 1), default_args={"owner": "alice"}) as dag:
        if KIND == "gatehouse_gated":
            gated_step()
        elif KIND.startswith("gatehouse"):
            gate = GateOperator(task_id="gate", action="export", target="s3://exports/bench.csv",
                                datasets=["warehouse/customers#pii"], reason="benchmark",
                                deferrable=KIND != "gatehouse_inworker")
        else:
            gate = ApprovalOperator(task_id="gate", subject="Export customers?", body="benchmark")
        if KIND != "gatehouse_gated":
            gate >> downstream()
'''


def dag_id(kind: str) -> str:
    return "bench_" + kind.replace("-", "_").replace(".", "")


class Bench:
    """The gate service, Airflow's API server and the dag.test() runner; ``close`` stops all."""

    def __init__(self, root: Path, stack: ExitStack) -> None:
        self.root = root
        self.service = GateService.start(root / "service")
        stack.callback(stop, self.service.process)
        self.env = airflow_home(root, {DAG_FILE: DAG_TEXT})
        self.api = AirflowApi.start(self.env, root / "api-server.log")
        stack.callback(stop, self.api.process)
        runner_env = self.env | {
            "GATEHOUSE_URL": self.service.base_url,
            "GATEHOUSE_TOKEN": self.service.tokens["etl-bot"],
        }
        self.runner = DagRunner(runner_env, root)
        stack.callback(self.runner.close)
        self.when = datetime(2026, 1, 1, tzinfo=UTC)
        self.bob = self.service.client("bob")
        self.bot = self.service.client("etl-bot")
        self.airflow = self.api.client()
        self.job: Job | None = None

    def sample(self, kind: str) -> float:
        """One DAG run: the seconds from the decision's response to the step starting (the
        downstream task, or the ``@gated`` task's function)."""
        self.when += timedelta(minutes=1)  # a new logical date: a new run id, so a new gate
        run_id = f"manual__{self.when.isoformat()}"
        job = self.runner.submit(DAG_FILE, dag_id(kind), self.when, BENCH_KIND=kind)
        self.job = job
        decide = self._airflow(kind, run_id) if kind == "airflow" else self._gatehouse(run_id)
        time.sleep(random.uniform(0.0, 0.5))
        decided_at = decide()
        result = job.wait(RUN_TIMEOUT_S, self.runner)
        expected = (
            {"gated_step": "success"} if kind == GATED else {"gate": "success", "downstream": "success"}
        )
        if result["states"] != expected:
            raise SystemExit(f"benchmark invalid: {kind} run ended {result['states']}")
        [record] = job.records_now()
        return float(record[CLOCK_STOP[kind]]) - decided_at

    def _alive(self, check: Callable[[], Any]) -> Callable[[], Any]:
        """``check``, failing at once if the DAG run already ended (it should be waiting)."""

        def checked() -> Any:
            if self.job is not None and self.job.result.exists():
                raise SystemExit(f"benchmark: the DAG run ended early: {self.job.wait(1, self.runner)}")
            return check()

        return checked

    def _gatehouse(self, run_id: str) -> Callable[[], float]:
        gate_id = wait_until("gate", self._alive(lambda: gate_of_run(self.bot, run_id)), RUN_TIMEOUT_S, 0.1)
        wait_until("the gate's long-poll", lambda: self.service.waiting_gates() >= 1, RUN_TIMEOUT_S, 0.05)
        return lambda: approve_gate(self.bob, gate_id)

    def _airflow(self, kind: str, run_id: str) -> Callable[[], float]:
        path = AirflowApi.ti_path(dag_id(kind), run_id, "gate")
        parked = self._alive(lambda: hitl_parked(self.airflow, path))
        wait_until(f"{kind} task awaiting input", parked, RUN_TIMEOUT_S, 0.1)
        return lambda: approve_hitl(self.airflow, path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return comparison_parser("airflow_resume", __doc__, quick=5).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the servers and the runner
    samples = args.samples or (5 if args.quick else 20)
    warn_if_busy()
    started = time.monotonic()
    with ExitStack() as stack:
        bench = Bench(scratch_root(stack, args.workdir, "gh-bench-airflow-"), stack)
        print("warming up (Airflow's in-process execution API starts once)…", flush=True)
        for kind in KINDS:
            bench.sample(kind)
        measured = alternate(samples, bench.sample)
    figures = compare(measured)
    print_figures("Airflow: decision → the step running (dag.test, same install)", figures)
    path = write_result(
        NAME,
        figures,
        {"samples": samples, "wall_s": round(time.monotonic() - started, 1)},
        {"samples_s": {k: [round(v, 4) for v in vs] for k, vs in measured.items()}},
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
