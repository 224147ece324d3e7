"""The main job: `make demo`. Three real pipelines stop at approval gates on the embedded default.

    gatehouse serve (SQLite, example policy + directory, console on localhost)
      ├── Airflow:  airflow dags test gatehouse_pii_export   (GateOperator defers)
      ├── Prefect:  the pii-export flow                      (run shows Paused)
      └── Dagster:  materialize customers → customers_export (the asset waits in its step)

Each pipeline holds only the pipeline token (etl-bot) and asks on behalf of alice. A person
approves in the console (sign in as bob) — or, unattended, `--auto-approve-as bob` decides
through the API. Then: `gatehouse audit verify`, and who accessed the pii dataset.

Everything lives in .gatehouse-dev/demo and starts clean on every run; Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
HOME = Path(os.environ.get("GATEHOUSE_DEMO_HOME") or ROOT / ".gatehouse-dev" / "demo")  # wiped on each run
BIN = Path(sys.executable).parent
DATASET = "warehouse/customers"


def say(text: str) -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say(f"\n\033[1m── {title}\033[0m")


@dataclass
class Pipeline:
    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    gate: dict[str, Any] | None = None
    log: Path = field(default_factory=Path)

    def start(self) -> None:
        self.log = HOME / f"{self.name}.log"
        with self.log.open("wb") as out:  # its own process group: Ctrl-C and cleanup reach its children
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )

    @property
    def state(self) -> str:
        if self.process is None:
            return "not started"
        code = self.process.poll()
        if code is None:
            return f"waiting for approval (gate {self.gate['id']})" if self.gate else "starting…"
        return "finished" if code == 0 else f"FAILED (exit {code}, see {self.log})"

    def stop(self) -> None:
        """End the pipeline's whole process group. Its leader may be gone while the group lives
        on (Airflow runs under `sh -c` and ignores SIGTERM), so the group always gets SIGKILL
        after a grace period."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gatehouse(*args: str, env: dict[str, str], user: str = "carol") -> str:
    """Run the CLI as ``user``: the demo home is a sandbox, where ``--as`` chooses the person."""
    proc = subprocess.run(
        [str(BIN / "gatehouse"), "--as", user, *args], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode not in (0, 1):
        sys.exit(f"demo: gatehouse {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stderr + proc.stdout  # stdout last: a token is its last line (stderr: the SANDBOX note)


def pipelines(base: str, token: str, env: dict[str, str]) -> list[Pipeline]:
    common = env | {
        "GATEHOUSE_URL": base,
        "GATEHOUSE_TOKEN": token,
        "GATEHOUSE_REQUESTER": "alice",
        "GATEHOUSE_DEMO_EXPORT_DIR": str(HOME / "exports"),
        "GATEHOUSE_EXAMPLE_EXPORT_DIR": str(HOME / "exports"),
    }
    dags = HOME / "airflow" / "dags"
    dags.mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "airflow_pii_export.py", dags / "airflow_pii_export.py")
    airflow_env = common | {
        "AIRFLOW_HOME": str(HOME / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = str(BIN / "airflow")
    prefect_env = common | {
        "PREFECT_HOME": str(HOME / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_MEMO_STORE_PATH": str(HOME / "prefect" / "memo_store.toml"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    dagster_env = common | {"DAGSTER_HOME": str(HOME / "dagster")}
    (HOME / "dagster").mkdir()
    return [
        Pipeline(
            "airflow",
            ["sh", "-c", f"{airflow} db migrate >/dev/null && {airflow} dags test gatehouse_pii_export"],
            airflow_env,
        ),
        Pipeline(
            "prefect", [sys.executable, "examples/prefect_pii_export.py", "--requester", "alice"], prefect_env
        ),
        Pipeline(
            "dagster",
            [
                str(BIN / "dagster"),
                "asset",
                "materialize",
                "-f",
                "examples/dagster_definitions.py",
                "--select",
                "customers,customers_export",
            ],
            dagster_env,
        ),
    ]


def find_gates(client: httpx.Client, runs: list[Pipeline]) -> None:
    for gate in client.get("/v1/gates", params={"limit": 100}).json():
        for run in runs:
            if run.gate is None and gate["request"]["run"]["orchestrator"] == run.name:
                run.gate = gate


def wait(runs: list[Pipeline], until: str, timeout: float, client: httpx.Client) -> None:
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        find_gates(client, runs)
        status = " | ".join(f"{r.name}: {r.state}" for r in runs)
        if status != last:
            say(f"  {status}")
            last = status
        if any(r.state.startswith("FAILED") for r in runs):
            sys.exit("demo: a pipeline failed; its log is named above")
        if until == "gates" and all(r.gate for r in runs):
            return
        if until == "done" and all(r.state == "finished" for r in runs):
            return
        time.sleep(1)
    sys.exit(f"demo: not all pipelines reached '{until}' within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--auto-approve-as", metavar="PRINCIPAL", help="decide through the API instead of a person"
    )
    parser.add_argument("--port", type=int, default=8080)
    options = parser.parse_args()
    if not options.auto_approve_as and not sys.stdin.isatty():
        say("demo: no terminal to wait for a person at, so bob approves through the API")
        options.auto_approve_as = "bob"

    shutil.rmtree(HOME, ignore_errors=True)
    (HOME / "exports").mkdir(parents=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GATEHOUSE_", "AIRFLOW", "PREFECT_", "DAGSTER"))
    }
    env["GATEHOUSE_HOME"] = str(HOME / "gatehouse")

    step("Gatehouse on the embedded default: SQLite, the example policy and directory")
    gatehouse("init", "--example", env=env)
    token = {
        # Each person creates their own token; frank (gatehouse-admins) creates the pipeline's.
        who: gatehouse(
            "token",
            "create",
            "--principal",
            who,
            "--scope",
            scope,
            env=env,
            user="frank" if who == "etl-bot" else who,
        )
        .strip()
        .splitlines()[-1]
        for who, scope in (("etl-bot", "request"), ("bob", "decide"), ("carol", "decide"))
    }
    port = free_port(options.port)
    base = f"http://127.0.0.1:{port}"
    with (HOME / "serve.log").open("wb") as out:
        server = subprocess.Popen(
            [str(BIN / "gatehouse"), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    runs: list[Pipeline] = []
    try:
        client = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token['carol']}"}, timeout=30
        )
        for _ in range(120):
            try:
                if client.get("/healthz").is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.25)
        say(f"  gate service on {base} (API {base}/v1, console {base}/console)")

        step("Three pipelines, each stopping at a gate (the pipeline token asks on alice's behalf)")
        runs = pipelines(base, token["etl-bot"], env)
        for run in runs:
            run.start()
        wait(runs, "gates", 600, client)
        for run in runs:
            gate = run.gate or {}
            datasets = ", ".join(
                f"{d['namespace']}/{d['name']}#{','.join(d['tags'])}" for d in gate["request"]["datasets"]
            )
            say(
                f"  {run.name}: gate {gate['id']} — {gate['request']['action']} {datasets}; "
                f"{gate['explanation']}"
            )

        step("Waiting for approval in all three orchestrators")
        if options.auto_approve_as:
            approver = options.auto_approve_as
            decider = httpx.Client(
                base_url=base,
                timeout=30,
                headers={"Authorization": f"Bearer {token.get(approver, token['bob'])}"},
            )
            for run in runs:
                answer = decider.post(
                    f"/v1/gates/{(run.gate or {})['id']}/decisions",
                    json={"decision": "approve", "comment": "demo: approved via the API"},
                )
                say(
                    f"  {approver} approves the {run.name} gate: HTTP {answer.status_code} "
                    f"{answer.json().get('status', answer.json().get('detail'))}"
                )
        else:
            say(f"  Open {base}/console, sign in as bob (data governance) and approve the three gates.")
            say("  (alice, the requester, may not approve her own; try it.) Waiting…")
        wait(runs, "done", 1800, client)

        step("gatehouse audit verify")
        say(gatehouse("audit", "verify", env=env).rstrip())
        step(f"Who accessed {DATASET}? (gatehouse lineage accessed {DATASET})")
        say(gatehouse("lineage", "accessed", DATASET, env=env).rstrip())
        say(
            f"\nDone. The console is still at {base}/console until you press Ctrl-C."
            if sys.stdin.isatty() and not options.auto_approve_as
            else "\nDone."
        )
        if sys.stdin.isatty() and not options.auto_approve_as:
            signal.pause()
    except KeyboardInterrupt:
        say("\ndemo: interrupted; stopping everything (run `make demo` again to start over)")
    finally:
        for run in runs:
            run.stop()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # answers open long-polls, then exits
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)  # nothing to lose: every change is committed
                server.wait(timeout=10)


if __name__ == "__main__":
    main()
