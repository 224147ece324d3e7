"""Run DAGs with ``dag.test()`` and report how each run ended.

    python -m tests.adapters.airflow_dags._run --serve     one job per stdin line, in order
    python -m tests.adapters.airflow_dags._run JOB_JSON    one job

A job is {"dag_file", "dag_id", "result", "env": {NAME: value or null}}: the environment changes
for that run (GATEHOUSE_TEST_SPEC builds the DAG; null unsets a variable), restored afterwards.
Optional: "conf" (the run conf, as ``airflow dags trigger --conf`` passes it) and
"triggering_user" — the user Airflow records on the DagRun (``dag_run.triggering_user_name``) as
its REST API does when a signed-in user triggers a run. ``dag.test()`` itself always records
"dag_test"; with "triggering_user" the DagRun row is created with that name instead (the one
place ``dag.test()`` names the user, ``airflow.models.dagrun.get_or_create_dagrun``, is wrapped
for the run), so the task reads it from Airflow exactly as in a run bob triggered.
Serving many jobs from one process matters: Airflow's in-process execution API takes tens of
seconds to build on a loaded machine, once per process. The logical date is fixed, so running the
same DAG again re-runs the same run id — what a retry of the run is.

The result file (written atomically) holds {"run_id", "states": {task_id: state}, "records":
[what the tasks reported in GATEHOUSE_TEST_OUT]}, or {"error": traceback}.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

LOGICAL_DATE = datetime(2026, 1, 1, tzinfo=UTC)
_modules = count()


@contextmanager
def environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def triggered_by(user: str | None) -> Iterator[None]:
    """Airflow records ``user`` as the run's triggering user (see the module docstring)."""
    if user is None:
        yield
        return
    from airflow.models import dagrun

    original = dagrun.get_or_create_dagrun

    def as_user(**kwargs: Any) -> Any:
        return original(**(kwargs | {"triggering_user_name": user}))

    dagrun.get_or_create_dagrun = as_user
    try:
        yield
    finally:
        dagrun.get_or_create_dagrun = original


def run_dag(
    dag_file: str, dag_id: str, conf: Mapping[str, Any] | None = None, triggering_user: str | None = None
) -> dict[str, Any]:
    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG
    from airflow.utils.session import create_session

    spec = importlib.util.spec_from_file_location(f"gh_under_test_{next(_modules)}", dag_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dags = [v for v in vars(module).values() if isinstance(v, DAG) and v.dag_id == dag_id]
    if not dags:
        raise LookupError(f"no DAG {dag_id!r} in {dag_file}")
    with triggered_by(triggering_user):
        dag_run = dags[0].test(
            logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE, run_conf=dict(conf) if conf else None
        )
    with create_session() as session:
        run = session.get(DagRun, dag_run.id)
        assert run is not None
        tis = run.get_task_instances(session=session)
        states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in tis}
        return {"run_id": run.run_id, "states": states, "triggering_user_name": run.triggering_user_name}


def run_job(job: Mapping[str, Any]) -> dict[str, Any]:
    with environment(job.get("env", {})):
        try:
            result = run_dag(job["dag_file"], job["dag_id"], job.get("conf"), job.get("triggering_user"))
        except BaseException:
            result = {"error": traceback.format_exc()}
        out = os.environ.get("GATEHOUSE_TEST_OUT", "")
        lines = Path(out).read_text().splitlines() if out and Path(out).exists() else []
    return result | {"records": [json.loads(line) for line in lines]}


def write_result(path: str, result: Mapping[str, Any]) -> None:
    partial = Path(f"{path}.partial")
    partial.write_text(json.dumps(result, default=str))
    partial.replace(path)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--serve"]:
        for line in sys.stdin:
            if line.strip():
                job = json.loads(line)
                write_result(job["result"], run_job(job))
        return
    job = json.loads(argv[0])
    write_result(job["result"], run_job(job))


if __name__ == "__main__":
    main(sys.argv[1:])
