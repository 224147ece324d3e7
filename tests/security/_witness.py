"""A real, separate witness for the attacks: `gatehouse witness init | add-log | serve` in
subprocesses, with its own home (its key and state never in the log's home or database)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.service.conftest import free_port

GATEHOUSE = [sys.executable, "-m", "gate_core.cli"]


def run_witness_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}  # not the log's home
    done = subprocess.run(
        [*GATEHOUSE, "witness", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


@dataclass
class WitnessProcess:
    home: Path
    name: str
    port: int
    verifier_key: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def create(cls, home: Path, name: str, *log_keys: str) -> WitnessProcess:
        made = run_witness_cli(home, "init", "--name", name)
        assert made.returncode == 0, made.stderr
        for key in log_keys:
            added = run_witness_cli(home, "add-log", key)
            assert added.returncode == 0, added.stderr
        return cls(home, name, free_port(), made.stdout.strip().splitlines()[-1])

    def start(self) -> WitnessProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
        log = (self.home.parent / f"{self.home.name}.log").open("ab")
        self.process = subprocess.Popen(
            [*GATEHOUSE, "witness", "serve", "--home", str(self.home), "--port", str(self.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"witness {self.name} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def held_size(self, origin: str) -> int | None:
        """The size the witness holds for ``origin``, as `gatehouse witness show` prints it."""
        shown = run_witness_cli(self.home, "show")
        assert shown.returncode == 0, shown.stderr
        for line in shown.stdout.splitlines():
            if line.startswith(f"log {origin}: cosigned size "):
                return int(line.rsplit(" ", 1)[1])
        return None

    def refusals(self) -> list[str]:
        shown = run_witness_cli(self.home, "show")
        return [line for line in shown.stdout.splitlines() if line.startswith("refused ")]

    def entry(self) -> dict[str, str]:
        """This witness as the log's witnesses.yaml lists it."""
        return {"url": self.url, "key": self.verifier_key}
