"""Stopping `gatehouse serve` (SIGTERM, or Ctrl-C's SIGINT) while clients are parked in long-polls:
each wait is answered at once with its gate's current state — still PENDING, no error — and the
process exits promptly instead of waiting out every open 25-second wait. Nothing changes."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gate_core import GateStatus, Settings, open_gatekeeper
from tests.service.conftest import ServerProcess, make_tokens
from tests.service.test_api import PII_EXPORT

PARKED_S = 25.0  # GateTrigger's poll timeout: what a shutdown used to wait out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_answers_parked_long_polls_and_exits_promptly(
    sig: signal.Signals, start_server: Callable[..., ServerProcess], service_settings: Settings
) -> None:
    gatekeeper = open_gatekeeper(service_settings)
    tokens = make_tokens(gatekeeper)
    gatekeeper.store.close()
    server = start_server()
    bot = {"Authorization": f"Bearer {tokens['bot']}"}
    gates = [
        httpx.post(f"{server.base_url}/v1/gates", json={**PII_EXPORT, "reason": f"r{i}"}, headers=bot).json()
        for i in range(3)
    ]
    answers: dict[str, Any] = {}

    def wait_one() -> None:
        answers["one"] = httpx.get(
            f"{server.base_url}/v1/gates/{gates[0]['id']}/wait",
            params={"timeout": PARKED_S},
            headers=bot,
            timeout=PARKED_S + 10,
        )

    def wait_many() -> None:
        answers["many"] = httpx.post(
            f"{server.base_url}/v1/gates/wait",
            json={"ids": [g["id"] for g in gates[1:]], "timeout": PARKED_S},
            headers=bot,
            timeout=PARKED_S + 10,
        )

    threads = [threading.Thread(target=wait_one), threading.Thread(target=wait_many)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.base_url}/healthz").json()["waiting_gates"] < len(gates):
        assert time.monotonic() < deadline, "the long-polls never parked"
        time.sleep(0.05)

    signalled = time.monotonic()
    server.process.send_signal(sig)
    for thread in threads:
        thread.join(timeout=PARKED_S)
    answered_s = time.monotonic() - signalled
    server.process.wait(timeout=PARKED_S)
    exited_s = time.monotonic() - signalled

    assert answers["one"].status_code == 200 and answers["one"].json()["status"] == "PENDING"
    assert answers["many"].status_code == 200
    assert answers["many"].json()["changed"] == []
    assert sorted(answers["many"].json()["pending"]) == sorted(g["id"] for g in gates[1:])
    assert answered_s < 5, f"long-polls answered {answered_s:.1f}s after {sig.name}"
    assert exited_s < 10, f"serve exited {exited_s:.1f}s after {sig.name}"

    gatekeeper = open_gatekeeper(service_settings)
    try:
        assert all(gatekeeper.get(g["id"]).status is GateStatus.PENDING for g in gates)
        assert gatekeeper.audit.verify().ok
    finally:
        gatekeeper.store.close()
