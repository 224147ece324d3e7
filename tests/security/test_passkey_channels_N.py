"""Channels that cannot sign (issue 19): on a gate whose rule requires passkey-signed decisions,
a correctly signed Slack click or Teams invoke by an eligible approver is refused — answered with
the link to decide in the console — and the card says so before anyone clicks. Slack and the Bot
Connector are stand-in servers speaking their published APIs; the click is signed with the app's
signing secret (Slack) or a Bot Framework token (Teams), as each platform signs it."""

from __future__ import annotations

from collections.abc import Callable

from gate_core.service._slack_card import ACTION_APPROVE
from tests.security.test_passkey_R import signed_policy_text
from tests.service.test_slack import PUBLIC_URL, SlackRig, slack, socket_mode, start_rig  # noqa: F401
from tests.service.test_teams_bot import PUBLIC_URL as TEAMS_PUBLIC_URL
from tests.service.test_teams_bot import TeamsRig, card_text, connector, invoke_card, start_teams  # noqa: F401

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


def test_a_teams_click_on_a_signed_gate_is_refused_with_a_link_to_the_console(
    start_teams: Callable[..., TeamsRig],  # noqa: F811 - the shared fixture
) -> None:
    """The Bot Framework-signed invoke of an eligible approver (bob) on the Teams bot's card."""
    text = signed_policy_text().replace('"slack:#ml-releases"', '"teamsbot:governance"')
    rig = start_teams(text)
    gate_id = rig.open_gate(**PROD_REDEPLOY)
    posted = rig.card(gate_id)
    assert "needs a decision signed with a passkey" in posted.text
    answer = invoke_card(rig.click("29:1bob", "approve", gate_id))
    shown = card_text(answer)
    assert "needs a decision signed with your passkey" in shown
    assert f"{TEAMS_PUBLIC_URL}/console/gates/{gate_id}" in shown
    gate = rig.gate(gate_id)
    assert gate.decisions == () and gate.status.value == "PENDING"
