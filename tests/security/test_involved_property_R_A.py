"""Adversaries R and A against THREATS.md properties 2 and 3, as one hypothesis property over the
real Gatekeeper on SQLite (issue 14): *nobody involved ever decides*, and *no quorum is met by one
canonical person*.

Each example writes a random directory file of people with aliases (an OS account, an SSO login)
and, at random, "twins" — second entries for one person with a look-alike or sub-addressed
mailbox, a case variant or a look-alike id: such a directory is refused at load, naming both
entries. The twins then come back as what a channel proves instead — an IdP's subject and e-mail
(OIDC, a trusted proxy) for a principal the directory file does not list — and as spellings of
names (a sub-addressed or look-alike mailbox, a case variant). Random people are involved in one
request: the requester, the submitting principal, the run's triggering user as the orchestrator
recorded it, persons the pipeline names (by any spelling the core can resolve) and the pipeline's
owners in the policy. Then every identity of every person tries to approve, in random order, over
random channels (the local OS account, an API token, Slack, the console, OIDC, a trusted proxy, the
sandbox's ``--as``). The ground truth — which identities are one person — is the test's own; the
core only sees spellings.

This property found that "same person" was not transitive for identities proven outside the
directory: an IdP account sharing olga's mailbox (``olga+work@``) and one with her look-alike id
(``01ga``) were each olga, yet not each other, and met a two-person rule between them. Such an
identity now decides as the directory's person (``Gatekeeper._directory_person``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate_core import (
    DecisionRefused,
    DirectoryError,
    GateRequest,
    GateStatus,
    Principal,
    RunContext,
    UnknownPrincipal,
    Verdict,
)
from gate_core._models import Actor, AuthMethod, Involved
from gate_core._policy import parse_policy
from gate_core.identity import Directory
from gate_core.testing import example_gatekeeper
from tests.conftest import Report

NAMES = ("bob", "carol", "olga", "lena", "dave", "erin")
CHANNELS = tuple(m for m in AuthMethod if m is not AuthMethod.SYSTEM)
QUORUM = 2
POLICY = """\
version: 1
pipelines:
  "customer_*":
    owners: [{owners}]
rules:
  - name: two-person-export
    description: exports need two distinct approvers
    match: {{action: [export]}}
    outcome: require
    approvers: {{groups: [approvers], count: {quorum}}}
    expiry: 4h
default:
  outcome: require
  approvers: {{groups: [approvers], count: {quorum}}}
  expiry: 4h
"""
LOOKALIKE_ID = str.maketrans({"o": "0", "l": "1"})  # ids are ASCII; the skeleton maps these back
LOOKALIKE_MAIL = str.maketrans({"a": "\u0430", "o": "\u03bf", "e": "\u0435", "c": "\u0441"})


NAME_CHANNELS = tuple(m for m in CHANNELS if m is not AuthMethod.OIDC)
PROVEN_CHANNELS = (AuthMethod.OIDC, AuthMethod.PROXY_HEADER)


@dataclass(frozen=True)
class Person:
    """One human: their directory entry and aliases, the twins a careless directory would list,
    and every spelling of a name that resolves to them."""

    index: int
    name: str
    aliases: tuple[str, ...]
    twins: tuple[Principal, ...]

    @property
    def principal(self) -> Principal:
        return Principal(id=self.name, email=f"{self.name}@example.com", groups=frozenset({"approvers"}))

    @property
    def spellings(self) -> tuple[str, ...]:
        """Names the core resolves to this person: id, aliases, mailboxes however written."""
        mail = f"{self.name}@example.com"
        return (
            self.name,
            *self.aliases,
            mail.upper(),
            f"{self.name}+ops@example.com",
            f"{self.name.translate(LOOKALIKE_MAIL)}@example.com",
        )


def _twins(name: str, kinds: list[str]) -> tuple[Principal, ...]:
    """Second principals of one person: each shares a canonical identity with ``name``."""
    made = {
        "sub-address": Principal(id=f"{name}-sub", email=f"{name}+work@example.com"),
        "look-alike mail": Principal(
            id=f"{name}-mail", email=f"{name.translate(LOOKALIKE_MAIL)}@example.com"
        ),
        "case": Principal(id=name.upper(), email=f"{name.upper()}@EXAMPLE.COM"),
        "look-alike id": Principal(id=name.translate(LOOKALIKE_ID)),
    }
    return tuple(
        made[k].model_copy(update={"groups": frozenset({"approvers"})})
        for k in dict.fromkeys(kinds)
        if k != "look-alike id" or name.translate(LOOKALIKE_ID) != name
    )


@st.composite
def people(draw: st.DrawFn) -> list[Person]:
    count = draw(st.integers(min_value=3, max_value=len(NAMES)))
    kinds = st.sampled_from(["sub-address", "look-alike mail", "case", "look-alike id"])
    return [
        Person(
            index,
            name,
            tuple(f"{name}.{k}" for k in range(draw(st.integers(min_value=0, max_value=2)))),
            _twins(name, draw(st.lists(kinds, max_size=2))),
        )
        for index, name in enumerate(NAMES[:count])
    ]


def directory_file(persons: list[Person], *, with_twins: bool) -> str:
    lines = ["principals:"]
    entries = [(p.principal, p.aliases) for p in persons]
    if with_twins:
        entries += [(twin, ()) for p in persons for twin in p.twins]
    for principal, aliases in entries:
        lines.append(f"  - id: {json.dumps(principal.id)}")
        if principal.email:
            lines.append(f"    email: {json.dumps(principal.email)}")
        lines.append("    groups: [approvers]")
        if aliases:
            lines.append(f"    aliases: {json.dumps(list(aliases))}")
    lines += ["  - id: etl-bot", "    kind: service"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Involvement:
    requester: tuple[int, int]  # (person, which of their ids or aliases)
    submitter_is_service: bool
    triggering_user: tuple[int, int] | None  # (person, which spelling)
    named: tuple[tuple[int, int], ...]
    owners: tuple[tuple[int, int], ...]

    @property
    def persons(self) -> set[int]:
        people = {self.requester[0], *(i for i, _ in self.named), *(i for i, _ in self.owners)}
        return people | ({self.triggering_user[0]} if self.triggering_user else set())


@st.composite
def involvements(draw: st.DrawFn, count: int) -> Involvement:
    someone = st.tuples(st.integers(min_value=0, max_value=count - 1), st.integers(0, 10))
    return Involvement(
        requester=draw(someone),
        submitter_is_service=draw(st.booleans()),
        triggering_user=draw(st.none() | someone),
        named=tuple(draw(st.lists(someone, max_size=2))),
        owners=tuple(draw(st.lists(someone, max_size=2))),
    )


def attempts_of(person: Person) -> list[tuple[int, str, Principal | None]]:
    """Every way this person may try to decide: a name (resolved by the directory) or an identity
    a channel proved (an IdP subject and e-mail the directory does not list)."""
    named: list[tuple[int, str, Principal | None]] = [(person.index, s, None) for s in person.spellings]
    return named + [(person.index, twin.id, twin) for twin in person.twins]


TALLY = {"involved": 0, "twins": 0}  # attempts across examples, for docs/guarantees.md


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_nobody_involved_ever_decides_and_no_quorum_is_one_person(
    data: st.DataObject, report: Report
) -> None:
    persons = data.draw(people(), label="people")
    if any(p.twins for p in persons):
        with pytest.raises(DirectoryError, match="share one canonical identity"):
            Directory.parse(directory_file(persons, with_twins=True))
    directory = Directory.parse(directory_file(persons, with_twins=False))
    involvement = data.draw(involvements(len(persons)), label="involvement")

    def spelled(who: tuple[int, int], *, directory_names_only: bool = False) -> str:
        person = persons[who[0]]
        names = (person.name, *person.aliases) if directory_names_only else person.spellings
        return names[who[1] % len(names)]

    owners = ", ".join(json.dumps(spelled(o, directory_names_only=True)) for o in involvement.owners)
    policy = parse_policy(POLICY.format(owners=owners or '"nobody-in-particular"', quorum=QUORUM))
    gatekeeper = example_gatekeeper(directory=directory, policy=policy)
    named = [Involved(principal=spelled(n), source="run conf") for n in involvement.named]
    if involvement.triggering_user is not None:
        named.append(
            Involved(
                principal=spelled(involvement.triggering_user),
                source="Airflow triggering user",
                recorded_by_orchestrator=True,
            )
        )
    requester = spelled(involvement.requester, directory_names_only=True)
    submitted_by = (
        Actor(principal_id="etl-bot", via=AuthMethod.API_TOKEN)
        if involvement.submitter_is_service
        else Actor(principal_id=requester, via=data.draw(st.sampled_from(NAME_CHANNELS)))
    )
    request = GateRequest(
        action="export",
        target="s3://exports/customers.csv",
        requester=requester,
        run=RunContext(orchestrator="airflow", pipeline="customer_export", run_id="r1"),
        involved=tuple(named),
    )
    gate = gatekeeper.open(request, submitted_by=submitted_by)
    involved = involvement.persons

    attempts = [a for person in persons for a in attempts_of(person)]
    order = data.draw(st.permutations(attempts), label="deciding order")
    approved_by: list[int] = []
    for index, name, proven in order:
        if not gate.status.is_open:
            break
        channel = data.draw(st.sampled_from(PROVEN_CHANNELS if proven else NAME_CHANNELS), label="channel")
        TALLY["involved"] += index in involved
        TALLY["twins"] += index in approved_by  # a second identity of someone who already approved
        try:
            gate = gatekeeper.decide(
                gate.id,
                actor=Actor(principal_id=name, via=channel),
                verdict=Verdict.APPROVE,
                principal=proven,
            )
        except (DecisionRefused, UnknownPrincipal):
            continue
        who = persons[index].name
        assert index not in involved, f"{name} ({who}) is involved in the request yet decided it"
        assert index not in approved_by, f"{name} counted a second time for {who}"
        approved_by.append(index)

    if gate.status is GateStatus.APPROVED:
        assert len(set(approved_by)) >= QUORUM
        assert {d.principal_id for d in gate.approvals} <= {p.name for p in persons}  # the directory's
    report(
        "Separation of duties: property, an involved person deciding (random directories, parties, channels)",
        f"{TALLY['involved']} tried, 0 accepted",
    )
    report(
        "Separation of duties: property, a second identity of one approver approving (twins, channels)",
        f"{TALLY['twins']} tried, 0 counted twice",
    )
    uninvolved = {p.index for p in persons} - involved
    # the refusals are not blanket: two uninvolved people always suffice
    assert (gate.status is GateStatus.APPROVED) == (len(uninvolved) >= QUORUM), (uninvolved, approved_by)
