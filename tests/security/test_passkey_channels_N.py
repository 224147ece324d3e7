"""Channels that cannot sign (issue 19): on a gate whose rule requires passkey-signed decisions,
a correctly signed Slack click by an eligible approver is refused — answered with the link to
decide in the console — and the card says so before anyone clicks. Slack is the stand-in server
speaking the Web API; the click is signed with the app's signing secret, as Slack signs it."""

from __future__ import annotations

from collections.abc import Callable

from gate_core.service._slack_card import ACTION_APPROVE
from tests.security.test_passkey_R import signed_policy_text
from tests.service.test_slack import PUBLIC_URL, SlackRig, slack, socket_mode, start_rig  # noqa: F401

PROD_REDEPLOY = {"action": "redeploy", "target": "models/churn", "environment": "prod", "datasets": []}


def test_a_slack_click_on_a_signed_gate_is_refused_with_a_link_to_the_console(
    start_rig: Callable[..., SlackRig],  # noqa: F811 - the shared fixture
) -> None:
    rig = start_rig(signed_policy_text())
    gate_id = rig.open_gate(**PROD_REDEPLOY)["id"]
    card = rig.card(gate_id)
    assert "Needs a decision signed with a passkey" in card.text
    assert rig.click("U0BOB", ACTION_APPROVE, gate_id).status_code == 200
    [answer] = rig.slack.wait_for_ephemeral(1)
    assert "needs a decision signed with your passkey" in answer["text"]
    assert f"{PUBLIC_URL}/console/gates/{gate_id}" in answer["text"]
    gate = rig.gate(gate_id)
    assert gate.decisions == () and gate.status.value == "PENDING"
