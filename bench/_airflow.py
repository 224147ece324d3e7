"""Plumbing for the Airflow benchmarks: a gate service, an Airflow home, a ``dag.test()`` runner,
and Airflow's own REST API server.

    GateService.start(root)        `gatehouse init --example` + tokens + `gatehouse serve`
    airflow_home(root, dag_text)   AIRFLOW_HOME with the DAG file in its dags folder, migrated
    DagRunner(env)                 one long-lived process running DAGs with dag.test(), in order
                                   (Airflow's in-process execution API starts once, not per run)
    AirflowApi.start(env)          `airflow api-server` on the same metadata DB, with a JWT
    stack_env(...), spawn(...)     a real deployment's environment (PostgreSQL metadata DB,
                                   LocalExecutor, execution API) and its long-lived processes
    approve_gate / approve_hitl    the two ways a person answers: Gatehouse's decisions endpoint,
                                   Airflow's Required Actions (``PATCH …/hitlDetails``)
    alternate, compare             samples of the systems taken in turns; the figures and ratios

``python -m bench._airflow --serve`` is the runner's own process: one JSON job per stdin line
({"dag_file", "dag_id", "logical_date", "result", "env"}); results are written atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.fernet import Fernet

from bench._common import Figure, at_least, at_most, info, percentile

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


def gate_of_run(bot: httpx.Client, run_id: str) -> str | None:
    """The pending gate a GateOperator of DAG run ``run_id`` opened (its idempotency key names the run)."""
    for gate in bot.get("/v1/gates", params={"status": "PENDING"}).json():
        if run_id in (gate["request"].get("idempotency_key") or ""):
            return str(gate["id"])
    return None


def approve_gate(bob: httpx.Client, gate_id: str) -> float:
    """Approve as bob the way the console and the Slack button do; returns when the answer arrived
    (``time.time()``: the decision is committed then)."""
    response = bob.post(f"/v1/gates/{gate_id}/decisions", json={"decision": "approve"})
    decided_at = time.time()
    if response.status_code != 200 or response.json()["status"] != "APPROVED":
        raise SystemExit(f"benchmark invalid: approving {gate_id} answered {response.status_code}")
    return decided_at


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
    """`airflow api-server` sharing the runner's metadata DB; the token is an anonymous admin's
    (``simple_auth_manager_all_admins``) unless the deployment has users (``airflow_users``)."""

    base_url: str
    token: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(
        cls,
        env: dict[str, str],
        log: Path,
        port: int | None = None,
        apps: str = "core",
        user: tuple[str, str] | None = None,
    ) -> AirflowApi:
        """Serve ``apps`` ("core": the REST API only; "all" adds the execution API that a real
        deployment's tasks and triggerer call) on ``port`` (a free one by default); the client
        acts as ``user`` (name, password) when given."""
        port = port or free_port()
        command = [str(BIN / "airflow"), "api-server", "-H", "127.0.0.1", "-p", str(port)]
        started = spawn("api-server", [*command, "--apps", apps, "-w", "1"], env, log.parent, log)
        process = started.process
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until("Airflow API server", lambda: api_healthy(base, apps), 600, 0.5)
            api = cls(base, "", process)
            api.token = (
                api.sign_in(*user)
                if user
                else httpx.get(f"{base}/auth/token", timeout=30).json()["access_token"]
            )
        except BaseException:
            stop(process)
            raise
        return api

    def sign_in(self, username: str, password: str) -> str:
        """A token for ``username``, as the UI's login form gets one."""
        response = httpx.post(
            f"{self.base_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)

    @staticmethod
    def ti_path(dag_id: str, run_id: str, task_id: str) -> str:
        return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"


def approve_hitl(airflow: httpx.Client, ti_path: str) -> float:
    """Approve an ApprovalOperator task as the Required Actions UI does; returns when the answer
    arrived (``time.time()``: the response is committed then)."""
    response = airflow.patch(
        f"{ti_path}/-1/hitlDetails", json={"chosen_options": ["Approve"], "params_input": {}}
    )
    decided_at = time.time()
    if response.status_code != 200:
        raise SystemExit(f"benchmark invalid: Airflow answered {response.status_code}: {response.text[:300]}")
    return decided_at


def hitl_parked(airflow: httpx.Client, ti_path: str) -> bool:
    """The ApprovalOperator task waits for its answer (AWAITING_INPUT on 3.3, DEFERRED before)."""
    response = airflow.get(ti_path)
    return response.is_success and response.json().get("state") in {"awaiting_input", "deferred"}


IN_WORKER = "gatehouse_inworker"  # GateOperator(deferrable=False): the task itself waits
# @gated(deferrable=False): gate and step are one task, so the clock stops in that task's own
# function, not in a downstream task — no scheduler pass and no task start-up in between.
GATED = "gatehouse_gated"
KINDS = ("gatehouse", "airflow", IN_WORKER, GATED)
# What each system's sample writes when its clock stops: the downstream task's first statement,
# or, for @gated, the gated function's own first statement.
CLOCK_STOP = {
    "gatehouse": "downstream_started",
    "airflow": "downstream_started",
    IN_WORKER: "downstream_started",
    GATED: "step_started",
}
TARGET_P50_S = 0.25
TARGET_RATIO = 10.0


def alternate(
    samples: int, sample: Callable[[str], float], kinds: Sequence[str] = KINDS
) -> dict[str, list[float]]:
    """``samples`` of each kind, taken in turns, each round starting with the next kind, so every
    system sees the same machine load (and the same warm-up debt)."""
    measured: dict[str, list[float]] = {kind: [] for kind in kinds}
    for i in range(samples):
        first = i % len(kinds)
        for kind in (*kinds[first:], *kinds[:first]):
            measured[kind].append(sample(kind))
        print(
            f"  sample {i + 1}/{samples}: "
            + ", ".join(f"{kind} {measured[kind][-1]:.3f} s" for kind in kinds),
            flush=True,
        )
    return measured


def compare(measured: Mapping[str, Sequence[float]]) -> list[Figure]:
    """p50/p99 of each system and the ratios to Airflow's approval, against the targets (Gatehouse
    p50, ratio p50) — the deferred GateOperator, then the in-worker one and the ``@gated`` step
    when they were measured. Airflow's side is always decision → its downstream task running, the
    step an ApprovalOperator guards; the ``@gated`` rows stop the clock in the gated step itself."""
    anchor = measured["airflow"]
    label = "Airflow 3.3 ApprovalOperator (REST API): decision → downstream"

    def versus_anchor(name: str, versus: str, ours: Sequence[float]) -> list[Figure]:
        return [
            at_most(f"{name} p50", percentile(ours, 50), "s", TARGET_P50_S),
            info(f"{name} p99", percentile(ours, 99), "s"),
            at_least(
                f"ratio p50 ({versus})", percentile(anchor, 50) / percentile(ours, 50), "×", TARGET_RATIO
            ),
            info(f"ratio p99 ({versus})", percentile(anchor, 99) / percentile(ours, 99), "×"),
        ]

    deferred = versus_anchor(
        "Gatehouse GateOperator: decision → downstream", "ApprovalOperator ÷ Gatehouse", measured["gatehouse"]
    )
    figures = [
        *deferred[:2],
        info(f"{label} p50", percentile(anchor, 50), "s"),
        info(f"{label} p99", percentile(anchor, 99), "s"),
        *deferred[2:],
    ]
    if in_worker := measured.get(IN_WORKER):
        figures += versus_anchor(
            "Gatehouse GateOperator in the worker (deferrable=False): decision → downstream",
            "ApprovalOperator ÷ Gatehouse in the worker",
            in_worker,
        )
    if gated := measured.get(GATED):
        figures += versus_anchor(
            "Gatehouse @gated step (waits in its worker): decision → the gated step's code running",
            "ApprovalOperator decision → downstream ÷ @gated decision → step code",
            gated,
        )
    return figures


def scratch_root(stack: contextlib.ExitStack, workdir: Path | None, prefix: str) -> Path:
    """Where a benchmark's homes and logs go: kept under ``workdir``, else a temp dir ``stack`` removes."""
    if workdir is None:
        return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    workdir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=workdir))


def comparison_parser(module: str, doc: str, quick: int) -> argparse.ArgumentParser:
    """The options both comparison benchmarks take: how many samples, and where the logs go."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{module}", description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{quick} samples per system")
    parser.add_argument("--samples", type=int, help="samples per system (default 20)")
    parser.add_argument("--workdir", type=Path, help="keep homes and logs here (default: a temp dir)")
    return parser


# ------------------------------------------------------------------ a real deployment


@dataclass
class Started:
    """A long-lived process of the stack, in its own session, with its output in ``log``."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.log}):\n" + "\n".join(text.splitlines()[-lines:])


def spawn(
    name: str, command: list[str], env: Mapping[str, str], workdir: Path, log: Path | None = None
) -> Started:
    """Start ``command`` in its own session (a process group: killing it reaches all it forks)."""
    log = log or workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    return Started(name, process, log)


def api_healthy(base_url: str, apps: str = "all") -> bool:
    """The REST API answers, and the execution API too when this server runs it."""
    paths = ["/api/v2/monitor/health"] + (["/execution/health"] if apps != "core" else [])
    try:
        return all(httpx.get(f"{base_url}{path}", timeout=5).is_success for path in paths)
    except httpx.TransportError:
        return False


def airflow_users(root: Path, names: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Admin users of Airflow's simple auth manager (settings, passwords): with users, a DAG run
    triggered through the API records who triggered it, and an answer records who gave it."""
    passwords = {name: secrets.token_urlsafe(16) for name in names}
    path = root / "airflow-passwords.json"
    path.write_text(json.dumps(passwords), encoding="utf-8")
    settings = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{name}:admin" for name in names),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(path),
    }
    return settings, passwords


def stack_env(
    root: Path,
    database_url: str,
    api_port: int,
    connection: Mapping[str, Any] | None = None,
    settings: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment every process of a real deployment shares: a PostgreSQL metadata DB, the
    LocalExecutor, the execution API on ``api_port``, one Fernet key (trigger kwargs are
    encrypted) and one JWT secret (the executor signs what the api-server checks); ``connection``
    as ``gatehouse_default`` (the production path), ``settings`` last."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "GATEHOUSE_"))}
    env = keep | {
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url.replace("postgresql://", "postgresql+psycopg://"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
        "AIRFLOW__OPENLINEAGE__DISABLED": "True",
    }
    if connection is not None:
        env["AIRFLOW_CONN_GATEHOUSE_DEFAULT"] = json.dumps(dict(connection))
    return env | dict(settings or {})


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
