"""Who may decide a gate, and what their decision does. Pure functions over immutable values.

The rules, in the order they are checked (the first that applies answers):
1. a gate that has left PENDING answers "already <status> by <who> at <when>" and changes nothing;
2. a gate past its deadline is expired: its step must not run;
3. service principals never decide;
4. nobody involved — the requester, the submitting principal, whoever triggered the run, every person
   the pipeline names, the pipeline's owners (``Gate.involved``); the same id, or the same e-mail
   under another id, compared in the canonical form of gate_core.identity — decides; there is no
   admin bypass;
5. only members of the rule's approver groups, or of its break-glass groups, decide — identified
   by one of the rule's ``identified_by`` methods when it lists any;
6. one person counts once: a second decision by the same person is refused;
7. any allowed reject is final; approvals complete when the distinct approvers reach the rule's
   count, or at once when the approver acts through a break-glass group (flagged in the audit).
   A rule with several requirements at once (``approvers: {all_of: ...}``) completes when each is
   met; each approval counts toward one requirement (the first still open that the approver's
   groups meet), so one person never satisfies two, and an approval no open requirement can use
   is refused, saying which requirement still needs whom.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gate_core._errors import (
    AlreadyDecided,
    DuplicateDecision,
    GateExpired,
    NotAnApprover,
    SelfApprovalRefused,
    ServicePrincipalRefused,
)
from gate_core._models import Gate, GateStatus, Principal, PrincipalKind, Verdict
from gate_core.identity import AuthMethod, canonical_key, identity_key, same_person


@dataclass(frozen=True, slots=True)
class DecisionEffect:
    """What an accepted decision does to its gate."""

    new_status: GateStatus
    break_glass: bool
    approvals_after: int
    counts_for: int | None = None  # the requirement this approval fills (multi-group rules)


def is_expired(gate: Gate, now: datetime) -> bool:
    return gate.status is GateStatus.PENDING and now >= gate.expires_at


def refuse_if_closed(gate: Gate, now: datetime) -> None:
    if gate.status is not GateStatus.PENDING:
        raise AlreadyDecided(gate.status.value, gate.decided_by, gate.decided_at)
    if is_expired(gate, now):
        raise GateExpired(f"gate {gate.id} expired at {gate.expires_at.isoformat(timespec='seconds')}")


def is_requester(gate: Gate, principal: Principal) -> bool:
    stored = {canonical_key(key) for key in gate.requester_identities}  # gates opened by older versions too
    return bool(set(principal.identity_keys) & stored)


def _why_involved(gate: Gate, principal: Principal) -> str:
    """The refusal for someone involved: the requester's own words, else how they are involved."""
    named = [
        person
        for person in gate.involved
        if person.source != "requester"
        and {identity_key("id", person.principal), identity_key("email", person.principal)}
        & set(principal.identity_keys)
    ]
    if same_person(gate.request.requester, None, principal.id, None) or not named:
        return f"{principal.id}: you requested this gate; someone else must decide it"
    return (
        f"{principal.id}: you are involved in this request ({named[0].source}); someone else must decide it"
    )


def judge_decision(
    gate: Gate, principal: Principal, verdict: Verdict, now: datetime, *, via: AuthMethod | None = None
) -> DecisionEffect:
    """Accept a decision and say what it does, or raise the DecisionRefused that explains why not."""
    refuse_if_closed(gate, now)
    if principal.kind is not PrincipalKind.HUMAN:
        raise ServicePrincipalRefused(
            f"{principal.id} is a service principal; service principals never decide"
        )
    if is_requester(gate, principal):
        raise SelfApprovalRefused(_why_involved(gate, principal))
    in_approvers = bool(principal.groups & set(gate.approver_groups))
    in_break_glass = bool(principal.groups & set(gate.break_glass_groups))
    if not (in_approvers or in_break_glass):
        allowed = " or ".join(gate.approver_groups) or "nobody"
        raise NotAnApprover(f"{principal.id} is not in an approver group of this gate (needs {allowed})")
    if gate.identified_by and via is not None and via.value not in gate.identified_by:
        raise NotAnApprover(
            f"{principal.id}: rule {gate.rule!r} needs an approver identified by "
            f"{' or '.join(gate.identified_by)}; you were identified by {via.value}"
            + (" (a sandbox name is never verified)" if via is AuthMethod.SANDBOX else "")
        )
    for earlier in gate.decisions:
        if same_person(earlier.principal_id, earlier.email, principal.id, principal.email):
            raise DuplicateDecision(
                f"{principal.id} already decided ({earlier.verdict.value}) at "
                f"{earlier.at.isoformat(timespec='seconds')}; one person counts once"
            )
    if verdict is Verdict.REJECT:
        return DecisionEffect(GateStatus.REJECTED, break_glass=False, approvals_after=len(gate.approvals))
    if gate.requirements:
        return _judge_requirements(gate, principal, in_break_glass)
    approvals_after = len(gate.approvals) + 1
    if approvals_after >= gate.required_approvals:
        return DecisionEffect(GateStatus.APPROVED, break_glass=False, approvals_after=approvals_after)
    if in_break_glass:
        return DecisionEffect(GateStatus.APPROVED, break_glass=True, approvals_after=approvals_after)
    return DecisionEffect(GateStatus.PENDING, break_glass=False, approvals_after=approvals_after)


def _judge_requirements(gate: Gate, principal: Principal, in_break_glass: bool) -> DecisionEffect:
    """An approval on a gate with several requirements: it fills one open requirement."""
    filled = [sum(1 for a in gate.approvals if a.counts_for == i) for i in range(len(gate.requirements))]
    approvals_after = len(gate.approvals) + 1
    open_for_me = [
        i
        for i, requirement in enumerate(gate.requirements)
        if filled[i] < requirement.count and principal.groups & set(requirement.groups)
    ]
    if not open_for_me:
        if in_break_glass:
            return DecisionEffect(GateStatus.APPROVED, break_glass=True, approvals_after=approvals_after)
        still = [
            f"{r.count - filled[i]} from {r.label}"
            for i, r in enumerate(gate.requirements)
            if filled[i] < r.count
        ]
        raise NotAnApprover(
            f"{principal.id}: every requirement your groups meet already has its approvals; "
            f"one person counts toward one requirement (still needed: {'; '.join(still)})"
        )
    chosen = open_for_me[0]
    filled[chosen] += 1
    done = all(f >= r.count for f, r in zip(filled, gate.requirements, strict=True))
    if not done and in_break_glass:
        return DecisionEffect(GateStatus.APPROVED, True, approvals_after, counts_for=chosen)
    status = GateStatus.APPROVED if done else GateStatus.PENDING
    return DecisionEffect(status, break_glass=False, approvals_after=approvals_after, counts_for=chosen)
