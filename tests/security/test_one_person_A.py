"""Adversary A (one approver acting alone) against THREATS.md property 3 — *one human counts
once*, matched on canonical identities (case, width, Unicode confusables, e-mail sub-addresses).

Issue 14, attack 5: on the code before issue 14 a directory with ``bob@example.com`` and
``bob+2@example.com`` (or a Cyrillic look-alike of a colleague's id) loaded without a word, and the
two entries satisfied a two-person rule. Now such a directory is refused at load, naming both, by
every command (real CLI, SQLite and PostgreSQL); and for principals that reach the core another
way (built in code), the property below holds over random spellings.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate_core import DuplicateDecision, GateStatus, Principal, SelfApprovalRefused
from gate_core.identity import Directory
from gate_core.testing import actor, example_directory, example_gatekeeper
from tests.conftest import Report
from tests.gate_core.conftest import prod_redeploy
from tests.security.conftest import Home

SECOND_BOB = {
    "sub-addressed mailbox": "  - id: bob2\n    email: bob+2@example.com\n    groups: [ml-leads]\n",
    # a Cyrillic o in the mailbox; a digit zero in the id (ids are ASCII, and 0 is o's look-alike)
    "look-alike mailbox": "  - id: bob2\n    email: b\u043eb@example.com\n    groups: [ml-leads]\n",
    "look-alike id": "  - id: b0b\n    groups: [ml-leads]\n",
}


@pytest.mark.parametrize("variant", sorted(SECOND_BOB))
def test_a_directory_with_two_entries_for_one_person_is_refused_at_load(
    home_for: Callable[..., Home], variant: str, report: Report
) -> None:
    home = home_for(kernel_is="alice")
    opened = home.run(  # $USER for the code before issue 14; the kernel account is alice here
        "request", "--action", "redeploy", "--target", "models/churn", "--env", "prod", env={"USER": "alice"}
    )
    assert opened.code == 0, opened.err
    path = home.settings.directory_path
    path.write_text(path.read_text(encoding="utf-8") + SECOND_BOB[variant], encoding="utf-8")
    for args in (("approve", opened.last_line), ("show", opened.last_line), ("list",)):
        refused = home.run(*args, env={"USER": "bob"})
        assert refused.code == 1, refused.out
        assert "principals 'bob' and " in refused.err and "share one canonical identity" in refused.err
        assert len(refused.err.strip().splitlines()) == 1
    path.write_text(path.read_text(encoding="utf-8").replace(SECOND_BOB[variant], ""), encoding="utf-8")
    shown = json.loads(home.run("show", opened.last_line, "--json", env={"USER": "bob"}).out)
    assert shown["status"] == "PENDING" and shown["decisions"] == []  # nothing was lost or decided
    home.figure(report, f"two directory entries for one person, {variant}", 3)


def _spellings(base: str) -> st.SearchStrategy[str]:
    """Ways one person's name or mailbox can be written again: case, padding, full width,
    Cyrillic/Greek look-alikes, a sub-address."""
    lookalike = str.maketrans({"a": "\u0430", "o": "\u03bf", "e": "\u0435", "c": "\u0441", "l": "1"})
    local, _, domain = base.partition("@")
    forms = [base, base.upper(), f" {base} ", base.translate(lookalike)]
    forms.append("".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in base))
    if domain:
        forms += [f"{local}+x@{domain}", f"{local}+{local}@{domain.upper()}"]
    return st.sampled_from(forms)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requester_mail=_spellings("alice@example.com"),
    twin_mail=_spellings("bob@example.com"),
    twin_groups=st.sampled_from([["ml-leads"], ["data-governance"], ["ml-leads", "data-governance"]]),
    alias_of_requester=_spellings("alice@example.com"),
    order=st.permutations(["bob", "bob-twin", "alice-twin", "dave"]),
)
def test_no_quorum_is_met_by_one_canonical_person_and_the_requester_never_decides(
    requester_mail: str, twin_mail: str, twin_groups: list[str], alias_of_requester: str, order: list[str]
) -> None:
    """Random second identities of bob and of alice (the requester), deciding in random order on a
    two-person prod redeploy: at most one approval per canonical person, alice's never, and the
    gate is approved only when two different people (bob, dave) approved."""
    extra = [
        Principal(id="bob-twin", email=twin_mail, groups=frozenset(twin_groups)),
        Principal(id="alice-twin", email=alias_of_requester, groups=frozenset({"data-governance"})),
    ]
    directory = Directory([*example_directory(), *extra])
    gk = example_gatekeeper(directory=directory)
    assert directory.get("alice").email is not None
    gate = gk.open(prod_redeploy().model_copy(update={"requester": "alice"}), submitted_by=actor("alice"))
    accepted: list[str] = []
    for who in order:
        try:
            gate = gk.approve(gate.id, actor=actor(who))
            accepted.append(who)
        except (DuplicateDecision, SelfApprovalRefused):
            assert who != "dave"
        if gate.status is not GateStatus.PENDING:
            break
    assert "alice-twin" not in accepted
    assert not {"bob", "bob-twin"} <= set(accepted)
    if gate.status is GateStatus.APPROVED:
        assert "dave" in accepted and len(accepted) == 2
