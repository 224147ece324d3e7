"""The Teams bot behind a load balancer: two replicas on one PostgreSQL database.

The card is posted by the replica where the gate was opened; Teams delivers the click to whichever
replica the load balancer picks. That replica finds the card's reference in the database, decides,
and updates the card for everyone; the pipeline long-polling on the *other* replica resumes at once
(LISTEN/NOTIFY). A second click, on the first replica, is answered "already approved" to its clicker
and changes nothing. PostgreSQL only: several replicas need it (SQLite serves one process).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gate_core import AuthMethod, GateStatus
from gate_core._audit import Event
from tests.service.test_teams_bot import TeamsRig, card_text, connector, invoke_card, start_teams

__all__ = ["connector", "start_teams"]  # fixtures used here


@pytest.fixture
def database_url(postgres_url: str) -> str:
    return postgres_url


def test_a_click_on_another_replica_decides_once_updates_the_card_and_wakes_the_waiter(
    start_teams: Callable[..., TeamsRig],
) -> None:
    first, second = start_teams(), start_teams()
    gate_id = first.open_gate()
    card_id = str(first.card(gate_id).answer["id"])

    waited: dict[str, Any] = {}

    def wait() -> None:
        with first.service.client("bot") as bot:
            response = bot.get(f"/v1/gates/{gate_id}/wait", params={"timeout": 20})
        waited.update(at=time.monotonic(), gate=response.json())

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    deadline = time.monotonic() + 10
    while httpx.get(f"{first.service.base_url}/healthz").json()["waiting_gates"] < 1:
        assert time.monotonic() < deadline, "the waiter never subscribed"
        time.sleep(0.01)

    approved = invoke_card(second.post(second.activity("29:1bob", "approve", gate_id, card_id)))
    answered = time.monotonic()
    assert "Approved" in card_text(approved)
    waiter.join(timeout=10)
    assert waited["gate"]["status"] == "APPROVED"
    assert waited["at"] - answered < 1.0

    update = second.connector.wait_for("PUT", lambda c: "APPROVED" in c.text)
    assert update.path.endswith(f"/activities/{card_id}")

    late = invoke_card(first.post(first.activity("29:1carol", "approve", gate_id, card_id)))
    assert "already approved by bob" in late["body"][0]["text"]
    first.service.drain()
    second.service.drain()
    assert len(first.connector.calls("PUT")) == 1  # one update, by the replica that decided

    gate = first.gate(gate_id)
    assert gate.status is GateStatus.APPROVED
    assert [(d.principal_id, d.via) for d in gate.decisions] == [("bob", AuthMethod.TEAMS)]
    recorded = [e for e in first.service.gatekeeper.store.audit_entries() if e.gate_id == gate_id]
    assert sum(1 for e in recorded if e.event == Event.DECISION_RECORDED) == 1
