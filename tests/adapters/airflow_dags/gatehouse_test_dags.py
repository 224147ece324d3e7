"""The DAGs tests/adapters/test_airflow.py runs with ``dag.test()``, one per test run.

The test passes a JSON spec in GATEHOUSE_TEST_SPEC; this file builds exactly that DAG, named
after the spec's run key (so the gate's idempotency key — dag/run/task — contains it). Tasks
report what happened as JSON lines in GATEHOUSE_TEST_OUT: each task's failure or skip reason
(the exception Airflow hands its callbacks), the downstream task's run and the decision it saw.

Kinds:
    operator   GateOperator → downstream            (the adapter contract, on_reject, timeout, conn;
                                                     deferred or, "deferrable": false, in the worker)
    gated      @gated @task, failing its first try  (a real Airflow retry finds the same gate)
    sensor     a task opens a gate → GateSensor → downstream
    warmup     downstream alone (starts Airflow's in-process machinery before the timed tests)
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, get_current_context, task

from airflow_provider import GatehouseHook, GateOperator, GateSensor, gated
from gate_core import DatasetRef, GateRequest

SPEC: dict[str, Any] = json.loads(os.environ.get("GATEHOUSE_TEST_SPEC") or "null") or {}
OUT = os.environ.get("GATEHOUSE_TEST_OUT", "")


def report(**record: Any) -> None:
    if OUT:
        with Path(OUT).open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, default=str) + "\n")


def on_failure(context: Any) -> None:
    report(task=context["ti"].task_id, state="failed", detail=str(context.get("exception") or ""))


def on_skipped(context: Any) -> None:
    """Airflow hands skip callbacks no exception; the operator's ``gatehouse_outcome`` XCom says why."""
    ti = context["ti"]
    outcome = ti.xcom_pull(task_ids=ti.task_id, key="gatehouse_outcome") or {}
    report(task=ti.task_id, state="skipped", detail=str(outcome.get("message", "")), outcome=outcome)


def dag_id_for(run_key: str) -> str:
    return "gh_" + re.sub(r"[^A-Za-z0-9_.-]", "_", run_key)


def gate_arguments(spec: dict[str, Any]) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "action": spec.get("action", "export"),
        "target": spec.get("target", ""),
        "datasets": list(spec.get("datasets", ())),
        "environment": spec.get("environment", ""),
        "reason": spec.get("reason", ""),
        "parameters": dict(spec.get("parameters") or {}),
        "on_reject": spec.get("on_reject", "fail"),
        "poll_timeout": float(spec.get("poll_timeout", 25.0)),
    }
    if spec.get("requester_argument"):
        arguments["requester"] = spec["requester_argument"]
    if spec.get("timeout_s"):
        arguments["timeout"] = timedelta(seconds=float(spec["timeout_s"]))
    if "conn_id" in spec:
        arguments["gatehouse_conn_id"] = spec["conn_id"]
    if "deferrable" in spec:
        arguments["deferrable"] = spec["deferrable"]
    return arguments


@task
def downstream(decision: Any = None) -> None:
    report(task="downstream", ran=True, decision=decision)


def operator_dag(dag: DAG, spec: dict[str, Any]) -> None:
    gate = GateOperator(
        task_id="gate",
        inlets=[Asset(uri=uri) for uri in spec.get("inlets", ())],
        on_failure_callback=on_failure,
        on_skipped_callback=on_skipped,
        **gate_arguments(spec),
    )
    gate >> downstream(gate.output)


def gated_dag(dag: DAG, spec: dict[str, Any]) -> None:
    @gated(**gate_arguments(spec))
    @task(retries=1, retry_delay=timedelta(seconds=0), on_failure_callback=on_failure)
    def export_customers() -> str:
        import lineage

        context = get_current_context()
        try_number = context["ti"].try_number
        event = lineage.record_access("s3://exports/customers.csv", "write", row_count=3)
        report(task="export_customers", try_number=try_number, lineage_gate=event.gate_id, actor=event.actor)
        if try_number == 1 and spec.get("fail_first_try"):
            raise RuntimeError("first try fails after the approval (the retry must find the same gate)")
        return "exported"

    exported = export_customers()
    exported >> downstream(exported)


def sensor_dag(dag: DAG, spec: dict[str, Any]) -> None:
    @task
    def open_gate() -> str:
        ti = get_current_context()["ti"]
        request = GateRequest(
            action=spec.get("action", "export"),
            target=spec.get("target", ""),
            datasets=tuple(DatasetRef.parse(d) for d in spec.get("datasets", ())),
            requester=spec.get("requester", "alice"),
            idempotency_key=f"sensor-test:{ti.dag_id}:{ti.run_id}",
            reason=spec.get("reason", ""),
        )
        return GatehouseHook().client.open(request).id

    opened = open_gate()
    sensor = GateSensor(
        task_id="gate",
        gate_id=opened,
        deferrable=spec.get("deferrable", True),
        mode=spec.get("mode", "poke"),
        poke_interval=float(spec.get("poke_interval", 1.0)),
        timeout=float(spec.get("sensor_timeout", 120)),
        on_failure_callback=on_failure,
    )
    sensor >> downstream(sensor.output)


def warmup_dag(dag: DAG, spec: dict[str, Any]) -> None:
    downstream()


BUILDERS = {"operator": operator_dag, "gated": gated_dag, "sensor": sensor_dag, "warmup": warmup_dag}

if SPEC:
    with DAG(
        dag_id_for(SPEC["run_key"]),
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"owner": SPEC.get("requester", "alice")},
        tags=["gatehouse-test"],
    ) as test_dag:
        BUILDERS[SPEC.get("kind", "operator")](test_dag, SPEC)
