"""Adversary R against THREATS.md property 1 (*how each actor was identified is recorded*, and a
rule can demand a method): a policy rule's ``identified_by`` lists the methods its approvers must
have used. The example policy's ``billing-change-prod`` rule demands the IdP (``oidc``), so a
sandbox name chosen with ``--as`` — never verified — is refused there, with a message that says
why, through the real CLI on SQLite and PostgreSQL; an IdP-identified approver is accepted.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gate_core import AuthMethod, GateRequest, GateStatus, NotAnApprover
from gate_core.testing import actor, example_gatekeeper
from tests.conftest import Report
from tests.security.conftest import Home

BILLING = ("request", "--action", "billing_change", "--target", "plan/enterprise", "--env", "prod")


def test_a_sandbox_approver_is_refused_where_the_rule_needs_the_idp(
    home_for: Callable[..., Home], report: Report
) -> None:
    home = home_for(kernel_is="alice", sandbox=True)
    opened = home.run("--as", "alice", *BILLING)
    assert opened.code == 0, opened.err
    refused = home.run("--as", "bob", "approve", opened.last_line)
    assert refused.code == 1
    assert refused.err.strip().splitlines()[-1] == (
        "gatehouse: bob: rule 'billing-change-prod' needs an approver identified by oidc; "
        "you were identified by sandbox (a sandbox name is never verified)"
    )
    shown = home.run("--as", "bob", "show", opened.last_line)
    assert shown.out.startswith(f"gate {opened.last_line}: PENDING")
    home.figure(report, "approving where the rule needs the IdP, as a sandbox name", 1)


def test_an_idp_identified_approver_decides_and_others_do_not() -> None:
    gk = example_gatekeeper()
    request = GateRequest(
        action="billing_change", target="plan/enterprise", environment="prod", requester="alice"
    )
    gate = gk.open(request, submitted_by=actor("alice"))
    assert gate.identified_by == ("oidc",)
    for via in (AuthMethod.API_TOKEN, AuthMethod.LOCAL_OS_USER, AuthMethod.SLACK):
        with pytest.raises(NotAnApprover, match=f"you were identified by {via.value}$"):
            gk.approve(gate.id, actor=actor("bob", via))
    assert gk.approve(gate.id, actor=actor("bob", AuthMethod.OIDC)).status is GateStatus.APPROVED
