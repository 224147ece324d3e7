"""Rules governance writes (issue 16): CEL conditions, time windows, `gatehouse policy test` and
`gatehouse policy check` (as real subprocesses), and the example policy's own test file."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gate_core import GateRequest, Outcome, PolicyError, parse_policy
from gate_core._policy import evaluate
from gate_core.testing import example_directory, example_policy

ALICE = example_directory().get("alice")
EXAMPLES = Path(__file__).resolve().parents[2] / "gate_core" / "examples"
CLI = [sys.executable, "-m", "gate_core.cli"]


def gatehouse(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, **kwargs)


RULES = """
rules:
  - name: big
    match: {action: [export], when: 'request.parameters.rows > 1000000'}
    outcome: require
    approvers: {groups: [security], count: 1}
  - name: outside
    match: {action: [export], when: '!request.target.startsWith("s3://acme-")'}
    outcome: allow
  - name: freeze
    match: {during: [{start: 2026-12-20T00:00:00Z, end: 2027-01-02T00:00:00Z, name: year-end}]}
    outcome: deny
"""


def decide(
    params: dict[str, object], target: str = "s3://acme-exports/x", now: datetime | None = None
) -> str:
    request = GateRequest(action="export", requester="alice", target=target, parameters=params)  # type: ignore[arg-type]
    decision = evaluate(request, ALICE, parse_policy(RULES), now or datetime(2026, 6, 1, tzinfo=UTC))
    return f"{decision.rule}:{decision.outcome.value}"


def test_cel_conditions_match_on_parameters_and_targets() -> None:
    assert decide({"rows": 2_000_000}) == "big:require"
    assert decide({"rows": 10}) == "default:require"
    assert decide({"rows": 10}, target="s3://elsewhere/x") == "outside:allow"


def test_an_undecidable_condition_never_makes_the_outcome_more_lenient() -> None:
    # a missing parameter or a wrong type: met for require/deny, not met for allow
    assert decide({}) == "big:require"
    assert decide({"rows": "lots"}) == "big:require"
    policy = parse_policy(
        "rules:\n  - {name: a, match: {when: 'request.parameters.n > 1'}, outcome: allow}\n"
    )
    request = GateRequest(action="x", requester="alice")
    assert evaluate(request, ALICE, policy).outcome is Outcome.REQUIRE


def test_a_change_freeze_denies_inside_its_window_only() -> None:
    assert decide({"rows": 1}, now=datetime(2026, 12, 24, tzinfo=UTC)) == "freeze:deny"
    assert decide({"rows": 1}, now=datetime(2027, 1, 2, tzinfo=UTC)) == "default:require"
    # evaluated without a time, a deny window counts as open (fails closed)
    request = GateRequest(action="export", requester="alice", target="s3://acme-x")
    assert evaluate(request, ALICE, parse_policy(RULES)).rule == "freeze"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("rules:\n  - {name: a, match: {when: 'request.('}, outcome: deny}\n", "rules.0.match.when"),
        (
            "rules:\n  - {name: a, outcome: deny, match: {during: "
            "[{start: 2027-01-01T00:00:00Z, end: 2026-01-01T00:00:00Z}]}}\n",
            "rules.0.match.during.0.end",
        ),
        (
            "rules:\n  - {name: a, match: {during: [{start: 2027-01-01, end: 2027-02-01}]}, outcome: deny}\n",
            "start",
        ),
    ],
)
def test_every_error_names_the_file_and_the_field(text: str, field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, source="policy.yaml")
    assert str(caught.value).startswith("policy.yaml: ") and field in str(caught.value)


def test_the_example_policy_ships_passing_cases() -> None:
    done = subprocess.run(
        [*CLI, "policy", "test", str(EXAMPLES / "policy_test.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8/8 cases passed" in done.stdout
    rules = {rule.name: rule for rule in example_policy().rules}
    assert rules["bulk-export"].match.when  # the example has a CEL condition
    assert (
        rules["model-publish"].approvers and len(rules["model-publish"].approvers.all_of) == 2
    )  # two groups


def test_policy_test_exits_1_with_a_diff(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        (EXAMPLES / "policy.yaml")
        .read_text()
        .replace("count: 2}\n    expiry: 4h", "count: 1}\n    expiry: 4h")
    )
    cases = tmp_path / "cases.yaml"
    cases.write_text((EXAMPLES / "policy_test.yaml").read_text())
    done = gatehouse("policy", "test", str(cases))
    assert done.returncode == 1
    assert "FAIL cases.2" in done.stdout
    assert "- expected: outcome=require rule=bulk-export approvals=2" in done.stdout
    assert "+ got:      outcome=require rule=bulk-export approvals=1" in done.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases: [{name: x, request: {action: export}, expect: {outcome: maybe}}]\n")
    refused = subprocess.run(
        [*CLI, "policy", "test", str(bad), "--policy", str(policy)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        refused.returncode == 1
        and "cases.0.expect.outcome" in refused.stderr
        and "Traceback" not in refused.stderr
    )


def test_policy_check_finds_dead_rules_risky_allows_and_overlaps(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n"
        "  - {name: exports, match: {action: [export]}, outcome: require, approvers: {groups: [g]}}\n"
        "  - {name: dev-exports, match: {action: [export], environment: [dev]}, outcome: allow}\n"
        "  - {name: pii, match: {dataset_tags: [pii]}, outcome: require, approvers: {groups: [g]}}\n"
        "  - {name: dev, match: {environment: [dev]}, outcome: allow}\n"
    )
    env = {**os.environ, "GATEHOUSE_HOME": str(tmp_path)}
    done = subprocess.run(
        [*CLI, "policy", "check", str(policy)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 1, done.stdout
    assert "error: rules.1 'dev-exports' can never decide: rule 'exports' (rules.0)" in done.stdout
    assert "warning: rules.3 'dev' allows what rules.2 'pii' catches only by tag (pii)" in done.stdout
    assert (
        "warning: rules.2 'pii' (require) and rules.3 'dev' (allow) can match the same request" in done.stdout
    )
    clean = gatehouse("policy", "check", str(EXAMPLES / "policy.yaml"))
    assert clean.returncode == 0 and "0 error(s)" in clean.stdout
    strict = subprocess.run(
        [*CLI, "policy", "check", "--strict", str(EXAMPLES / "policy.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert strict.returncode == 1
