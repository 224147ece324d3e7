"""The decision rules, end to end through the Gatekeeper and a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from gate_core import (
    AlreadyDecided,
    ApprovalNotUsable,
    Directory,
    DuplicateDecision,
    Event,
    GateExpired,
    GateFilter,
    Gatekeeper,
    GateNotFound,
    GateStatus,
    IdempotencyConflict,
    NotAnApprover,
    NotTheRequester,
    Principal,
    PrincipalKind,
    RunContext,
    SelfApprovalRefused,
    ServicePrincipalRefused,
    SubmitterNotAllowed,
    UnknownPrincipal,
)
from gate_core.testing import ManualClock, actor, example_directory, example_policy
from tests.gate_core.conftest import pii_export, prod_redeploy


def events_of(gk: Gatekeeper, gate_id: str) -> list[str]:
    return [e.event for e in gk.store.audit_entries() if e.gate_id == gate_id]


def test_pii_export_needs_one_governance_approval(gatekeeper: Gatekeeper) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    assert gate.status is GateStatus.PENDING
    assert gate.rule == "pii-export"
    assert "dataset tag pii on warehouse/customers" in gate.explanation
    assert gate.required_approvals == 1
    assert gate.policy_hash == gatekeeper.policy.hash

    approved = gatekeeper.approve(gate.id, actor=actor("bob"), comment="ok for Q3")
    assert approved.status is GateStatus.APPROVED
    assert approved.decided_by == ("bob",)
    assert approved.decisions[0].comment == "ok for Q3"
    assert events_of(gatekeeper, gate.id) == [
        Event.GATE_REQUESTED,
        Event.POLICY_EVALUATED,
        Event.DECISION_RECORDED,
        Event.GATE_APPROVED,
    ]


def test_requester_can_never_approve_their_own_gate(gatekeeper: Gatekeeper) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    with pytest.raises(SelfApprovalRefused, match="you requested this gate"):
        gatekeeper.approve(gate.id, actor=actor("alice"))
    assert gatekeeper.get(gate.id).status is GateStatus.PENDING
    assert events_of(gatekeeper, gate.id)[-1] == Event.DECISION_REFUSED


def test_same_email_under_another_id_is_the_same_person(store, clock, signer) -> None:
    # alice also exists as "alice-admin" in data-governance, with the same mailbox: still alice.
    people = [
        *example_directory(),
        Principal(id="alice-admin", email="ALICE@example.com", groups=frozenset({"data-governance"})),
    ]
    gk = Gatekeeper(store, Directory(people), example_policy(), clock=clock, signer=signer)
    gate = gk.open(pii_export(), submitted_by=actor("alice"))
    with pytest.raises(SelfApprovalRefused):
        gk.approve(gate.id, actor=actor("alice-admin"))


def test_service_principals_never_decide(gatekeeper: Gatekeeper) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    with pytest.raises(ServicePrincipalRefused):
        gatekeeper.approve(gate.id, actor=actor("etl-bot"))


def test_only_approver_groups_decide(gatekeeper: Gatekeeper) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    with pytest.raises(NotAnApprover, match="data-governance"):
        gatekeeper.approve(gate.id, actor=actor("dave"))  # ml-leads, not data-governance


def test_unknown_principal_is_refused(gatekeeper: Gatekeeper) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    with pytest.raises(UnknownPrincipal):
        gatekeeper.approve(gate.id, actor=actor("mallory"))
    with pytest.raises(UnknownPrincipal):
        gatekeeper.open(pii_export(requester="mallory"), submitted_by=actor("etl-bot"))


def test_quorum_counts_distinct_people(gatekeeper: Gatekeeper) -> None:
    gate = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
    assert gate.required_approvals == 2
    once = gatekeeper.approve(gate.id, actor=actor("bob"))
    assert once.status is GateStatus.PENDING
    assert once.approvals_missing() == 1
    with pytest.raises(DuplicateDecision, match="one person counts once"):
        gatekeeper.approve(gate.id, actor=actor("bob"))
    twice = gatekeeper.approve(gate.id, actor=actor("dave"))
    assert twice.status is GateStatus.APPROVED
    assert twice.decided_by == ("bob", "dave")
    decided = [e for e in events_of(gatekeeper, gate.id) if e == Event.DECISION_RECORDED]
    assert len(decided) == 2


def test_any_reject_is_final(gatekeeper: Gatekeeper) -> None:
    gate = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
    gatekeeper.approve(gate.id, actor=actor("bob"))
    rejected = gatekeeper.reject(gate.id, actor=actor("dave"), reason="benchmarks regressed")
    assert rejected.status is GateStatus.REJECTED
    with pytest.raises(AlreadyDecided, match="already rejected by dave at"):
        gatekeeper.approve(gate.id, actor=actor("carol"))


def test_late_decision_names_who_decided_and_when(gatekeeper: Gatekeeper, clock: ManualClock) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    gatekeeper.approve(gate.id, actor=actor("bob"))
    with pytest.raises(AlreadyDecided) as refused:
        gatekeeper.approve(gate.id, actor=actor("carol"))
    assert str(refused.value) == f"already approved by bob at {clock.now().isoformat(timespec='seconds')}"
    assert gatekeeper.get(gate.id).decided_by == ("bob",)


def test_break_glass_approves_alone_and_is_flagged(gatekeeper: Gatekeeper) -> None:
    gate = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
    approved = gatekeeper.approve(gate.id, actor=actor("erin"), comment="outage fix")
    assert approved.status is GateStatus.APPROVED
    assert approved.decisions[0].break_glass is True
    closing = [e.decoded() for e in gatekeeper.store.audit_entries() if e.event == Event.GATE_APPROVED][-1]
    assert closing["payload"]["break_glass"] is True
    assert "BREAK-GLASS" in closing["payload"]["warning"]


def test_expired_gate_refuses_decisions_and_cannot_be_consumed(
    gatekeeper: Gatekeeper, clock: ManualClock
) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    clock.advance(hours=4, seconds=1)
    with pytest.raises(GateExpired):
        gatekeeper.approve(gate.id, actor=actor("bob"))
    expired = gatekeeper.get(gate.id)
    assert expired.status is GateStatus.EXPIRED
    with pytest.raises(ApprovalNotUsable, match="EXPIRED"):
        gatekeeper.consume(gate.id, actor=actor("etl-bot"), binding_hash=gate.binding_hash)
    assert Event.GATE_EXPIRED in events_of(gatekeeper, gate.id)


def test_expire_due_sweeps_overdue_gates(gatekeeper: Gatekeeper, clock: ManualClock) -> None:
    short = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))  # 2h
    long = gatekeeper.open(pii_export(), submitted_by=actor("alice"))  # 4h
    clock.advance(hours=3)
    assert [g.id for g in gatekeeper.expire_due()] == [short.id]
    assert gatekeeper.store.get_gate(long.id).status is GateStatus.PENDING


def test_idempotency_key_returns_the_same_gate(gatekeeper: Gatekeeper) -> None:
    run = RunContext(orchestrator="airflow", pipeline="exports", run_id="r1", task_id="export", try_number=1)
    first = gatekeeper.open(
        pii_export(idempotency_key="exports/r1/export", run=run), submitted_by=actor("etl-bot")
    )
    retry = gatekeeper.open(
        pii_export(idempotency_key="exports/r1/export", run=run.model_copy(update={"try_number": 2})),
        submitted_by=actor("etl-bot"),
    )
    assert retry.id == first.id
    assert len(gatekeeper.store.list_gates(GateFilter())) == 1


def test_idempotency_key_with_a_different_payload_is_a_conflict(gatekeeper: Gatekeeper) -> None:
    gatekeeper.open(pii_export(idempotency_key="k1"), submitted_by=actor("alice"))
    with pytest.raises(IdempotencyConflict, match="different payload needs a new key"):
        gatekeeper.open(
            pii_export(idempotency_key="k1", target="s3://elsewhere"), submitted_by=actor("alice")
        )


def test_consume_is_bound_to_the_exact_payload(gatekeeper: Gatekeeper, clock: ManualClock) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    with pytest.raises(ApprovalNotUsable, match="not APPROVED"):
        gatekeeper.consume(gate.id, actor=actor("alice"), binding_hash=gate.binding_hash)
    gatekeeper.approve(gate.id, actor=actor("bob"))
    other = pii_export(parameters={"limit": 10}).binding_hash()
    with pytest.raises(ApprovalNotUsable, match="other action, parameters or datasets; open a new gate"):
        gatekeeper.consume(gate.id, actor=actor("alice"), binding_hash=other)
    consumed = gatekeeper.consume(gate.id, actor=actor("alice"), binding_hash=gate.binding_hash)
    assert consumed.status is GateStatus.CONSUMED
    # a retry of the same step within the expiry may run again under its own approval ...
    again = gatekeeper.consume(gate.id, actor=actor("alice"), binding_hash=gate.binding_hash, try_number=2)
    assert again.consumed_at == consumed.consumed_at
    # ... but not after it
    clock.advance(hours=5)
    with pytest.raises(ApprovalNotUsable, match="expired"):
        gatekeeper.consume(gate.id, actor=actor("alice"), binding_hash=gate.binding_hash, try_number=3)


def test_cancel_only_by_requester(gatekeeper: Gatekeeper) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    with pytest.raises(NotTheRequester):
        gatekeeper.cancel(gate.id, actor=actor("bob"))
    cancelled = gatekeeper.cancel(gate.id, actor=actor("alice"), reason="wrong quarter")
    assert cancelled.status is GateStatus.CANCELLED
    with pytest.raises(AlreadyDecided, match="already cancelled by alice"):
        gatekeeper.approve(gate.id, actor=actor("bob"))


def test_policy_allow_and_unmatched_default(gatekeeper: Gatekeeper) -> None:
    allowed = gatekeeper.open(pii_export(datasets=(), environment="dev"), submitted_by=actor("alice"))
    assert allowed.status is GateStatus.APPROVED
    assert allowed.rule == "dev-export"
    unmatched = gatekeeper.open(pii_export(action="billing_change", datasets=()), submitted_by=actor("alice"))
    assert unmatched.status is GateStatus.PENDING
    assert unmatched.rule == "default"
    assert unmatched.approver_groups == ("data-governance",)


def test_only_service_principals_act_for_others(gatekeeper: Gatekeeper) -> None:
    with pytest.raises(SubmitterNotAllowed):
        gatekeeper.open(pii_export(requester="carol"), submitted_by=actor("bob"))
    gate = gatekeeper.open(pii_export(requester="alice"), submitted_by=actor("etl-bot"))
    assert gate.submitted_by == "etl-bot"
    with pytest.raises(SelfApprovalRefused):
        gatekeeper.approve(gate.id, actor=actor("alice"))


def test_unknown_gate(gatekeeper: Gatekeeper) -> None:
    with pytest.raises(GateNotFound, match="no gate with id 'gNOPE'"):
        gatekeeper.approve("gNOPE", actor=actor("bob"))
    with pytest.raises(GateNotFound):
        gatekeeper.get("gNOPE")


def test_last_review_is_carried_to_the_next_gate(gatekeeper: Gatekeeper) -> None:
    first = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    gatekeeper.approve(first.id, actor=actor("carol"))
    second = gatekeeper.open(pii_export(reason="again"), submitted_by=actor("alice"))
    assert second.last_review is not None
    assert second.last_review.gate_id == first.id
    assert second.last_review.decided_by == ("carol",)


def test_secrets_in_parameters_never_reach_the_audit_log(gatekeeper: Gatekeeper) -> None:
    gate = gatekeeper.open(
        pii_export(
            parameters={"password": "hunter2-SENTINEL", "nested": {"api_key": "SENTINEL-KEY"}, "rows": 5}
        ),
        submitted_by=actor("alice"),
    )
    bodies = "".join(e.body for e in gatekeeper.store.audit_entries())
    assert "SENTINEL" not in bodies
    assert '"rows":5' in bodies
    # the approval still binds the real values
    assert (
        gate.binding_hash
        == pii_export(
            parameters={"password": "hunter2-SENTINEL", "nested": {"api_key": "SENTINEL-KEY"}, "rows": 5}
        ).binding_hash()
    )


def test_every_audit_entry_verifies_and_is_checkpointed(gatekeeper: Gatekeeper) -> None:
    for _ in range(3):
        gate = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
        gatekeeper.approve(gate.id, actor=actor("bob"))
        gatekeeper.approve(gate.id, actor=actor("carol"))
    report = gatekeeper.audit.verify()
    assert report.ok, report.summary()
    assert report.checkpoints_checked >= 2
    assert report.entries == gatekeeper.store.audit_head()[0]


def test_service_principal_kind_is_from_the_directory_not_the_caller() -> None:
    assert example_directory().get("etl-bot").kind is PrincipalKind.SERVICE


def test_decide_many_judges_each_decision_after_the_ones_before_it(gatekeeper: Gatekeeper) -> None:
    from gate_core import DecisionRequest, Verdict

    redeploy = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
    export = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    results = gatekeeper.decide_many(
        [
            DecisionRequest(redeploy.id, actor("bob"), Verdict.APPROVE),
            DecisionRequest(redeploy.id, actor("bob"), Verdict.APPROVE),  # same person again, same batch
            DecisionRequest(export.id, actor("alice"), Verdict.APPROVE),  # requester
            DecisionRequest("gNOPE", actor("bob"), Verdict.APPROVE),
            DecisionRequest(redeploy.id, actor("dave"), Verdict.APPROVE),  # completes the quorum
            DecisionRequest(export.id, actor("carol"), Verdict.APPROVE),
            DecisionRequest(redeploy.id, actor("carol"), Verdict.APPROVE),  # too late
        ]
    )
    kinds = [type(r).__name__ for r in results]
    assert kinds == [
        "Gate",
        "DuplicateDecision",
        "SelfApprovalRefused",
        "GateNotFound",
        "Gate",
        "Gate",
        "AlreadyDecided",
    ]
    assert gatekeeper.get(redeploy.id).decided_by == ("bob", "dave")
    assert gatekeeper.get(export.id).status is GateStatus.APPROVED
    recorded = [e for e in gatekeeper.store.audit_entries() if e.event == Event.DECISION_RECORDED]
    assert len(recorded) == 3
    assert gatekeeper.audit.verify().ok


def test_a_principal_can_be_named_by_email(gatekeeper: Gatekeeper) -> None:
    gate = gatekeeper.open(pii_export(requester="Alice@Example.com"), submitted_by=actor("etl-bot"))
    assert gate.request.requester == "alice"
    with pytest.raises(SelfApprovalRefused):
        gatekeeper.approve(gate.id, actor=actor("alice"))
    assert gatekeeper.approve(gate.id, actor=actor("bob@example.com")).decided_by == ("bob",)


def test_gate_states_reads_status_and_expiry_of_known_ids_only(gatekeeper: Gatekeeper) -> None:
    """What the long-poll reads every cycle: narrow, unknown ids left out, duplicates harmless, and
    more ids than one statement may bind (the store splits them)."""
    approved = gatekeeper.open(pii_export(reason="a"), submitted_by=actor("alice"))
    pending = gatekeeper.open(pii_export(reason="b"), submitted_by=actor("alice"))
    gatekeeper.approve(approved.id, actor=actor("bob"))
    many = [f"nosuchgate{i}" for i in range(25_000)]
    states = gatekeeper.store.gate_states([*many, pending.id, approved.id, pending.id])
    assert set(states) == {approved.id, pending.id}
    assert states[approved.id].status is GateStatus.APPROVED
    assert states[pending.id].status is GateStatus.PENDING
    assert states[pending.id].expires_at == pending.expires_at
    assert states[pending.id].expires_at.tzinfo is not None
