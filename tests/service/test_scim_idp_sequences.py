"""Recorded request sequences in the shapes Okta and Microsoft Entra ID send (fixtures/scim/*.json,
from their public provisioning docs): look up, create two users, create the group, add them,
change an e-mail, open a gate, deactivate one. After each step the directory, the audit and the
decisions that follow must be right — on SQLite and PostgreSQL, over a real socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gate_core import GateStatus, UnknownPrincipal
from tests.service.scim_rig import ScimRig, person_token

FIXTURES = Path(__file__).parent / "fixtures" / "scim"


def _fill(value: Any, saved: dict[str, str]) -> Any:
    """The ids the service assigned, put where the IdP would send them (``{bob}``)."""
    text = json.dumps(value)
    for name, resource_id in saved.items():
        text = text.replace("{" + name + "}", resource_id)
    return json.loads(text)


@pytest.mark.parametrize("idp", ["okta", "entra"])
def test_an_idp_sequence_provisions_the_directory_and_leaving_ends_the_right_to_approve(
    scim_rig: ScimRig, idp: str
) -> None:
    rig = scim_rig
    sequence = json.loads((FIXTURES / f"{idp}.json").read_text(encoding="utf-8"))
    saved: dict[str, str] = {}
    gate_id = ""
    for step in sequence["steps"]:
        if step.get("gate"):
            # bob and dana are approvers now, by the group the IdP pushed; bob's new mailbox is his
            bob = rig.gatekeeper.directory.get("bob@example.com")
            assert bob.groups == frozenset({"data-governance"})
            assert bob.email == "bob.builder@example.com"
            assert rig.gatekeeper.directory.by_email("bob.builder@example.com").id == "bob@example.com"
            with pytest.raises(UnknownPrincipal):
                rig.gatekeeper.directory.by_email("bob@example.com")  # his old mailbox names nobody now
            person_token(rig, "bob@example.com")
            person_token(rig, "dana@example.com")
            gate_id = rig.open_gate()
            continue
        response = rig.send(step["method"], _fill(step["path"], saved), _fill(step.get("body"), saved))
        expected = step["expect"] if isinstance(step["expect"], list) else [step["expect"]]
        assert response.status_code in expected, (step["name"], response.text)
        assert (
            response.headers["content-type"].startswith("application/scim+json")
            or response.status_code == 204
        )
        if "expect_total" in step:
            assert response.json()["totalResults"] == step["expect_total"], step["name"]
        if "save" in step:
            saved[step["save"]] = response.json()["id"]
            assert "password" not in response.json()  # never stored, never returned

    # bob left: he decides nothing, his token is dead; dana approves
    assert rig.gatekeeper.directory.find("bob@example.com") is None
    with rig.api("bob@example.com") as bob_api:
        assert bob_api.post(f"/v1/gates/{gate_id}/decisions", json={"decision": "approve"}).status_code == 401
    with rig.api("dana@example.com") as dana:
        approved = dana.post(f"/v1/gates/{gate_id}/decisions", json={"decision": "approve"})
    assert approved.status_code == 200, approved.text
    gate = rig.gatekeeper.get(gate_id)
    assert gate.status is GateStatus.APPROVED and [d.principal_id for d in gate.approvals] == [
        "dana@example.com"
    ]

    # the audit says what changed, step by step
    changes = [e["payload"] for e in rig.audit("directory.changed")]
    assert [c["version"] for c in changes] == list(range(1, len(changes) + 1))
    bob_changes = [c["changed"] for c in changes if c["id"] == saved["bob"]]
    assert bob_changes[0]["userName"] == {"from": None, "to": "bob@example.com"}
    assert {"from": ["bob@example.com"], "to": ["bob.builder@example.com"]} in [
        c.get("emails") for c in bob_changes
    ]
    assert {"from": True, "to": False} in [c.get("active") for c in bob_changes]
    member_changes = [
        c["changed"]["members"]
        for c in changes
        if c["id"] == saved["governance"] and "members" in c["changed"]
    ]
    assert {"added": ["bob@example.com", "dana@example.com"], "removed": []} in member_changes
    externals = {c["after"]["externalId"] for c in changes if c["resource"] == "User" and c["after"]}
    assert len(externals) == 2  # the IdP's link of each person is kept (and audited)
    assert rig.gatekeeper.audit.verify().ok
