"""PostgreSQL stops and comes back while steps wait and decisions arrive: no gate passes while
it is down (fail closed), clients retry with backoff, and nothing is lost once it returns."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from gate_core import GateFilter, GateStatus, HttpGateClient, open_gatekeeper
from tests.reliability._postgres import PrivatePostgres
from tests.reliability.conftest import Report, example_home
from tests.service.conftest import launch_server, make_tokens, stop_server
from tests.service.test_api import PII_EXPORT


@pytest.mark.slow
def test_database_outage_fails_closed_and_loses_nothing(
    private_postgres: PrivatePostgres, tmp_path: Path, report: Report
) -> None:
    settings = example_home(tmp_path, private_postgres.url)
    gatekeeper = open_gatekeeper(settings)
    tokens = make_tokens(gatekeeper)
    gatekeeper.store.close()
    waiting_replica = launch_server(settings, tmp_path / "a.log")
    deciding_replica = launch_server(settings, tmp_path / "b.log")
    auth = {who: {"Authorization": f"Bearer {token}"} for who, token in tokens.items()}
    try:
        gate_ids = [
            httpx.post(
                f"{waiting_replica.base_url}/v1/gates",
                json={**PII_EXPORT, "reason": f"r{i}"},
                headers=auth["bot"],
            ).json()["id"]
            for i in range(10)
        ]
        approved_before = gate_ids[:3]
        for gate_id in approved_before:
            assert (
                httpx.post(
                    f"{deciding_replica.base_url}/v1/gates/{gate_id}/decisions",
                    json={"decision": "approve"},
                    headers=auth["bob"],
                ).status_code
                == 200
            )
        pending = gate_ids[3:]

        # a pipeline step waits on replica A through the whole outage, retrying as clients do
        waited: dict[str, object] = {}

        def wait_for_decision() -> None:
            client = HttpGateClient(waiting_replica.base_url, tokens["bot"], retries=30)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    result = client.wait_many(pending, timeout=5)
                except Exception as exc:  # an outage longer than the client's retries: keep waiting
                    waited.setdefault("errors", []).append(type(exc).__name__)  # type: ignore[union-attr]
                    continue
                if result.changed:
                    waited["changed"] = [(g.id, g.status) for g in result.changed]
                    waited["at"] = time.monotonic()
                    return

        waiter = threading.Thread(target=wait_for_decision)
        waiter.start()
        time.sleep(0.5)

        private_postgres.stop("immediate")  # a crash, not a clean shutdown
        down_answers = []
        for gate_id in pending[:3]:
            response = httpx.post(
                f"{deciding_replica.base_url}/v1/gates/{gate_id}/decisions",
                json={"decision": "approve"},
                headers=auth["bob"],
                timeout=30,
            )
            down_answers.append(response.status_code)
        consume = httpx.post(
            f"{deciding_replica.base_url}/v1/gates/{approved_before[0]}/consume",
            json={"binding_hash": "0" * 64},
            headers=auth["bot"],
            timeout=30,
        )
        health = httpx.get(f"{deciding_replica.base_url}/healthz", timeout=30)
        assert set(down_answers) == {503}, down_answers  # fail closed: never a 200 while the store is gone
        assert consume.status_code == 503
        assert health.status_code == 503
        assert "changed" not in waited  # no waiter was told anything passed

        private_postgres.start()
        recovered_at = time.monotonic()
        decided = None
        while decided is None and time.monotonic() - recovered_at < 60:
            response = httpx.post(
                f"{deciding_replica.base_url}/v1/gates/{pending[0]}/decisions",
                json={"decision": "approve", "comment": "after the outage"},
                headers=auth["bob"],
                timeout=30,
            )
            if response.status_code == 200:
                decided = time.monotonic()
            else:
                assert response.status_code == 503, response.text
                time.sleep(0.2)
        assert decided is not None, "the service did not recover after PostgreSQL came back"
        waiter.join(timeout=90)
        assert waited.get("changed") == [(pending[0], GateStatus.APPROVED)], waited

        gatekeeper = open_gatekeeper(settings)
        try:
            gates = {g.id: g for g in gatekeeper.store.list_gates(GateFilter(limit=100))}
            assert set(gates) == set(gate_ids)  # nothing lost
            approved = {g.id for g in gates.values() if g.status is GateStatus.APPROVED}
            assert approved == {*approved_before, pending[0]}  # nothing passed without its decision
            assert all(len(gates[g].decisions) == 1 for g in approved)
            assert gatekeeper.audit.verify().ok
        finally:
            gatekeeper.store.close()
        report(
            "Database outage: decisions accepted while PostgreSQL was down",
            down_answers.count(200),
            "accepted",
            "0",
        )
        report(
            "Database outage: gates lost or changed across the outage",
            len(set(gate_ids) ^ set(gates)),
            "gates",
            "0",
        )
        report(
            "Database outage: first decision accepted after PostgreSQL restarted",
            round(decided - recovered_at, 2),
            "s",
        )
        report(
            "Database outage: waiter on the other replica woke after the decision",
            round(float(waited["at"]) - decided, 3),
            "s",
        )  # type: ignore[arg-type]
    finally:
        stop_server(waiting_replica)
        stop_server(deciding_replica)
