"""The end-to-end demo behind ``python -m examples.airflow_pii_export``.

Everything real, in a fresh home: `gatehouse init`, tokens, `gatehouse serve`, `airflow db
migrate`, then `airflow dags test gatehouse_pii_export`, which stops at the gate until a person
approves it through the service's API (what the console and Slack buttons call).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
DAG_ID = "gatehouse_pii_export"


def step(title: str) -> None:
    print(f"\n\033[1m── {title}\033[0m", flush=True)


def run(args: list[str], env: dict[str, str], *, show: str = "", expect: int = 0) -> str:
    print(f"$ {show or shlex.join(args)}", flush=True)
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != expect:
        sys.exit(f"demo: `{show or shlex.join(args)}` exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Any, timeout: float, process: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            sys.exit(f"demo: stopped before {what} (exit {process.returncode})")
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found:
            return found
        time.sleep(0.3)
    sys.exit(f"demo: no {what} within {timeout:.0f}s")


def decide(base: str, token: str, gate_id: str, decision: str, comment: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/gates/{gate_id}/decisions",
        json={"decision": decision, "comment": comment},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def main(dag_file: Path, home: Path) -> None:
    parser = argparse.ArgumentParser(description="Run the Airflow pii-export example end to end.")
    parser.add_argument("--wait", action="store_true", help="do not approve: wait for you to decide")
    options = parser.parse_args()

    shutil.rmtree(home, ignore_errors=True)  # every run starts clean
    dags, exports = home / "dags", home / "exports"
    for folder in (dags, exports):
        folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEHOUSE_", "AIRFLOW_CONN_"))}
    env |= {
        "GATEHOUSE_HOME": str(home / "gatehouse"),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "GATEHOUSE_DEMO_EXPORT_DIR": str(exports),
    }
    gatehouse = str(BIN / "gatehouse")

    step("A Gatehouse home with the example policy and directory")
    run([gatehouse, "init", "--example"], env, show="gatehouse init --example")
    step("Tokens: the pipeline's (etl-bot, may open gates; frank, an admin, creates it) and two people's")
    tokens = {  # a person creates their own token; the sandbox's --as stands in for signing in
        who: run(
            [gatehouse, "--as", issuer, "token", "create", "--principal", who, "--scope", scope],
            env,
            show=f"gatehouse --as {issuer} token create --principal {who} --scope {scope}",
        )
        for who, scope, issuer in (
            ("etl-bot", "request", "frank"),
            ("alice", "decide", "alice"),
            ("bob", "decide", "bob"),
        )
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    step(f"The gate service on {base}")
    print(f"$ gatehouse serve --port {port} &", flush=True)
    with (home / "serve.log").open("wb") as log:
        serve = subprocess.Popen([gatehouse, "serve", "--port", str(port)], env=env, stdout=log, stderr=log)
    dag_run: subprocess.Popen[bytes] | None = None
    try:
        wait_for("gate service", lambda: httpx.get(f"{base}/healthz", timeout=2).is_success, 60, serve)
        step("Airflow: a metadata database, and this DAG in the dags folder")
        shutil.copy(dag_file, dags / dag_file.name)
        run([str(BIN / "airflow"), "db", "migrate"], env, show="airflow db migrate")

        step(f"Run the DAG (the pipeline holds etl-bot's token): airflow dags test {DAG_ID}")
        run_env = env | {"GATEHOUSE_URL": base, "GATEHOUSE_TOKEN": tokens["etl-bot"]}
        print(f"$ GATEHOUSE_URL={base} GATEHOUSE_TOKEN=gh_… airflow dags test {DAG_ID} &", flush=True)
        with (home / "dag-run.log").open("wb") as log:
            dag_run = subprocess.Popen(
                [str(BIN / "airflow"), "dags", "test", DAG_ID], env=run_env, stdout=log, stderr=log
            )
        bob = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens['bob']}"}, timeout=30)

        def pending() -> dict[str, Any] | None:
            gates = bob.get("/v1/gates", params={"status": "PENDING"}).json()
            return next((g for g in gates if DAG_ID in (g["request"].get("idempotency_key") or "")), None)

        gate = wait_for("gate from the DAG", pending, 300, dag_run)
        request = gate["request"]
        print(f"gate {gate['id']}: {request['action']} {request['target']} for {request['requester']}")
        names = [f"{d['namespace']}/{d['name']}#{','.join(d['tags'])}" for d in request["datasets"]]
        print(f"  datasets {', '.join(names)}")
        print(f"  rule {gate['rule']}: {gate['explanation']}")
        time.sleep(5)
        assert bob.get(f"/v1/gates/{gate['id']}").json()["status"] == "PENDING"
        assert not (exports / "customers.csv").exists()
        print("5 s later: still PENDING, and export_customers has not run — the DAG is stopped at the gate")

        if options.wait:
            step("Your turn: approve (or reject) as bob")
            for verdict in ("approve", "reject"):
                body = f'{{"decision": "{verdict}"}}'
                print(
                    f"$ curl -X POST {base}/v1/gates/{gate['id']}/decisions "
                    f"-H 'Content-Type: application/json' -H 'Authorization: Bearer {tokens['bob']}' "
                    f"-d '{body}'"
                )
        else:
            step("alice, who asked, tries to approve: refused")
            refused = decide(base, tokens["alice"], gate["id"], "approve", "")
            print(f"{refused.status_code}: {refused.json()['detail']}")
            step("bob (data-governance) approves")
            approved = decide(base, tokens["bob"], gate["id"], "approve", "aggregates only, fine")
            print(f"{approved.status_code}: {approved.json()['status']}")
        code = dag_run.wait(timeout=3600 if options.wait else 300)
        step(f"The DAG run ended (exit {code})")
        for line in (home / "dag-run.log").read_text(errors="replace").splitlines():
            if "exported " in line or "gatehouse: gate" in line or "DagRun Finished" in line:
                message = line.split("] ", 1)[-1].rsplit(" [", 1)[0] if "] " in line else line
                print("  " + message.strip()[:200])
        csv = exports / "customers.csv"
        print(
            f"\n{csv}:\n{csv.read_text()}"
            if csv.exists()
            else "\nno export was written (the gate did not pass)"
        )
    finally:
        for process in (dag_run, serve):
            if process is not None and process.poll() is None:
                process.kill()  # Airflow ignores SIGTERM
                process.wait(timeout=30)
