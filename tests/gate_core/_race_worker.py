"""Worker for the multi-process race tests (a module, so 'spawn' can import it)."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from gate_core import DecisionRefused, Settings, Verdict, open_gatekeeper
from gate_core.testing import actor


def decide(
    home: str, database_url: str, gate_id: str, principal: str, verdict: str, start: Barrier, results: Any
) -> None:
    settings = Settings(
        home=Path(home),
        database_url=database_url,
        policy_path=Path(home) / "policy.yaml",
        directory_path=Path(home) / "directory.yaml",
    )
    gatekeeper = open_gatekeeper(settings)  # connect and warm up before the starting gun
    gatekeeper.store.get_gate(gate_id)
    start.wait(timeout=120)
    try:
        gate = gatekeeper.decide(gate_id, actor=actor(principal), verdict=Verdict(verdict))
        results.put(("accepted", principal, gate.status.value))
    except DecisionRefused as refusal:
        results.put(("refused", principal, refusal.code))
    except Exception as exc:  # reported to the test, which fails on anything unexpected
        results.put(("error", principal, f"{type(exc).__name__}: {exc}"))
    finally:
        gatekeeper.store.close()
