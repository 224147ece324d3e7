"""The quickstart, run for you: `make demo`.

Runs the real `gatehouse` CLI on the embedded default (a SQLite file in a fresh
.gatehouse-dev/quickstart home), printing every command as you would type it:

  alice opens a pii export gate → alice approving it is refused → etl-bot (a service) is refused →
  bob approves → a prod redeploy needs two distinct people → the audit trail verifies.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".gatehouse-dev" / "quickstart"
GATEHOUSE = str(Path(sys.executable).parent / "gatehouse")


def step(title: str) -> None:
    print(f"\n\033[1m── {title}\033[0m")


def gatehouse(*args: str, user: str = "alice", expect: int = 0) -> str:
    print(f"$ gatehouse --as {user} {shlex.join(args)}")
    env = {k: v for k, v in os.environ.items() if k != "GATEHOUSE_DATABASE_URL"}
    env.update(GATEHOUSE_HOME=str(HOME))
    # The quickstart's home is a sandbox (`init --example`): --as chooses who acts, unverified.
    command = [GATEHOUSE, "--as", user, *args]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    for line in (proc.stdout + proc.stderr).rstrip().splitlines():
        print(f"  {line}")
    if proc.returncode != expect:
        sys.exit(f"quickstart: expected exit {expect}, got {proc.returncode}; stopping")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def main() -> None:
    shutil.rmtree(HOME, ignore_errors=True)  # every run starts clean, so running it again works
    step("Create a home with the example policy and directory (SQLite, no server)")
    gatehouse("init", "--example")

    step("alice asks to export a dataset tagged pii")
    gate = gatehouse(
        "request",
        "--action",
        "export",
        "--target",
        "s3://exports/customers.csv",
        "--dataset",
        "warehouse/customers#pii",
        "--reason",
        "quarterly churn report",
    )

    step("alice tries to approve her own request: refused (exit 1)")
    gatehouse("approve", gate, user="alice", expect=1)
    step("etl-bot, a service principal, tries to approve: refused (exit 1)")
    gatehouse("approve", gate, user="etl-bot", expect=1)
    step("bob (data-governance) approves")
    gatehouse("approve", gate, "--comment", "aggregates only, fine", user="bob")

    step("A prod redeploy needs two distinct approvers")
    redeploy = gatehouse(
        "request",
        "--action",
        "redeploy",
        "--target",
        "models/churn",
        "--env",
        "prod",
        "--param",
        "version=2.4.1",
        "--reason",
        "retrained on October data",
    )
    gatehouse("approve", redeploy, user="bob")
    step("bob clicking again does not count twice (exit 1)")
    gatehouse("approve", redeploy, user="bob", expect=1)
    gatehouse("approve", redeploy, "--comment", "eval metrics look good", user="dave")

    step("The trail: every request, refusal and decision, hash-chained and signed")
    gatehouse("list")
    gatehouse("audit", "verify")
    export = HOME / "audit.csv"
    gatehouse("audit", "export", "--format", "csv", "--output", str(export))
    print(f"\nDone. Try it yourself:  export GATEHOUSE_HOME={HOME}; PATH={Path(GATEHOUSE).parent}:$PATH")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("\nquickstart: interrupted; run `make demo` again to start over")
