"""Adversary A, after leaving: bob was a data-governance approver provisioned by the IdP. The IdP
deactivates him while a gate waits for data governance; he still holds his API token, a console
session and the Slack card on screen. Each is refused at once and the attempt is audited; carol's
approval still works. Real service over a socket, SQLite and PostgreSQL.

Against the code before this change there was no SCIM at all; against a directory that only cached
the IdP's state, bob's click within the cache's lifetime would have counted."""

from __future__ import annotations

import re

import httpx

from gate_core import GateStatus, Scope
from gate_core.service._slack_card import ACTION_APPROVE
from tests.service.scim_rig import SLACK_SECRET, ScimRig, person_token
from tests.service.slack_standin import block_actions, signed_interaction

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _console(rig: ScimRig, who: str) -> httpx.Client:
    client = httpx.Client(base_url=rig.base_url, timeout=30)
    page = client.get("/console/login")
    token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    assert (
        client.post("/console/login/local", data={"csrf_token": token, "principal": who}).status_code == 303
    )
    assert "Signed in as" in client.get("/console/").text
    return client


def _provision(rig: ScimRig) -> tuple[str, str, str]:
    bob = rig.create_user("bob", "bob@example.com", externalId="00u1bob")
    carol = rig.create_user("carol", "carol@example.com", externalId="00u1carol")
    group = rig.create_group("data-governance", [bob, carol])
    return bob, carol, group


def _slack_click(rig: ScimRig, user: str, gate_id: str) -> httpx.Response:
    payload = block_actions(
        user=user, action_id=ACTION_APPROVE, value=gate_id, response_url=rig.slack.response_url()
    )
    body, headers = signed_interaction(payload, SLACK_SECRET)
    return httpx.post(f"{rig.base_url}/v1/slack/interactions", content=body, headers=headers, timeout=30)


def test_a_deactivated_approver_decides_nothing_on_any_channel(scim_rig: ScimRig) -> None:
    rig = scim_rig
    bob_id, _, _ = _provision(rig)
    person_token(rig, "bob")
    person_token(rig, "carol")
    bob_console = _console(rig, "bob")
    gate_id = rig.open_gate()
    page = bob_console.get(f"/console/gates/{gate_id}")
    assert page.status_code == 200 and "You may not decide" not in page.text  # bob could, a moment ago

    # Entra ID's dialect: a capitalised op and a string boolean
    leave = rig.patch(f"/Users/{bob_id}", {"op": "Replace", "path": "active", "value": "False"})
    assert leave.status_code == 200, leave.text
    assert leave.json()["active"] is False

    # 1. the API, with bob's own decide token
    with rig.api("bob") as bob:
        refused = bob.post(f"/v1/gates/{gate_id}/decisions", json={"decision": "approve"})
    assert refused.status_code == 401, refused.text

    # 2. Slack: the card is still on his screen
    click = _slack_click(rig, "U0BOB", gate_id)
    assert click.status_code == 200
    ephemeral = rig.slack.wait_for_ephemeral()[-1]
    assert "left the directory" in ephemeral["text"], ephemeral

    # 3. the console, in the session he opened before leaving
    csrf = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    posted = bob_console.post(
        f"/console/gates/{gate_id}/decide", data={"csrf_token": csrf, "verdict": "approve", "comment": ""}
    )
    assert posted.status_code == 303 and "/console/login" in posted.headers["location"], posted.text
    assert "Signed in as" not in bob_console.get("/console/").text  # the session ended

    gate = rig.gatekeeper.get(gate_id)
    assert gate.status is GateStatus.PENDING and not gate.approvals

    refused_on_gate = [
        e for e in rig.audit("decision.refused") if e.get("payload", {}).get("reason") == "principal_departed"
    ]
    assert len(refused_on_gate) == 1 and refused_on_gate[0]["actor"]["via"] == "slack", refused_on_gate
    access = rig.audit("access.refused")
    attempts = sorted(e["payload"]["attempt"] for e in access)
    assert any(a == f"POST /v1/gates/{gate_id}/decisions" for a in attempts), attempts
    assert any("console session" in a for a in attempts), attempts
    revoked = [e for e in rig.audit("token.revoked") if e["payload"].get("principal") == "bob"]
    assert revoked and revoked[0]["payload"]["reason"] == "left the directory"
    changed = [e for e in rig.audit("directory.changed") if e["payload"]["id"] == bob_id][-1]
    assert changed["payload"]["changed"] == {"active": {"from": True, "to": False}}

    # carol, still in data-governance, approves as before
    with rig.api("carol") as carol:
        approved = carol.post(f"/v1/gates/{gate_id}/decisions", json={"decision": "approve"})
    assert approved.status_code == 200, approved.text
    assert rig.gatekeeper.get(gate_id).status is GateStatus.APPROVED


def test_leaving_the_group_ends_the_right_to_approve_at_once_and_joining_grants_it(scim_rig: ScimRig) -> None:
    rig = scim_rig
    bob_id, carol_id, group_id = _provision(rig)
    person_token(rig, "bob")
    gate_id = rig.open_gate()
    # Okta's dialect: remove one member by a value filter
    removed = rig.patch(f"/Groups/{group_id}", {"op": "remove", "path": f'members[value eq "{bob_id}"]'})
    assert removed.status_code == 200, removed.text
    with rig.api("bob") as bob:
        refused = bob.post(f"/v1/gates/{gate_id}/decisions", json={"decision": "approve"})
    assert refused.status_code == 403, refused.text
    refusals = rig.audit("decision.refused")
    assert refusals and refusals[-1]["actor"]["principal_id"] == "bob", refusals

    added = rig.patch(f"/Groups/{group_id}", {"op": "add", "path": "members", "value": [{"value": bob_id}]})
    assert added.status_code == 200, added.text
    with rig.api("bob") as bob:
        approved = bob.post(f"/v1/gates/{gate_id}/decisions", json={"decision": "approve"})
    assert approved.status_code == 200, approved.text
    assert carol_id  # carol stayed throughout


def test_a_scim_credential_dies_with_its_owners_admin_rights(scim_rig: ScimRig) -> None:
    """frank's SCIM token works while frank is in gatehouse-admins (the file says so); a token a
    departed admin made would stop with their directory entry (see the token test above)."""
    rig = scim_rig
    with rig.scim() as scim:
        assert scim.get("/Users").status_code == 200
    assert Scope.SCIM.allows(Scope.SCIM) and not Scope.ADMIN.allows(Scope.SCIM)


def test_a_leavers_pending_requests_stay_visible_with_a_flag(scim_rig: ScimRig) -> None:
    rig = scim_rig
    bob_id, _, _ = _provision(rig)
    person_token(rig, "bob")
    request = {
        "action": "export",
        "target": "s3://exports/bob.csv",
        "datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["pii"]}],
        "reason": "before leaving",
    }
    with rig.api("bob") as bob:
        opened = bob.post("/v1/gates", json=request)
    assert opened.status_code == 200, opened.text
    gate_id = opened.json()["id"]
    assert rig.patch(f"/Users/{bob_id}", {"op": "replace", "value": {"active": False}}).status_code == 200
    carol = _console(rig, "carol")
    assert "(left)" in carol.get("/console/").text
    page = carol.get(f"/console/gates/{gate_id}")
    assert page.status_code == 200 and "has left the directory" in page.text
    assert rig.gatekeeper.get(gate_id).status is GateStatus.PENDING
