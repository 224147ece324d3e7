"""Plumbing for the Airflow benchmarks: a gate service, an Airflow home, a ``dag.test()`` runner,
and Airflow's own REST API server.

    GateService.start(root)        `gatehouse init --example` + tokens + `gatehouse serve`
    airflow_home(root, dag_text)   AIRFLOW_HOME with the DAG file in its dags folder, migrated
    DagRunner(env)                 one long-lived process running DAGs with dag.test(), in order
                                   (Airflow's in-process execution API starts once, not per run)
    AirflowApi.start(env)          `airflow api-server` on the same metadata DB, with a JWT

``python -m bench._airflow --serve`` is the runner's own process: one JSON job per stdin line
({"dag_file", "dag_id", "logical_date", "result", "env"}); results are written atomically.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, check: Any, timeout: float, poll_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found:
            return found
        time.sleep(poll_s)
    raise SystemExit(f"benchmark: no {what} within {timeout:.0f}s")


def stop(process: subprocess.Popen[Any] | None) -> None:
    """Kill ``process`` and its process group (every process here starts its own session, so the
    group is exactly what it forked: uvicorn workers, OpenLineage's process pool…)."""
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(
            process.pid, signal.SIGKILL
        )  # Airflow ignores SIGTERM; the gate service has nothing to flush
    process.wait(timeout=30)


# ------------------------------------------------------------------ the gate service


@dataclass
class GateService:
    base_url: str
    tokens: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    counts_file: Path | None = None

    @classmethod
    def start(
        cls,
        root: Path,
        database_url: str | None = None,
        config: Mapping[str, Any] | None = None,
        count_statements: bool = False,
    ) -> GateService:
        """`gatehouse init --example`, tokens for etl-bot (request) and bob (decide), ``config`` as
        service.yaml, then serve — with ``count_statements``, through bench._counting_serve (the
        same app, counting the store's SQL statements)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
        env["GATEHOUSE_HOME"] = str(root / "gatehouse")
        if database_url:
            env["GATEHOUSE_DATABASE_URL"] = database_url
        gatehouse = str(BIN / "gatehouse")
        subprocess.run([gatehouse, "init", "--example"], env=env, check=True, capture_output=True)
        if config:
            (root / "gatehouse" / "service.yaml").write_text(json.dumps(dict(config)), encoding="utf-8")
        tokens = {}
        # The sandbox's --as stands in for signing in: frank (an admin) issues the pipeline's
        # token, bob his own (the CLI knows its caller from the OS account, never from $USER).
        for who, scope, issuer in (("etl-bot", "request", "frank"), ("bob", "decide", "bob")):
            created = subprocess.run(
                [gatehouse, "--as", issuer, "token", "create", "--principal", who, "--scope", scope],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            tokens[who] = created.stdout.strip().splitlines()[-1]
        port = free_port()
        log = root / "serve.log"
        command = [gatehouse, "serve", "--port", str(port), "--log-level", "warning"]
        counts_file = None
        if count_statements:
            counts_file = root / "statements.json"
            env["GATEHOUSE_BENCH_COUNTS"] = str(counts_file)
            command = [sys.executable, "-m", "bench._counting_serve", "--port", str(port)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
            )
        service = cls(f"http://127.0.0.1:{port}", tokens, process, log, counts_file)
        try:
            wait_until(
                "gate service", lambda: httpx.get(f"{service.base_url}/healthz", timeout=2).is_success, 90
            )
        except BaseException:
            stop(process)
            raise
        return service

    def client(self, who: str, timeout: float = 60) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def statements(self) -> dict[str, int]:
        """The store's SQL statements so far, by kind (only with ``count_statements``)."""
        assert self.counts_file is not None
        before = self.counts_file.stat().st_mtime
        wait_until(
            "fresh statement counts",
            lambda: self.counts_file and self.counts_file.stat().st_mtime > before,
            10,
        )
        counts: dict[str, int] = json.loads(self.counts_file.read_text())
        return counts

    def waiting_gates(self) -> int:
        return int(httpx.get(f"{self.base_url}/healthz", timeout=10).json()["waiting_gates"])


# ------------------------------------------------------------------ Airflow


def airflow_home(root: Path, dag_files: Mapping[str, str]) -> dict[str, str]:
    """A migrated AIRFLOW_HOME (SQLite) with ``dag_files`` in its dags folder; returns its env."""
    dags = root / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    for name, text in dag_files.items():
        (dags / name).write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "GATEHOUSE_"))}
    env |= {
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__OPENLINEAGE__DISABLED": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__EXPOSE_CONFIG": "False",
    }
    subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=900
    )
    return env


@dataclass
class AirflowApi:
    """`airflow api-server` (core API) sharing the runner's metadata DB; all users are admins."""

    base_url: str
    token: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, env: dict[str, str], log: Path) -> AirflowApi:
        port = free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(BIN / "airflow"),
                    "api-server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "--apps",
                    "core",
                    "-w",
                    "1",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(
                "Airflow API server",
                lambda: httpx.get(f"{base}/api/v2/monitor/health", timeout=5).is_success,
                600,
                0.5,
            )
            token = httpx.get(f"{base}/auth/token", timeout=30).json()["access_token"]
        except BaseException:
            stop(process)
            raise
        return cls(base, token, process)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )

    @staticmethod
    def ti_path(dag_id: str, run_id: str, task_id: str) -> str:
        return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"


# ------------------------------------------------------------------ the dag.test() runner


@dataclass
class Job:
    result: Path
    records: Path

    def wait(self, timeout: float, runner: DagRunner) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.result.exists():
            if runner.process.poll() is not None:
                raise SystemExit(f"benchmark: the Airflow runner died; see {runner.log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"benchmark: a DAG run did not end within {timeout:.0f}s; see {runner.log}")
            time.sleep(0.05)
        data: dict[str, Any] = json.loads(self.result.read_text())
        if data.get("error"):
            raise SystemExit(f"benchmark: the DAG run failed:\n{data['error']}")
        return data

    def records_now(self) -> list[dict[str, Any]]:
        if not self.records.exists():
            return []
        return [json.loads(line) for line in self.records.read_text().splitlines() if line.strip()]


class DagRunner:
    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.workdir = workdir
        self.log = workdir / "runner.log"
        self._jobs = count()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench._airflow", "--serve"],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
                start_new_session=True,  # its own process group: close() also ends what it forked
            )
        self.dags = Path(env["AIRFLOW__CORE__DAGS_FOLDER"])

    def submit(self, dag_file: str, dag_id: str, logical_date: datetime, **env: str) -> Job:
        n = next(self._jobs)
        job = Job(self.workdir / f"job-{n}.json", self.workdir / f"job-{n}.jsonl")
        line = {
            "dag_file": str(self.dags / dag_file),
            "dag_id": dag_id,
            "logical_date": logical_date.isoformat(),
            "result": str(job.result),
            "env": {"BENCH_OUT": str(job.records), **env},
        }
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(line) + "\n").encode())
        self.process.stdin.flush()
        return job

    def close(self) -> None:
        """End the runner and everything it forked (e.g. OpenLineage's process pool)."""
        stop(self.process)


@contextmanager
def _environment(changes: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_modules = count()


def _run_job(job: Mapping[str, Any]) -> dict[str, Any]:
    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG
    from airflow.utils.session import create_session

    with _environment(job["env"]):
        spec = importlib.util.spec_from_file_location(f"gh_bench_{next(_modules)}", job["dag_file"])
        if spec is None or spec.loader is None:
            raise ImportError(job["dag_file"])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dag = next(v for v in vars(module).values() if isinstance(v, DAG) and v.dag_id == job["dag_id"])
        when = datetime.fromisoformat(job["logical_date"])
        dag_run = dag.test(logical_date=when, run_after=when)
        with create_session() as session:
            run = session.get(DagRun, dag_run.id)
            assert run is not None
            states = {
                ti.task_id: str(getattr(ti.state, "value", ti.state))
                for ti in run.get_task_instances(session=session)
            }
            return {"run_id": run.run_id, "states": states}


def serve() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            result = _run_job(job)
        except BaseException:
            result = {"error": traceback.format_exc()}
        partial = Path(job["result"] + ".partial")
        partial.write_text(json.dumps(result))
        partial.replace(job["result"])


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
