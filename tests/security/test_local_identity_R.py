"""Adversary R against THREATS.md property 1 at the local CLI: identity is the kernel's record of
the OS account, never an environment variable; only a sandbox home lets ``--as`` choose a person,
and what is done so is recorded as unverified (``via sandbox``).

Issue 14, attack 2: on the code before issue 14 ``USER=bob gatehouse approve ID`` was bob, so alice
approved her own pii export from her own shell. Run here through the real CLI on SQLite and
PostgreSQL, with the kernel's account of the test process mapped to alice.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.conftest import Report
from tests.security.conftest import Home


def _alice_requests(home: Home) -> str:
    opened = home.run(
        "request", "--action", "export", "--dataset", "warehouse/customers#pii", env={"USER": "alice"}
    )
    assert opened.code == 0, opened.err
    return opened.last_line


def test_user_in_the_environment_is_not_an_identity(home_for: Callable[..., Home], report: Report) -> None:
    home = home_for(kernel_is="alice")
    gate_id = _alice_requests(home)
    for variable in ("USER", "LOGNAME"):
        approved = home.run("approve", gate_id, env={variable: "bob", "USER": "bob"})
        assert approved.code == 1
        assert (
            approved.err.strip() == "gatehouse: alice: you requested this gate; someone else must decide it"
        )
    shown = json.loads(home.run("show", gate_id, "--json").out)
    assert shown["status"] == "PENDING" and shown["decisions"] == []
    assert shown["submitted_by"] == "alice"
    home.figure(report, "$USER / $LOGNAME as identity", 2)


def test_as_is_refused_outside_a_sandbox(home_for: Callable[..., Home], report: Report) -> None:
    home = home_for(kernel_is="alice")
    gate_id = _alice_requests(home)
    approved = home.run("--as", "bob", "approve", gate_id)
    assert approved.code == 1
    assert approved.err.startswith("gatehouse: --as is only for sandbox homes")
    assert "SANDBOX" not in approved.err  # a production home never claims to be a sandbox
    assert json.loads(home.run("show", gate_id, "--json").out)["status"] == "PENDING"
    home.figure(report, "--as outside a sandbox", 1)


def test_the_sandbox_says_so_and_records_its_identities_as_unverified(home_for: Callable[..., Home]) -> None:
    home = home_for(kernel_is="alice", sandbox=True)
    opened = home.run(
        "--as", "alice", "request", "--action", "export", "--dataset", "warehouse/customers#pii"
    )
    assert opened.code == 0, opened.err
    assert opened.err.startswith("gatehouse: SANDBOX home ")
    approved = home.run("--as", "bob", "approve", opened.last_line)
    assert approved.code == 0, approved.err
    assert "approve     by bob via sandbox" in approved.out
    entries = [json.loads(line) for line in home.run("audit", "export").out.splitlines()]
    decided = [e for e in entries if e["event"] == "decision.recorded"]
    assert [(e["actor"]["principal_id"], e["actor"]["via"]) for e in decided] == [("bob", "sandbox")]
