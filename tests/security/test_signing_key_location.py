"""Adversary O with the home directory: a key beside the database lets whoever rewrites the log
re-sign it. Property 5 needs the key kept elsewhere: `init` warns when they share a directory,
and $GATEHOUSE_SIGNING_KEY keeps the key outside the home (a configured key that is missing is
an error, never a silent switch to signing nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Report

GATEHOUSE = [sys.executable, "-m", "gate_core.cli"]


def _run(home: Path, *args: str, user: str = "alice", **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "GATEHOUSE_HOME": str(home), **env}
    environ.pop("GATEHOUSE_DATABASE_URL", None)
    environ.pop("GATEHOUSE_SIGNING_KEY", None)
    environ.update(env)
    command = [*GATEHOUSE, "--as", user, *args]  # example homes are sandboxes: --as chooses the person
    proc = subprocess.run(command, capture_output=True, text=True, env=environ, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_init_warns_when_the_key_sits_beside_the_database(tmp_path: Path, report: Report) -> None:
    home = tmp_path / "home"
    made = _run(home, "init")
    assert made.returncode == 0
    assert "WARNING: the audit signing key" in made.stderr
    assert "GATEHOUSE_SIGNING_KEY" in made.stderr
    sandbox = _run(tmp_path / "sandbox", "init", "--example")
    assert "WARNING" not in sandbox.stderr
    report("Tamper O (sqlite): signing key beside the database at init", "warned", "", "warned")


def test_the_key_can_live_outside_the_home(tmp_path: Path, report: Report) -> None:
    home, vault = tmp_path / "home", tmp_path / "vault"
    vault.mkdir(mode=0o700)
    key = vault / "audit-signing.key"
    made = _run(home, "init", "--example", GATEHOUSE_SIGNING_KEY=str(key))
    assert made.returncode == 0, made.stderr
    assert key.exists() and not (home / "audit-signing.key").exists()
    opened = _run(home, "request", "--action", "export", "--target", "s3://x", GATEHOUSE_SIGNING_KEY=str(key))
    assert opened.returncode == 0, opened.stderr
    verified = _run(home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "signed checkpoint(s) verified" in verified.stdout

    moved = _run(home, "list", GATEHOUSE_SIGNING_KEY=str(vault / "gone.key"))
    assert moved.returncode == 1
    assert "GATEHOUSE_SIGNING_KEY names" in moved.stderr
    report(
        "Tamper O (sqlite): signing key kept outside the home; configured key missing",
        "signs from outside; missing key is an error",
        "",
        "error, never a skip",
    )
