"""Property: whatever sequence of requests and decisions happens, no gate is ever approved by its
requester (under any id sharing their e-mail), by a service principal or by a non-member, and
quorum counts distinct people."""

from __future__ import annotations

import contextlib
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate_core import (
    DatasetRef,
    DecisionRefused,
    Directory,
    GateFilter,
    Gatekeeper,
    GateRequest,
    GateStatus,
    Principal,
    PrincipalKind,
    Verdict,
)
from gate_core.testing import ManualClock, actor, example_gatekeeper, example_policy

PEOPLE = [
    Principal(id="alice", email="alice@example.com", groups=frozenset({"data-engineering"})),
    Principal(id="alice-ops", email="Alice@Example.com", groups=frozenset({"data-governance", "ml-leads"})),
    Principal(id="bob", email="bob@example.com", groups=frozenset({"data-governance"})),
    Principal(id="carol", email="carol@example.com", groups=frozenset({"data-governance"})),
    Principal(id="dave", email="dave@example.com", groups=frozenset({"ml-leads"})),
    Principal(id="erin", email="erin@example.com", groups=frozenset({"sre-oncall"})),
    Principal(id="frank", groups=frozenset({"marketing"})),
    Principal(id="etl-bot", kind=PrincipalKind.SERVICE, groups=frozenset({"data-governance"})),
    Principal(
        id="gov-bot",
        kind=PrincipalKind.SERVICE,
        email="bob@example.com",
        groups=frozenset({"data-governance"}),
    ),
]
DIRECTORY = Directory(PEOPLE)
IDS = [p.id for p in PEOPLE]
HUMANS = [p.id for p in PEOPLE if p.kind is PrincipalKind.HUMAN]

requests = st.builds(
    lambda action, env, tags, requester: (action, env, tags, requester),
    st.sampled_from(["export", "redeploy", "role_escalation", "billing_change", "infra_change"]),
    st.sampled_from(["", "dev", "prod"]),
    st.sets(st.sampled_from(["pii", "internal", "finance"]), max_size=2),
    st.sampled_from(HUMANS),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("open"), requests),
        st.tuples(
            st.just("decide"), st.integers(0, 20), st.sampled_from(IDS), st.sampled_from(list(Verdict))
        ),
        st.tuples(st.just("tick"), st.integers(1, 3 * 3600)),
    ),
    min_size=1,
    max_size=40,
)


@cache
def _gatekeeper() -> tuple[Gatekeeper, ManualClock]:
    clock = ManualClock()
    return example_gatekeeper(clock=clock, directory=DIRECTORY, policy=example_policy()), clock


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_no_approval_by_requester_service_or_non_member(script: list[tuple]) -> None:  # type: ignore[type-arg]
    gatekeeper, clock = _gatekeeper()
    opened: list[str] = []
    for step in script:
        if step[0] == "open":
            action, env, tags, requester = step[1]
            datasets = (DatasetRef(namespace="wh", name="t", tags=frozenset(tags)),) if tags else ()
            gate = gatekeeper.open(
                GateRequest(
                    action=action, environment=env, datasets=datasets, requester=requester, target="x"
                ),
                submitted_by=actor(requester),
            )
            opened.append(gate.id)
        elif step[0] == "decide" and opened:
            gate_id = opened[step[1] % len(opened)]
            with contextlib.suppress(DecisionRefused):  # refusals are the point; invariants checked below
                gatekeeper.decide(gate_id, actor=actor(step[2]), verdict=step[3])
        elif step[0] == "tick":
            clock.advance(seconds=step[1])

    for gate in gatekeeper.store.list_gates(GateFilter(ids=tuple(opened), limit=len(opened) + 1)):
        requester = DIRECTORY.get(gate.request.requester)
        people = set()
        for decision in gate.decisions:
            decider = DIRECTORY.get(decision.principal_id)
            assert decider.kind is PrincipalKind.HUMAN
            assert not decider.is_same_person(requester)
            assert decider.groups & (set(gate.approver_groups) | set(gate.break_glass_groups))
            people.add(decider.person_key)
        assert len(people) == len(gate.decisions)  # one person, one decision
        if gate.status is GateStatus.APPROVED and gate.rule != "dev-export":
            approvals = gate.approvals
            assert len(approvals) >= gate.required_approvals or any(d.break_glass for d in approvals)
            assert gate.decided_at is not None and gate.decided_at <= gate.expires_at
    assert gatekeeper.audit.verify().ok
