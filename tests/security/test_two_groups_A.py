"""Adversary A (one approver acting alone) against a rule that needs several groups at once.
Property 3: one human counts once — each requirement counts distinct people and one person never
satisfies two requirements, whatever groups they are in.

Before issue 16 the policy could not say "one from data-governance AND one from ml-leads" at all:
``groups: [data-governance, ml-leads], count: 2`` was met by two data-governance members.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate_core import CheckpointSigner, Gatekeeper, GateRequest, GateStatus, SqlStore, Verdict
from gate_core._errors import DuplicateDecision, NotAnApprover
from gate_core.identity import Directory
from gate_core.testing import ManualClock, actor, example_policy
from tests.conftest import Report
from tests.service.conftest import Service

DIRECTORY = """
principals:
  - {id: alice, email: alice@example.com, groups: [data-engineering]}
  - {id: bob, email: bob@example.com, groups: [data-governance, ml-leads]}
  - {id: carol, email: carol@example.com, groups: [data-governance]}
  - {id: dave, email: dave@example.com, groups: [ml-leads]}
  - {id: bot, email: bot@service.example.com, kind: service}
"""


def test_two_groups_over_http_need_one_from_each(service: Service) -> None:
    with service.client("bot") as bot, service.client("bob") as bob, service.client("carol") as carol:
        opened = bot.post(
            "/v1/gates", json={"action": "model_publish", "target": "models/churn", "requester": "alice"}
        )
        assert opened.status_code == 200, opened.text
        gate = opened.json()
        assert (gate["rule"], gate["required_approvals"]) == ("model-publish", 2)
        assert "1 approval from data-governance and 1 approval from ml-leads" in gate["explanation"]
        first = bob.post(f"/v1/gates/{gate['id']}/decisions", json={"decision": "approve"})
        assert first.json()["status"] == "PENDING"
        # a second data-governance approver adds nothing: refused, saying who is still needed
        second = carol.post(f"/v1/gates/{gate['id']}/decisions", json={"decision": "approve"})
        assert second.status_code == 403, second.text
        assert "still needed: 1 from ml-leads" in second.text
    with service.client("dave") as dave:
        third = dave.post(f"/v1/gates/{gate['id']}/decisions", json={"decision": "approve"})
        assert third.json()["status"] == "APPROVED"
        assert [d["counts_for"] for d in third.json()["decisions"]] == [0, 1]


def test_one_person_in_both_groups_never_satisfies_both(store: SqlStore, report: Report) -> None:
    signer = CheckpointSigner(Ed25519PrivateKey.generate())  # verifying needs a trust root (issue 17)
    gk = Gatekeeper(store, Directory.parse(DIRECTORY), example_policy(), clock=ManualClock(), signer=signer)
    gate = gk.open(GateRequest(action="model_publish", requester="alice"), submitted_by=actor("bot"))
    after_bob = gk.decide(gate.id, actor=actor("bob"), verdict=Verdict.APPROVE)
    assert after_bob.status is GateStatus.PENDING  # bob is in both groups and still counts once
    with pytest.raises(DuplicateDecision, match="one person counts once"):
        gk.decide(gate.id, actor=actor("bob"), verdict=Verdict.APPROVE)
    # bob's approval took the data-governance requirement (the first open one his groups meet):
    # a second data-governance approver is refused; an ML lead completes the gate
    with pytest.raises(NotAnApprover, match="still needed: 1 from ml-leads"):
        gk.decide(gate.id, actor=actor("carol"), verdict=Verdict.APPROVE)
    done = gk.decide(gate.id, actor=actor("dave"), verdict=Verdict.APPROVE)
    assert done.status is GateStatus.APPROVED
    assert len({d.principal_id for d in done.approvals}) == 2
    assert [d.counts_for for d in done.approvals] == [0, 1]
    reread = store.get_gate(gate.id)  # stored and read back, on SQLite and PostgreSQL
    assert reread.requirements == done.requirements and len(reread.requirements) == 2
    assert gk.audit.verify().ok
    report("Two groups (A): gates one person approved alone", 0, "", "0")
