"""The contract every orchestrator adapter passes (Airflow, Prefect, Dagster).

Each adapter's test module defines a ``harness`` fixture returning an object that satisfies
``Harness`` and star-imports the ``test_contract_*`` functions below, so the same scenarios run
against every adapter, each on its orchestrator's real code path against a real running
`gatehouse serve` (the ``live`` fixture from tests/adapters/conftest.py).

A harness runs ONE gated step of a tiny pipeline ("export customers" behind a gate, then a
downstream step that records that it ran) in the background, and reports how it ended.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import httpx

from gate_core import GateStatus

Outcome = Literal["success", "failed", "skipped"]


@dataclass(frozen=True)
class StepSpec:
    """What the gated step asks for. ``run_key`` identifies the pipeline run: running the same
    spec again with ``attempt`` > 1 is a retry of the same step (it must find the same gate)."""

    run_key: str
    action: str = "export"
    target: str = "s3://exports/customers.csv"
    datasets: tuple[str, ...] = ("warehouse/customers#pii",)
    environment: str = ""
    requester: str = "alice"
    reason: str = "quarterly churn report"
    parameters: tuple[tuple[str, str], ...] = ()  # what else the approval is bound to
    attempt: int = 1

    @property
    def parameter_map(self) -> dict[str, str]:
        return dict(self.parameters)


@dataclass
class StepResult:
    outcome: Outcome
    detail: str = ""  # the failure/skip reason as the orchestrator reports it
    downstream_ran: bool = False
    decision: dict[str, Any] = field(
        default_factory=dict
    )  # what the step returned/pushed (XCom, run input, metadata)


class RunHandle(Protocol):
    def result(self, timeout: float) -> StepResult:
        """Block until the run has ended (or fail the test after ``timeout``)."""
        ...


class Harness(Protocol):
    name: str  # "airflow" | "prefect" | "dagster"

    def start(self, spec: StepSpec) -> RunHandle:
        """Start the pipeline run in the background; it must stop at the gate."""
        ...


@dataclass
class Live:
    """A running `gatehouse serve` and API tokens for the example users."""

    base_url: str
    tokens: dict[str, str]
    gate_requester_token: str  # the pipeline's token (etl-bot, scope request)

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.tokens[who]}"}, timeout=30
        )

    def gate_for(self, run_key: str, timeout: float = 120.0) -> dict[str, Any]:
        """The gate opened by the run identified by ``run_key`` (adapters put it in the idempotency key)."""
        deadline = time.monotonic() + timeout
        with self.client("admin") as admin:
            while time.monotonic() < deadline:
                for gate in admin.get("/v1/gates", params={"limit": 1000}).json():
                    if run_key in (gate["request"].get("idempotency_key") or ""):
                        return dict(gate)
                time.sleep(0.1)
        raise AssertionError(f"no gate was opened for run {run_key!r} within {timeout}s")

    def decide(self, who: str, gate_id: str, decision: str, comment: str = "") -> httpx.Response:
        with self.client(who) as client:
            return client.post(
                f"/v1/gates/{gate_id}/decisions", json={"decision": decision, "comment": comment}
            )


def unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


# --------------------------------------------------------------------------- the scenarios


def test_contract_approved_step_runs_and_reports_the_decision(harness: Harness, live: Live) -> None:
    spec = StepSpec(run_key=unique("approve"))
    run = harness.start(spec)
    gate = live.gate_for(spec.run_key)
    assert gate["status"] == "PENDING"
    assert gate["rule"] == "pii-export"
    assert gate["request"]["requester"] == "alice"
    assert gate["request"]["run"]["orchestrator"] == harness.name
    assert any(d["tags"] == ["pii"] for d in gate["request"]["datasets"])
    assert live.decide("bob", gate["id"], "approve", "aggregates only").status_code == 200
    result = run.result(timeout=180)
    assert result.outcome == "success", result.detail
    assert result.downstream_ran
    assert result.decision.get("status") == GateStatus.APPROVED.value
    assert "bob" in str(result.decision.get("approvers"))


def test_contract_rejected_step_stops_with_the_reason(harness: Harness, live: Live) -> None:
    spec = StepSpec(run_key=unique("reject"))
    run = harness.start(spec)
    gate = live.gate_for(spec.run_key)
    live.decide("carol", gate["id"], "reject", "contains raw e-mails")
    result = run.result(timeout=180)
    assert result.outcome in ("failed", "skipped")
    assert "contains raw e-mails" in result.detail
    assert not result.downstream_ran


def test_contract_requester_cannot_approve_their_own_gate(harness: Harness, live: Live) -> None:
    spec = StepSpec(run_key=unique("self"))
    run = harness.start(spec)
    gate = live.gate_for(spec.run_key)
    refused = live.decide("alice", gate["id"], "approve")
    assert refused.status_code == 403
    assert "you requested this gate" in refused.json()["detail"]
    with live.client("bot") as bot:
        assert bot.get(f"/v1/gates/{gate['id']}").json()["status"] == "PENDING"
    live.decide("bob", gate["id"], "approve")
    assert run.result(timeout=180).outcome == "success"


def test_contract_prod_redeploy_needs_two_distinct_approvers(harness: Harness, live: Live) -> None:
    spec = StepSpec(
        run_key=unique("redeploy"), action="redeploy", target="models/churn", environment="prod", datasets=()
    )
    run = harness.start(spec)
    gate = live.gate_for(spec.run_key)
    assert gate["required_approvals"] == 2
    live.decide("bob", gate["id"], "approve")
    assert live.decide("bob", gate["id"], "approve").status_code == 409  # one person counts once
    time.sleep(1.0)
    with live.client("bot") as bot:
        assert bot.get(f"/v1/gates/{gate['id']}").json()["status"] == "PENDING"
    live.decide("dave", gate["id"], "approve")
    result = run.result(timeout=180)
    assert result.outcome == "success", result.detail
    assert {"bob", "dave"} <= set(map(str, result.decision.get("approvers", [])))


def test_contract_a_retry_finds_its_own_gate(harness: Harness, live: Live) -> None:
    spec = StepSpec(run_key=unique("retry"))
    first = harness.start(spec)
    gate = live.gate_for(spec.run_key)
    live.decide("bob", gate["id"], "approve")
    assert first.result(timeout=180).outcome == "success"
    again = harness.start(StepSpec(run_key=spec.run_key, attempt=2))
    assert again.result(timeout=180).outcome == "success"  # approved already: no second gate, no wait
    with live.client("admin") as admin:
        gates = [
            g
            for g in admin.get("/v1/gates", params={"limit": 1000}).json()
            if spec.run_key in (g["request"].get("idempotency_key") or "")
        ]
    assert [g["id"] for g in gates] == [gate["id"]]


ExpiringLive = Callable[[], Live]


def test_contract_expired_gate_fails_the_step(harness: Harness, live: Live) -> None:
    spec = StepSpec(run_key=unique("expire"), action="infra_change", target="expire-fast", datasets=())
    run = harness.start(spec)  # the live policy gives infra_change on expire-fast a 3 s expiry
    gate = live.gate_for(spec.run_key)
    assert gate["rule"] == "expire-fast"
    result = run.result(timeout=180)
    assert result.outcome == "failed"
    assert "expired" in result.detail.lower()
    assert not result.downstream_ran


def test_contract_an_approval_is_consumed_only_for_the_payload_it_was_asked_for(
    harness: Harness, live: Live
) -> None:
    """The step's retry asks with another model version under the same idempotency key: the
    approval given for version 1 must not let version 2 run (the adapters consume with the
    binding hash they compute themselves, and the service refuses a found gate's other payload)."""
    spec = StepSpec(run_key=unique("payload"), parameters=(("model_version", "1"),))
    first = harness.start(spec)
    gate = live.gate_for(spec.run_key)
    assert gate["request"]["parameters"] == {"model_version": "1"}
    live.decide("bob", gate["id"], "approve")
    assert first.result(timeout=180).outcome == "success"
    changed = harness.start(replace(spec, attempt=2, parameters=(("model_version", "2"),)))
    result = changed.result(timeout=180)
    assert result.outcome == "failed", result
    assert gate["id"] in result.detail
    with live.client("admin") as admin:
        exported = admin.get("/v1/audit/export", params={"format": "jsonl"}).text.splitlines()
    consumed = [
        entry
        for entry in map(json.loads, exported)
        if entry["event"] == "gate.consumed" and entry["gate"] == gate["id"]
    ]
    assert len(consumed) == 1  # the first attempt's, for version 1; version 2 never ran under it
