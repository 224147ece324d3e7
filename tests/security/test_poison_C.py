"""Adversary C (any caller with a valid credential) poisons a record so that reads, the sweeper
or verification fail for everyone. Property 6: no input can break the service for others — every
stored value can be read back by every reader, limits are enforced on write, and background
loops survive any single bad record.

Run against the code before issue 16: the 200-level request was accepted (200); from then on
``GET /v1/gates`` answered 500 for everyone, and once its expiry passed the sweeper's task ended
(it caught only Gatehouse errors), so expiry, reminders and checkpoints stopped for good.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gate_core import GateStatus
from gate_core._limits import LIMITS
from tests.conftest import Report
from tests.service.conftest import Service
from tests.service.test_api import PII_EXPORT


def nested(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return {"deep": value}


def _sql(service: Service, statement: str, **params: object) -> None:
    with service.gatekeeper.store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(sa.text(statement), params)


def test_200_level_nesting_is_refused_with_the_limit_named(service: Service, report: Report) -> None:
    body = {**PII_EXPORT, "parameters": nested(200)}
    assert len(json.dumps(body)) < 2_500  # about 1.9 KB: far below any body limit
    with service.client("bot") as bot:
        refused = bot.post("/v1/gates", json=body)
        assert refused.status_code == 422, refused.text
        assert "parameters_depth" in refused.text and str(LIMITS.parameters_depth) in refused.text
        # what every reader does afterwards still works
        assert bot.get("/v1/gates").status_code == 200
        deepest = nested(LIMITS.parameters_depth - 1)  # with "deep" around it: exactly at the limit
        at_limit = bot.post("/v1/gates", json={**PII_EXPORT, "parameters": deepest})
        assert at_limit.status_code == 200, at_limit.text
        assert bot.get(f"/v1/gates/{at_limit.json()['id']}").json()["request"]["parameters"] == deepest
        one_more = bot.post("/v1/gates", json={**PII_EXPORT, "parameters": nested(LIMITS.parameters_depth)})
        assert one_more.status_code == 422, one_more.text
        assert len(bot.get("/v1/gates").json()) == 1
    report("Poisoned records (C): 200-level nesting accepted", 0, "accepted", "0")


@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [
        ("parameters", {"k": "x" * 70_000}, "parameters_bytes"),
        ("parameters", {f"k{i}": i for i in range(6_000)}, "parameters_items"),
        ("parameters", {"n": 2**70}, "parameters_integer"),
        (
            "datasets",
            [{"namespace": "w", "name": f"t{i}"} for i in range(300)],
            "datasets",
        ),
        (
            "datasets",
            [{"namespace": "w", "name": "t", "tags": [f"t{i}" for i in range(80)]}],
            "dataset_tags",
        ),
    ],
)
def test_every_limit_is_a_422_naming_it(service: Service, field: str, value: object, limit: str) -> None:
    with service.client("bot") as bot:
        response = bot.post("/v1/gates", json={**PII_EXPORT, field: value})
        assert response.status_code == 422, response.text[:300]
        assert limit in response.text
        assert bot.get("/v1/gates").json() == []


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def test_sweeper_survives_a_poisoned_row(service: Service, report: Report) -> None:
    """A row written before the limits existed (200 levels deep) and a row no reader can parse:
    expiry, reminders and checkpoints keep working for every other gate."""
    gk = service.gatekeeper
    with service.client("bot") as bot:
        deep = bot.post("/v1/gates", json={**PII_EXPORT, "reason": "deep"}).json()
        broken = bot.post("/v1/gates", json={**PII_EXPORT, "reason": "broken"}).json()
        healthy = bot.post("/v1/gates", json={**PII_EXPORT, "reason": "healthy"}).json()
        reminded = bot.post("/v1/gates", json={**PII_EXPORT, "reason": "reminded"}).json()
    old_request = json.dumps({**PII_EXPORT, "parameters": nested(200)})
    past = datetime.now(UTC) - timedelta(minutes=1)
    _sql(service, "UPDATE gh_gates SET request = :r WHERE id = :id", r=old_request, id=deep["id"])
    _sql(service, "UPDATE gh_gates SET request = :r WHERE id = :id", r='{"action": ', id=broken["id"])
    for gate in (deep, broken, healthy):
        _sql(service, "UPDATE gh_gates SET expires_at = :t WHERE id = :id", t=past, id=gate["id"])
    _sql(service, "UPDATE gh_gates SET remind_at = :t WHERE id = :id", t=past, id=reminded["id"])
    checkpoints_before = len(gk.store.checkpoints())

    _wait_for(lambda: gk.get(healthy["id"]).status is GateStatus.EXPIRED)
    _wait_for(lambda: gk.get(deep["id"]).status is GateStatus.EXPIRED)  # old rows read back too
    _wait_for(lambda: len(gk.store.checkpoints()) > checkpoints_before)
    health = service.app.state.gatehouse.loops
    _wait_for(lambda: health.snapshot()["sweeper"]["bad_records"] >= 1)
    with service.client("bot") as bot:
        status = bot.get("/healthz")
        assert status.status_code == 200, status.text
        assert status.json()["loops"]["sweeper"]["running"] is True
        assert status.json()["loops"]["sweeper"]["bad_records"] >= 1
        # the unreadable row is skipped and counted by list readers too: one bad row never breaks the list
        listed = bot.get("/v1/gates")
        assert listed.status_code == 200, listed.text[:300]
        assert {g["id"] for g in listed.json()} >= {healthy["id"], deep["id"], reminded["id"]}
    assert gk.store.get_gate(reminded["id"]).remind_at is not None
    _wait_for(lambda: _reminded(service, reminded["id"]))
    report("Poisoned records (C): sweeper passes that kept working after a poisoned row", "yes")


def _reminded(service: Service, gate_id: str) -> bool:
    with service.gatekeeper.store.engine.connect() as conn:  # type: ignore[attr-defined]
        row = conn.execute(sa.text("SELECT reminded_at FROM gh_gates WHERE id = :id"), {"id": gate_id}).one()
    return row.reminded_at is not None


def test_healthz_reports_a_stopped_loop(service: Service) -> None:
    """A replica whose background loop has ended answers 503 naming it, so it is restarted
    rather than trusted (before issue 16 /healthz said "ok" with the sweeper dead)."""
    healthy = httpx.get(f"{service.base_url}/healthz", timeout=10)
    assert healthy.status_code == 200
    assert {"sweeper", "notifier"} <= set(healthy.json()["loops"])
    service.app.state.gatehouse.hub.close()  # the notifier hub stops delivering
    stopped = httpx.get(f"{service.base_url}/healthz", timeout=10)
    assert stopped.status_code == 503, stopped.text
    assert stopped.json()["loops"]["notifier"]["running"] is False
    assert "notifier" in stopped.json()["detail"]


def test_a_notifier_that_raises_on_one_gate_is_counted_and_others_are_delivered(service: Service) -> None:
    """The hub's per-gate queue never stays stuck behind one delivery that raises."""
    hub = service.app.state.gatehouse.hub
    delivered: list[str] = []

    def explode() -> None:
        raise RuntimeError("card for a poisoned gate")

    hub.attempts, hub.backoff_s = 1, 0.0
    hub.deliver("g-bad", "post for g-bad", explode)
    hub.deliver("g-bad", "second for g-bad", lambda: delivered.append("g-bad"))
    hub.deliver("g-good", "post for g-good", lambda: delivered.append("g-good"))
    hub.drain()
    assert sorted(delivered) == ["g-bad", "g-good"]
    assert service.app.state.gatehouse.loops.snapshot()["notifier"]["bad_records"] == 1


def test_the_listen_thread_survives_a_notice_that_breaks_its_reader(postgres_url: str) -> None:
    """Anyone who can connect may NOTIFY the channel: one notice that makes publishing raise is
    logged and counted, and the next is delivered (before issue 16 the thread caught only
    psycopg errors and would have ended)."""
    import psycopg

    from gate_core._store._sql import CHANGE_CHANNEL
    from gate_core.service._bus import PgChangeListener
    from gate_core.service._loops import LoopHealth

    received: list[str] = []

    def publish(payload: str) -> None:
        if payload == "poison":
            raise ValueError("a notice no reader expected")
        received.append(payload)

    health = LoopHealth()
    listener = PgChangeListener(postgres_url, CHANGE_CHANNEL, publish, health=health)
    health.watch("listener", listener.is_alive)
    listener.start()
    try:
        assert listener.connected.wait(10)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"NOTIFY \"{CHANGE_CHANNEL}\", 'poison'")
            conn.execute(f"NOTIFY \"{CHANGE_CHANNEL}\", 'g-after'")
        _wait_for(lambda: received == ["g-after"])
        snapshot = health.snapshot()["listener"]
        assert snapshot["running"] is True and snapshot["bad_records"] == 1
    finally:
        listener.stop()
        listener.join(timeout=5)
