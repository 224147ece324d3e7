"""One acceptance body, run over every chat channel a person can decide in with one click:
Slack's Request URL, Slack's Socket Mode and the Teams bot (SQLite and PostgreSQL each).

    the pipeline long-polls its gate
    alice (who asked) clicks Approve   → refused, shown to her alone; nothing changes, no card update
    bob clicks Approve                 → APPROVED via the channel; the waiter resumes < 1 s after the
                                         click is answered; the card shows the outcome to everyone
    the audit trail: alice refused and bob recorded, both via the channel; it verifies

The same thresholds for every channel: a click in Teams resumes a pipeline as fast as one in Slack.
The channel-specific details (signatures, tokens, payload shapes) have their own tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import httpx
import pytest

from gate_core import AuthMethod, GateStatus, Verdict
from gate_core._audit import Event
from gate_core.service._slack_card import ACTION_APPROVE
from tests.conftest import Report
from tests.service.conftest import Service
from tests.service.test_slack import SlackRig, slack, socket_mode, start_rig
from tests.service.test_teams_bot import TeamsRig, connector, invoke_card, start_teams

__all__ = ["connector", "slack", "socket_mode", "start_rig", "start_teams"]  # fixtures used here

REFUSAL = "alice: you requested this gate; someone else must decide it"


class Channel(Protocol):
    via: AuthMethod

    @property
    def service(self) -> Service: ...

    def open_gate(self) -> str: ...

    def click_approve(self, person: str, gate_id: str) -> str | None:
        """Click as ``person``; returns what only that person was shown, if anything."""

    def private_refusal(self, gate_id: str) -> str: ...

    def outcome_for_everyone(self, gate_id: str, decided_by: str) -> str: ...

    def updates_for_everyone(self) -> int: ...


@dataclass
class SlackChannel:
    rig: SlackRig
    via: AuthMethod = AuthMethod.SLACK
    users: ClassVar[dict[str, str]] = {"alice": "U0ALICE", "bob": "U0BOB"}

    @property
    def service(self) -> Service:
        return self.rig.service

    def open_gate(self) -> str:
        gate_id = str(self.rig.open_gate()["id"])
        self.rig.card(gate_id)
        return gate_id

    def click_approve(self, person: str, gate_id: str) -> str | None:
        answer = self.rig.click(self.users[person], ACTION_APPROVE, gate_id)
        assert answer.status_code == 200
        return None

    def private_refusal(self, gate_id: str) -> str:
        [ephemeral] = self.rig.slack.wait_for_ephemeral(1)
        assert (ephemeral["response_type"], ephemeral["replace_original"]) == ("ephemeral", False)
        return str(ephemeral["text"])

    def outcome_for_everyone(self, gate_id: str, decided_by: str) -> str:
        return self.rig.slack.wait_for("chat.update", lambda c: f"APPROVED by {decided_by}" in c.text).text

    def updates_for_everyone(self) -> int:
        return len(self.rig.slack.calls("chat.update"))


@dataclass
class TeamsChannel:
    rig: TeamsRig
    via: AuthMethod = AuthMethod.TEAMS
    users: ClassVar[dict[str, str]] = {"alice": "29:1alice", "bob": "29:1bob"}
    _private: str = ""

    @property
    def service(self) -> Service:
        return self.rig.service

    def open_gate(self) -> str:
        gate_id = self.rig.open_gate()
        self.rig.card(gate_id)
        return gate_id

    def click_approve(self, person: str, gate_id: str) -> str | None:
        card = invoke_card(self.rig.click(self.users[person], "approve", gate_id))
        notice = card["body"][0]
        if notice.get("color") == "Attention":  # a refusal: on the clicker's own copy of the card
            assert card["refresh"]["userIds"] == [self.users[person]]
            self._private = str(notice["text"])
            return self._private
        return None

    def private_refusal(self, gate_id: str) -> str:
        return self._private

    def outcome_for_everyone(self, gate_id: str, decided_by: str) -> str:
        return self.rig.connector.wait_for(
            "PUT", lambda c: "APPROVED" in c.text and decided_by in c.text
        ).text

    def updates_for_everyone(self) -> int:
        return len(self.rig.connector.calls("PUT"))


@pytest.fixture(params=["slack-http", "slack-socket", "teams"])
def channel(request: pytest.FixtureRequest, database_url: str) -> Channel:
    """Each channel on each backend (``database_url`` is named so the backends parametrise it)."""
    if request.param == "teams":
        start: Callable[..., TeamsRig] = request.getfixturevalue("start_teams")
        return TeamsChannel(start())
    start_slack: Callable[..., SlackRig] = request.getfixturevalue("start_rig")
    return SlackChannel(start_slack(over=request.param.removeprefix("slack-")))


def _wait_until_waiting(service: Service, timeout: float = 10.0) -> None:
    """Until the long-poll has subscribed (healthz counts waited-on gates): orders the test only."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{service.base_url}/healthz").json()["waiting_gates"] < 1:
        assert time.monotonic() < deadline, "the waiter never subscribed"
        time.sleep(0.01)


def test_one_click_decides_refuses_privately_and_resumes_the_pipeline_promptly(
    channel: Channel, request: pytest.FixtureRequest, report: Report
) -> None:
    service = channel.service
    gate_id = channel.open_gate()

    waited: dict[str, Any] = {}

    def wait() -> None:
        with service.client("bot") as bot:
            response = bot.get(f"/v1/gates/{gate_id}/wait", params={"timeout": 20})
        waited.update(at=time.monotonic(), status=response.status_code, gate=response.json())

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    _wait_until_waiting(service)

    channel.click_approve("alice", gate_id)
    assert REFUSAL in channel.private_refusal(gate_id)
    assert service.gatekeeper.get(gate_id).status is GateStatus.PENDING
    service.drain()
    assert channel.updates_for_everyone() == 0
    assert waiter.is_alive()

    clicked = time.monotonic()
    channel.click_approve("bob", gate_id)
    answered = time.monotonic()
    assert answered - clicked < 3.0  # Slack's answer window; Teams waits no longer
    waiter.join(timeout=10)
    assert (waited["status"], waited["gate"]["status"]) == (200, "APPROVED")
    resumed_ms = (waited["at"] - answered) * 1000
    assert resumed_ms < 1000
    backend = "SQLite" if service.settings.database_url.startswith("sqlite") else "PostgreSQL"
    name = request.node.callspec.params["channel"]
    report(
        f"Chat click answered → waiting pipeline resumed ({name}, {backend})",
        round(resumed_ms),
        "ms",
        "< 1000",
    )

    [decision] = service.gatekeeper.get(gate_id).decisions
    assert (decision.principal_id, decision.verdict, decision.via) == ("bob", Verdict.APPROVE, channel.via)
    assert "bob" in channel.outcome_for_everyone(gate_id, "bob")

    entries = [e.decoded() for e in service.gatekeeper.store.audit_entries() if e.gate_id == gate_id]
    events = [(e["event"], e["actor"]["principal_id"], e["actor"]["via"]) for e in entries]
    assert (Event.DECISION_REFUSED, "alice", channel.via.value) in events
    assert (Event.DECISION_RECORDED, "bob", channel.via.value) in events
    with service.client("admin") as admin:
        assert admin.get("/v1/audit/verify").json()["ok"] is True
