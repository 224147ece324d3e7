"""Slack Socket Mode beyond the shared click tests (tests/service/test_slack.py runs those over both
transports): reconnecting, Slack's retries, two replicas, a Socket Mode-only app's Request URL,
envelopes that are not ours, and a refused app token. Slack is the local stand-in at the wire."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
import pytest

from gate_core import GateStatus, Verdict
from gate_core._audit import Event
from gate_core.service import ServiceConfig
from gate_core.service.notify._slack import SlackConfig
from tests.service.conftest import Service
from tests.service.slack_socket_standin import SocketModeStandIn
from tests.service.slack_standin import SlackStandIn, block_actions
from tests.service.test_slack import (  # the shared rig and its fixtures
    ACTION_APPROVE,
    BOT_TOKEN,
    INTERACTIONS,
    PUBLIC_URL,
    SlackRig,
    slack,
    slack_config,
    socket_mode,
    start_rig,
)

__all__ = ["slack", "socket_mode", "start_rig"]  # fixtures used here


def recorded(rig: SlackRig, gate_id: str, event: str) -> int:
    return sum(
        1 for e in rig.service.gatekeeper.store.audit_entries() if e.gate_id == gate_id and e.event == event
    )


def approve_payload(rig: SlackRig, gate_id: str, user: str = "U0BOB") -> dict[str, object]:
    return block_actions(
        user=user, action_id=ACTION_APPROVE, value=gate_id, response_url=rig.slack.response_url()
    )


@pytest.fixture
def socket_rig(start_rig: Callable[..., SlackRig]) -> SlackRig:
    return start_rig(over="socket")


def test_clicks_keep_arriving_after_slack_refreshes_or_drops_the_connection(
    socket_rig: SlackRig, socket_mode: SocketModeStandIn
) -> None:
    rig = socket_rig
    opened = socket_mode.opened
    socket_mode.refresh()  # Slack's documented "disconnect: refresh_requested"
    socket_mode.wait_connected(opened_at_least=opened + 1)
    first = rig.open_gate(reason="after a refresh")["id"]
    assert rig.click("U0BOB", ACTION_APPROVE, first).status_code == 200
    assert rig.gate(first).status is GateStatus.APPROVED

    opened = socket_mode.opened
    socket_mode.drop()  # the network fails: no close frame
    socket_mode.wait_connected(opened_at_least=opened + 1, timeout=60)
    second = rig.open_gate(reason="after a drop")["id"]
    assert rig.click("U0BOB", ACTION_APPROVE, second).status_code == 200
    assert rig.gate(second).status is GateStatus.APPROVED


def test_a_retried_envelope_is_acted_on_once(socket_rig: SlackRig, socket_mode: SocketModeStandIn) -> None:
    rig = socket_rig
    gate_id = rig.open_gate(requester="alice", reason="retry")["id"]
    payload = approve_payload(rig, gate_id, "U0DAVE")  # dave is not an approver of pii-export: refused
    first = socket_mode.deliver(payload, envelope_id="env-retry-1")
    again = socket_mode.deliver(payload, envelope_id="env-retry-1", retry_attempt=1)
    assert (first.ack, again.ack) == ({"envelope_id": "env-retry-1"}, {"envelope_id": "env-retry-1"})
    assert recorded(rig, gate_id, Event.DECISION_REFUSED) == 1  # not twice
    rig.slack.wait_for_ephemeral(1)
    rig.service.drain()
    assert len(rig.slack.ephemerals) == 1


def test_two_replicas_apply_a_click_once(
    start_rig: Callable[..., SlackRig], socket_mode: SocketModeStandIn, slack: SlackStandIn
) -> None:
    first = start_rig(over="socket")
    replica = start_rig(over="socket")  # a second replica: the same database, the same Slack app
    socket_mode.wait_connected(2)
    gate_id = first.open_gate(reason="two replicas")["id"]
    payload = approve_payload(first, gate_id)
    socket_mode.deliver(payload, envelope_id="env-replicas")  # to the newest connection: the replica
    socket_mode.deliver(payload, envelope_id="env-replicas", retry_attempt=1, connection=0)  # retry: first
    for seen_by in (first, replica):
        gate = seen_by.gate(gate_id)
        assert gate.status is GateStatus.APPROVED
        assert [(d.principal_id, d.verdict) for d in gate.decisions] == [("bob", Verdict.APPROVE)]
    assert recorded(first, gate_id, Event.DECISION_RECORDED) == 1


def test_a_socket_mode_app_refuses_every_request_at_the_url(socket_rig: SlackRig) -> None:
    gate_id = socket_rig.open_gate()["id"]
    body = f"payload={gate_id}".encode()
    response = httpx.post(f"{socket_rig.service.base_url}{INTERACTIONS}", content=body, timeout=10)
    assert response.status_code == 401
    assert "Socket Mode" in response.json()["detail"]
    assert socket_rig.gate(gate_id).status is GateStatus.PENDING


def test_envelopes_that_are_not_interactions_are_acknowledged_and_ignored(
    socket_rig: SlackRig, socket_mode: SocketModeStandIn
) -> None:
    gate_id = socket_rig.open_gate()["id"]
    before = socket_rig.service.gatekeeper.audit.size()
    for kind, payload in (
        ("events_api", {"event": {"type": "app_mention", "text": gate_id}}),
        ("slash_commands", {"command": "/approve", "text": gate_id}),
        ("interactive", {"type": "block_actions"}),  # malformed: no user, no actions
        ("interactive", {"nothing": "here"}),
    ):
        answer = socket_mode.deliver(payload, envelope_type=kind)
        assert answer.ack == {"envelope_id": answer.envelope_id}, kind
    assert socket_rig.service.gatekeeper.audit.size() == before
    assert socket_rig.gate(gate_id).status is GateStatus.PENDING


def test_a_refused_app_token_leaves_the_service_serving(
    service_factory: Callable[..., Service],
    slack: SlackStandIn,
    socket_mode: SocketModeStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = SlackConfig(bot_token=BOT_TOKEN, app_token="xapp-1-not-this-app", api_url=slack.api_url)
    with caplog.at_level(logging.ERROR, logger="gatehouse.slack"):
        service = service_factory(ServiceConfig(public_url=PUBLIC_URL, slack=wrong))
        with service.client("bot") as bot:
            assert bot.post("/v1/gates", json={"action": "export", "requester": "alice"}).status_code == 200
        deadline = time.monotonic() + 10
        while "could not connect" not in caplog.text:
            assert time.monotonic() < deadline, "the refused token was never reported"
            time.sleep(0.05)
    assert socket_mode.connections == 0
    assert "invalid_auth" in caplog.text


def test_slack_config_needs_a_way_for_clicks_and_an_app_level_token(slack: SlackStandIn) -> None:
    with pytest.raises(ValueError, match="set signing_secret"):
        SlackConfig(bot_token=BOT_TOKEN)
    with pytest.raises(ValueError, match="app-level token"):
        SlackConfig(bot_token=BOT_TOKEN, app_token=BOT_TOKEN)
    assert slack_config(slack, "socket").slack_app() is not None
