"""The main job (`make demo`) end to end, as the README promises: serve on SQLite, the Airflow DAG,
the Prefect flow and the Dagster job each stop at a gate; bob approves through the API; the audit
verifies and the lineage answer names each run, the approver and the dataset. And Ctrl-C while the
pipelines wait leaves no process behind, after which it runs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600


def main_job(home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GATEHOUSE_DEMO_HOME": str(home)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "examples.main_job", "--auto-approve-as", "bob", "--port", "0"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def processes_under(home: Path) -> list[str]:
    """Command lines of live processes started for this demo home (each has a path under it in its
    environment: GATEHOUSE_HOME, AIRFLOW_HOME…), so a leftover is found wherever it was reparented."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if f"={home}".encode() in environ and "pytest" not in cmdline:
            found.append(cmdline)
    return found


@pytest.mark.slow
def test_ctrl_c_while_waiting_leaves_nothing_behind_and_the_demo_then_runs_through(tmp_path: Path) -> None:
    home, log = tmp_path / "demo", tmp_path / "interrupted.log"
    job = main_job(home, log)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        # Airflow's task process ignores SIGTERM: the one most likely to be left behind.
        while "airflow: waiting for approval" not in log.read_text(errors="replace"):
            assert job.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        job.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the job
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert "interrupted; stopping everything" in log.read_text(errors="replace")
    assert "Traceback" not in log.read_text(errors="replace")
    deadline = time.monotonic() + 10
    while (left := processes_under(home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []

    log = tmp_path / "complete.log"
    job = main_job(home, log)
    try:
        assert job.wait(timeout=TIMEOUT_S) == 0, log.read_text(errors="replace")
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    output = log.read_text(errors="replace")
    for orchestrator in ("airflow", "prefect", "dagster"):
        assert f"{orchestrator}: waiting for approval (gate g" in output, output
        assert f"bob approves the {orchestrator} gate: HTTP 200 APPROVED" in output, output
    assert "airflow: finished | prefect: finished | dagster: finished" in output, output
    assert "audit log intact" in output, output
    lineage = output.split("gatehouse lineage accessed warehouse/customers", 1)[1]
    exports = [line for line in lineage.splitlines() if " export " in line]
    assert {line.split()[5].split(":")[0] for line in exports} == {"airflow", "prefect", "dagster"}, lineage
    assert all("warehouse/customers" in line and "by bob" in line for line in exports), lineage
    assert processes_under(home) == []
