"""Races through the real service: many approvers at once, double clicks, a decision racing
expiry, a cancel racing an approval — exactly one outcome each, and the audit shows it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
import yaml

from gate_core import Event, Gatekeeper
from tests.reliability.conftest import Report
from tests.service.conftest import Service
from tests.service.test_api import PII_EXPORT

CLOSING = {Event.GATE_APPROVED, Event.GATE_REJECTED, Event.GATE_EXPIRED, Event.GATE_CANCELLED}


def fire(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the calls at the same instant from their own threads."""
    start = threading.Barrier(len(calls))
    answers: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        start.wait()
        answers[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return answers


def closing_events(gatekeeper: Gatekeeper, gate_id: str) -> list[str]:
    return [e.event for e in gatekeeper.store.audit_entries() if e.gate_id == gate_id and e.event in CLOSING]


def post(service: Service, who: str, path: str, body: dict[str, Any]) -> Callable[[], httpx.Response]:
    headers = {"Authorization": f"Bearer {service.tokens[who]}"}
    return lambda: httpx.post(f"{service.base_url}{path}", json=body, headers=headers, timeout=30)


def open_gate(service: Service, **overrides: Any) -> dict[str, Any]:
    return dict(post(service, "bot", "/v1/gates", {**PII_EXPORT, **overrides})().json())


@pytest.mark.slow
def test_approvers_and_double_clicks_at_once(service: Service, report: Report) -> None:
    conflicts = 0
    rounds = 10
    for round_ in range(rounds):
        gate = open_gate(service, reason=f"round {round_}")
        path = f"/v1/gates/{gate['id']}/decisions"
        calls = [
            post(service, who, path, {"decision": "approve"}) for who in ("bob", "carol") for _ in range(5)
        ]
        answers = fire(calls)
        accepted = [a for a in answers if a.status_code == 200]
        refused = {a.json()["code"] for a in answers if a.status_code != 200}
        assert refused <= {"already_decided", "duplicate_decision"}, refused
        conflicts += len(accepted) != 1 or len(closing_events(service.gatekeeper, gate["id"])) != 1
    assert conflicts == 0
    report(
        "Races: approvers clicking at once (10 clicks x 10 gates), outcomes other than exactly one",
        conflicts,
        "gates",
        "0",
    )


@pytest.mark.slow
def test_cancel_racing_approval(service: Service, report: Report) -> None:
    conflicts, outcomes = 0, {"APPROVED": 0, "CANCELLED": 0}
    for round_ in range(15):
        gate = open_gate(service, reason=f"cancel {round_}")
        answers = fire(
            [
                post(service, "bot", f"/v1/gates/{gate['id']}/cancel", {"reason": "changed my mind"}),
                post(service, "bob", f"/v1/gates/{gate['id']}/decisions", {"decision": "approve"}),
            ]
        )
        winners = [a.json()["status"] for a in answers if a.status_code == 200]
        closing = closing_events(service.gatekeeper, gate["id"])
        conflicts += len(winners) != 1 or len(closing) != 1
        if winners:
            outcomes[winners[0]] += 1
    assert conflicts == 0
    report(
        "Races: cancel racing an approval (15 rounds), outcomes other than exactly one",
        conflicts,
        "gates",
        "0",
    )


@pytest.mark.slow
def test_decision_racing_expiry(
    service_factory: Callable[..., Service], service_settings: Any, report: Report
) -> None:
    policy = yaml.safe_load(service_settings.policy_path.read_text())
    policy["rules"][0].update(expiry="1s")
    policy["rules"][0].pop("reminder", None)
    service_settings.policy_path.write_text(yaml.safe_dump(policy))
    service = service_factory()
    conflicts, outcomes = 0, {"APPROVED": 0, "EXPIRED": 0}
    for round_ in range(12):
        gate = open_gate(service, reason=f"expiry {round_}")
        expires_at = datetime.fromisoformat(gate["expires_at"]).timestamp()
        # aim the clicks across the deadline: some a little before, some a little after
        time.sleep(max(0.0, expires_at - time.time() - 0.015 + 0.005 * (round_ % 6)))
        answers = fire(
            [
                post(service, who, f"/v1/gates/{gate['id']}/decisions", {"decision": "approve"})
                for who in ("bob", "carol", "bob")
            ]
        )
        final = service.gatekeeper.get(gate["id"])
        closing = closing_events(service.gatekeeper, gate["id"])
        accepted = [a for a in answers if a.status_code == 200]
        ok = len(closing) == 1 and (
            (
                final.status.value == "APPROVED"
                and len(accepted) == 1
                and final.decided_at is not None
                and final.decided_at < final.expires_at
                and closing == [Event.GATE_APPROVED]
            )
            or (final.status.value == "EXPIRED" and not accepted and closing == [Event.GATE_EXPIRED])
        )
        conflicts += not ok
        outcomes[final.status.value] += 1
    assert conflicts == 0, outcomes
    assert service.gatekeeper.audit.verify().ok
    report(
        "Races: a decision racing expiry (12 rounds across the deadline), inconsistent outcomes",
        conflicts,
        "gates",
        "0",
    )
    report(
        "Races: decision-vs-expiry rounds ending approved / expired",
        f"{outcomes['APPROVED']} / {outcomes['EXPIRED']}",
    )
