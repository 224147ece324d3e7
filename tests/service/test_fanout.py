"""Two real `gatehouse serve` processes on one PostgreSQL: a decision on one wakes a waiter on the other."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gate_core import Settings, open_gatekeeper
from tests.service.conftest import ServerProcess, make_tokens
from tests.service.test_api import PII_EXPORT


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """PostgreSQL only: LISTEN/NOTIFY is the cross-replica path (SQLite is one process by design)."""
    return postgres_url


@pytest.mark.slow
def test_decision_on_one_replica_wakes_a_waiter_on_the_other(
    start_server: Callable[..., ServerProcess], service_settings: Settings
) -> None:
    gatekeeper = open_gatekeeper(service_settings)
    tokens = make_tokens(gatekeeper)
    gatekeeper.store.close()
    replica_a, replica_b = start_server(), start_server()

    def auth(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[who]}"}

    gate = httpx.post(f"{replica_a.base_url}/v1/gates", json=PII_EXPORT, headers=auth("bot")).json()
    result: dict[str, Any] = {}

    def waiter() -> None:
        response = httpx.get(
            f"{replica_a.base_url}/v1/gates/{gate['id']}/wait",
            params={"timeout": 30},
            headers=auth("bot"),
            timeout=60,
        )
        result["status"] = response.json()["status"]
        result["at"] = time.monotonic()

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)  # the waiter is parked on replica A
    decided = httpx.post(
        f"{replica_b.base_url}/v1/gates/{gate['id']}/decisions",
        json={"decision": "approve"},
        headers=auth("bob"),
    )
    decided_at = time.monotonic()
    assert decided.json()["status"] == "APPROVED"
    thread.join(timeout=30)
    assert result["status"] == "APPROVED"
    assert result["at"] - decided_at < 1.0  # NOTIFY, not the 30 s timeout; figures in bench/
    verified = httpx.get(f"{replica_b.base_url}/v1/audit/verify", headers=auth("bob")).json()
    assert verified["ok"] is True
