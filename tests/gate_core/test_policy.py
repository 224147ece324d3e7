"""Policy files: validation errors that name the file and field, and pure evaluation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gate_core import (
    DatasetRef,
    GateRequest,
    Outcome,
    PolicyError,
    RunContext,
    evaluate,
    load_policy,
    parse_policy,
)
from gate_core.testing import example_directory, example_policy

DIRECTORY = example_directory()
ALICE = DIRECTORY.get("alice")
BOT = DIRECTORY.get("etl-bot")


def request(
    action: str = "export", *, tags: str = "", env: str = "", pipeline: str = "", **kw: object
) -> GateRequest:
    datasets = (DatasetRef.parse(f"warehouse/customers#{tags}"),) if tags else ()
    return GateRequest.model_validate(
        {
            "action": action,
            "datasets": datasets,
            "environment": env,
            "requester": "alice",
            "run": RunContext(pipeline=pipeline),
            **kw,
        }
    )


def test_example_policy_rules() -> None:
    policy = example_policy()
    pii = evaluate(request(tags="pii"), ALICE, policy)
    assert (pii.outcome, pii.rule, pii.required_approvals, pii.approver_groups) == (
        Outcome.REQUIRE,
        "pii-export",
        1,
        ("data-governance",),
    )
    assert pii.explanation.startswith(
        "rule 'pii-export' matched (action export; dataset tag pii on warehouse/customers)"
    )
    # at a given time: without one, the example's year-end freeze window counts as open (fail closed)
    redeploy = evaluate(request("redeploy", env="prod"), ALICE, policy, datetime(2026, 6, 1, tzinfo=UTC))
    assert (redeploy.rule, redeploy.required_approvals) == ("prod-redeploy", 2)
    assert redeploy.break_glass_groups == ("sre-oncall",)
    assert evaluate(request("role_escalation"), ALICE, policy).rule == "role-escalation"


def test_unmatched_action_defaults_to_require() -> None:
    decision = evaluate(request("billing_change"), ALICE, example_policy())
    assert decision.outcome is Outcome.REQUIRE
    assert decision.rule == "default"
    assert decision.matched_rules == ()
    assert "no rule matched action 'billing_change'" in decision.explanation


def test_first_match_decides_and_others_are_reported() -> None:
    # a pii export in dev matches pii-export (first) and dev-export (allow): pii-export decides
    decision = evaluate(request(tags="pii", env="dev"), ALICE, example_policy())
    assert decision.rule == "pii-export"
    assert decision.matched_rules == ("pii-export", "dev-export")
    assert "[also matched: dev-export]" in decision.explanation


def test_deny_anywhere_wins() -> None:
    policy = parse_policy("""
version: 1
rules:
  - name: exports-ok
    match: {action: [export]}
    outcome: allow
  - name: no-bots-on-pii
    match: {dataset_tags: [pii], requester: ["kind:service"]}
    outcome: deny
""")
    bot_request = request(tags="pii").model_copy(update={"requester": "etl-bot"})
    assert evaluate(bot_request, BOT, policy).outcome is Outcome.DENY
    assert evaluate(request(tags="pii"), ALICE, policy).outcome is Outcome.ALLOW


@pytest.mark.parametrize(
    ("match", "hit", "miss"),
    [
        ("{requester: [group:data-engineering]}", ALICE, BOT),
        ("{requester: [alice]}", ALICE, BOT),
        ("{requester: ['kind:service']}", BOT, ALICE),
    ],
)
def test_requester_matching(match: str, hit: object, miss: object) -> None:
    policy = parse_policy(f"""
version: 1
rules:
  - name: r
    match: {match}
    outcome: deny
""")
    assert evaluate(request(), hit, policy).rule == "r"  # type: ignore[arg-type]
    assert evaluate(request(), miss, policy).rule == "default"  # type: ignore[arg-type]


def test_pipeline_and_dataset_globs() -> None:
    policy = parse_policy("""
version: 1
rules:
  - name: finance
    match: {pipeline: ["finance_*"], datasets: ["warehouse/cust*"]}
    outcome: require
    approvers: {groups: [finance], count: 1}
""")
    assert evaluate(request(tags="x", pipeline="finance_daily"), ALICE, policy).rule == "finance"
    assert evaluate(request(tags="x", pipeline="marketing"), ALICE, policy).rule == "default"


def test_evaluation_is_pure() -> None:
    policy = example_policy()
    assert evaluate(request(tags="pii"), ALICE, policy) == evaluate(request(tags="pii"), ALICE, policy)


def test_policy_hash_is_the_file_content_hash(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nrules: []\n")
    first = load_policy(path).hash
    path.write_text("version: 1\nrules: []\n# a comment changes the recorded version\n")
    assert load_policy(path).hash != first


@pytest.mark.parametrize(
    ("text", "path", "problem"),
    [
        ("version: 1\nrules:\n  - name: a\n    outcome: require\n", "rules.0.approvers", "needs 'approvers'"),
        (
            "version: 1\nrules:\n  - name: a\n    outcome: maybe\n",
            "rules.0.outcome",
            "'allow', 'deny' or 'require'",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    outcome: deny\n    expiry: soon\n",
            "rules.0.expiry",
            "not a duration",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    outcome: deny\n    mtach: {}\n",
            "rules.0.mtach",
            "Extra inputs",
        ),
        (
            "version: 1\nrules:\n  - {name: a, outcome: deny}\n  - {name: a, outcome: deny}\n",
            "rules.1.name",
            "duplicate rule name",
        ),
        ("version: 1\ndefault: {outcome: allow}\n", "default.outcome", "Input should be"),
        ("version: 2\n", "version", "Input should be 1"),
        (
            "version: 1\nrules:\n  - name: a\n    outcome: require\n    approvers: {groups: [g], count: 0}\n",
            "rules.0.approvers.count",
            "greater than or equal to 1",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    outcome: allow\n    approvers: {groups: [g]}\n",
            "rules.0.approvers",
            "takes no 'approvers'",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    outcome: deny\n    reminder: 5h\n    expiry: 1h\n",
            "rules.0.reminder",
            "'reminder' must come before 'expiry'",
        ),
        ("version: 1\nrules: [\n", "line 3, column 1", "not valid YAML"),
        ("- just a list\n", "", "must be a mapping"),
    ],
)
def test_bad_policy_names_the_file_and_field(tmp_path: Path, text: str, path: str, problem: str) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(text)
    with pytest.raises(PolicyError) as error:
        load_policy(policy_file)
    assert error.value.source == str(policy_file)
    assert error.value.field_path == path
    assert problem in error.value.problem
    assert str(error.value).startswith(str(policy_file))
    assert "\n" not in str(error.value)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "namespace", "name", "tags"),
    [
        ("warehouse/customers#pii,internal", "warehouse", "customers", {"pii", "internal"}),
        ("postgres://db:5432/public.customers#PII", "postgres://db:5432", "public.customers", {"pii"}),
        ("s3://bucket/path/to/file.parquet", "s3://bucket", "path/to/file.parquet", set()),
    ],
)
def test_dataset_parsing(text: str, namespace: str, name: str, tags: set[str]) -> None:
    ref = DatasetRef.parse(text)
    assert (ref.namespace, ref.name, set(ref.tags)) == (namespace, name, tags)


@pytest.mark.parametrize("text", ["customers", "/customers", "warehouse/", "#pii"])
def test_malformed_dataset(text: str) -> None:
    with pytest.raises(ValueError, match="NAMESPACE/NAME"):
        DatasetRef.parse(text)
