"""`kill -9` of the gate service while steps wait: every gate and every decision made before
the crash survives, and the waiting client resumes against the restarted service."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from gate_core import GateFilter, GateStatus, HttpGateClient, ServiceUnavailable, open_gatekeeper
from tests.reliability.conftest import Report, example_home
from tests.service.conftest import launch_server, make_tokens, stop_server
from tests.service.test_api import PII_EXPORT


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_of_the_service_loses_nothing(
    backend: str, tmp_path: Path, report: Report, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'gatehouse.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    settings = example_home(tmp_path, url)
    gatekeeper = open_gatekeeper(settings)
    tokens = make_tokens(gatekeeper)
    gatekeeper.store.close()
    server = launch_server(settings, tmp_path / "serve.log")
    port = int(server.base_url.rsplit(":", 1)[1])
    auth = {who: {"Authorization": f"Bearer {token}"} for who, token in tokens.items()}
    try:
        ids = [
            httpx.post(
                f"{server.base_url}/v1/gates", json={**PII_EXPORT, "reason": f"r{i}"}, headers=auth["bot"]
            ).json()["id"]
            for i in range(30)
        ]
        for gate_id in ids[:10]:
            httpx.post(
                f"{server.base_url}/v1/gates/{gate_id}/decisions",
                json={"decision": "approve"},
                headers=auth["bob"],
            ).raise_for_status()
        for gate_id in ids[10:15]:
            httpx.post(
                f"{server.base_url}/v1/gates/{gate_id}/decisions",
                json={"decision": "reject", "comment": "no"},
                headers=auth["carol"],
            ).raise_for_status()
        pending = ids[15:]
        outcome: dict[str, object] = {}

        def waiting_step() -> None:
            client = HttpGateClient(server.base_url, tokens["bot"], retries=3)
            while "gate" not in outcome:
                try:
                    gate = client.wait(pending[0], timeout=5)
                except ServiceUnavailable:
                    outcome["outages"] = int(outcome.get("outages", 0)) + 1  # type: ignore[call-overload]
                    continue
                if gate.status is not GateStatus.PENDING:
                    outcome["gate"] = gate

        waiter = threading.Thread(target=waiting_step)
        waiter.start()
        time.sleep(0.5)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        time.sleep(1.0)  # the waiter now meets a dead port
        restarted_at = time.monotonic()
        server = launch_server(settings, tmp_path / "serve.log", port=port)
        restart_s = time.monotonic() - restarted_at
        httpx.post(
            f"{server.base_url}/v1/gates/{pending[0]}/decisions",
            json={"decision": "approve"},
            headers=auth["carol"],
        ).raise_for_status()
        waiter.join(timeout=60)
        assert outcome.get("gate") is not None, outcome
        assert outcome["gate"].status is GateStatus.APPROVED  # type: ignore[attr-defined]

        gatekeeper = open_gatekeeper(settings)
        try:
            gates = {g.id: g for g in gatekeeper.store.list_gates(GateFilter(limit=100))}
            assert set(gates) == set(ids)
            assert {g for g in ids[:10] if gates[g].status is GateStatus.APPROVED} == set(ids[:10])
            assert {g for g in ids[10:15] if gates[g].status is GateStatus.REJECTED} == set(ids[10:15])
            assert [g for g in pending[1:] if gates[g].status is not GateStatus.PENDING] == []
            assert gatekeeper.audit.verify().ok
        finally:
            gatekeeper.store.close()
        lost = len(set(ids) - set(gates)) + sum(
            1 for g in ids[:15] if gates[g].status not in (GateStatus.APPROVED, GateStatus.REJECTED)
        )
        report(f"Service kill -9 ({backend}): gates or decisions lost", lost, "lost", "0")
        report(f"Service kill -9 ({backend}): restart to healthy", round(restart_s, 2), "s")
    finally:
        stop_server(server)
