"""Adversary R (the requester) picks the rule by how they spell things. Property 4: spelling never
changes the rule that applies — actions, environments and tags are normalised before matching,
invisible characters are refused with a 422 naming the field, and an action or environment the
policy does not know gets its strictest applicable outcome.

Run against the code before issue 16: ``Export``, ``EXPORT`` and ``" export"`` missed
``pii-export`` and got the default (24 h instead of 4 h, no Slack card); ``Prod``, ``"prod "``
and ``production`` missed ``prod-redeploy`` (one approval instead of two distinct people); a
zero-width space inside ``pii`` was stored and missed ``pii-export`` too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gate_core import DatasetRef, GateRequest, PolicyError, parse_policy
from gate_core._policy import evaluate
from gate_core.testing import example_directory, example_policy
from tests.conftest import Report
from tests.service.conftest import Service
from tests.service.test_api import PII_EXPORT

POLICY = example_policy()
NOON = datetime(2026, 6, 1, 12, tzinfo=UTC)
ALICE = example_directory().get("alice")


@pytest.mark.parametrize(
    ("overrides", "rule", "approvals"),
    [
        ({"action": "Export"}, "pii-export", 1),
        ({"action": "EXPORT"}, "pii-export", 1),
        ({"action": " export"}, "pii-export", 1),
        ({"action": "ｅｘｐｏｒｔ"}, "pii-export", 1),  # fullwidth: NFKC
        ({"datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["PII "]}]}, "pii-export", 1),
        ({"action": "redeploy", "environment": "Prod", "datasets": []}, "prod-redeploy", 2),
        ({"action": "redeploy", "environment": "prod ", "datasets": []}, "prod-redeploy", 2),
        ({"action": "redeploy", "environment": "production", "datasets": []}, "prod-redeploy", 2),
        ({"action": "redeploy", "environment": "PRD", "datasets": []}, "prod-redeploy", 2),
        # an environment the policy does not know meets the strictest rule it could be
        ({"action": "redeploy", "environment": "prod-eu", "datasets": []}, "prod-redeploy", 2),
    ],
)
def test_spelling_over_http_gets_the_same_rule(
    service: Service, overrides: dict[str, Any], rule: str, approvals: int
) -> None:
    with service.client("bot") as bot:
        response = bot.post("/v1/gates", json={**PII_EXPORT, **overrides})
    assert response.status_code == 200, response.text
    gate = response.json()
    assert (gate["rule"], gate["required_approvals"]) == (rule, approvals), gate["explanation"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            {"datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["p\u200bii"]}]},
            "datasets.0.tags",
        ),
        ({"action": "ex\u200dport"}, "action"),
        ({"action": "export\u202e"}, "action"),
        ({"action": "redeploy", "environment": "pr\u00adod"}, "environment"),  # soft hyphen (Cf)
        ({"action": "redeploy", "environment": "pro\u0000d"}, ""),  # NUL: refused as before
    ],
)
def test_invisible_characters_are_refused_naming_the_field(
    service: Service, overrides: dict[str, Any], field: str
) -> None:
    with service.client("bot") as bot:
        response = bot.post("/v1/gates", json={**PII_EXPORT, **overrides})
        assert response.status_code == 422, response.text
        assert field in response.text
        assert bot.get("/v1/gates").json() == []


def test_the_cli_normalises_too(tmp_path: Path, database_url: str) -> None:
    """`gatehouse request --action EXPORT --dataset warehouse/customers#PII` as a real subprocess."""
    env = {
        **os.environ,
        "GATEHOUSE_HOME": str(tmp_path / "home"),
        "GATEHOUSE_DATABASE_URL": database_url,
    }
    cli = [sys.executable, "-m", "gate_core.cli", "--as", "alice"]  # the example home is a sandbox
    assert (
        subprocess.run([*cli, "init", "--example"], env=env, capture_output=True, timeout=120).returncode == 0
    )
    opened = subprocess.run(
        [*cli, "request", "--action", " EXPORT", "--dataset", "warehouse/customers#PII"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert opened.returncode == 0, opened.stderr
    assert "pii-export" in opened.stdout
    refused = subprocess.run(
        [*cli, "request", "--action", "export", "--env", "dev", "--dataset", "warehouse/customers#p\u200bii"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "datasets.0.tags" in refused.stderr, (refused.stdout, refused.stderr)


# ---------------------------------------------------------------- the property

_FULLWIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}
SPACES = st.sampled_from(["", " ", "  ", "\t", "\u3000", "\u00a0", "\n"])


@st.composite
def spelling(draw: st.DrawFn, term: str) -> str:
    """``term`` as a requester might type it: any case per letter, fullwidth forms, padding."""
    chars = []
    for char in term:
        form = draw(st.sampled_from(["same", "upper", "fullwidth", "fullwidth-upper"]))
        if form == "upper":
            char = char.upper()
        elif form.startswith("fullwidth"):
            char = _FULLWIDTH.get(char.upper() if form.endswith("upper") else char, char)
        chars.append(char)
    return draw(SPACES) + "".join(chars) + draw(SPACES)


ENVIRONMENTS = {"": [""], "prod": ["prod", "production", "prd"], "dev": ["dev", "development"], "qa": ["qa"]}
CASES = st.tuples(
    st.sampled_from(["export", "redeploy", "role_escalation", "backfill"]),
    st.sampled_from(sorted(ENVIRONMENTS)),
    st.sampled_from([(), ("pii",), ("finance", "pii"), ("finance",)]),
)


SPELLINGS_TRIED = [0]


@settings(max_examples=400, deadline=None)
@given(data=st.data(), case=CASES)
def test_the_matched_rule_never_changes_with_spelling(
    data: st.DataObject, case: tuple[str, str, tuple[str, ...]]
) -> None:
    action, environment, tags = case
    canonical = GateRequest(
        action=action,
        environment=environment,
        requester="alice",
        datasets=(DatasetRef(namespace="warehouse", name="t", tags=frozenset(tags)),),
    )
    spelled = GateRequest(
        action=data.draw(spelling(action)),
        environment=data.draw(spelling(data.draw(st.sampled_from(ENVIRONMENTS[environment])))),
        requester="alice",
        datasets=(
            DatasetRef(namespace="warehouse", name="t", tags=frozenset(data.draw(spelling(t)) for t in tags)),
        ),
    )
    assert spelled.invisible_term_problem() is None
    expected, got = evaluate(canonical, ALICE, POLICY, NOON), evaluate(spelled, ALICE, POLICY, NOON)
    assert (got.rule, got.outcome, got.required_approvals) == (
        expected.rule,
        expected.outcome,
        expected.required_approvals,
    )


def test_policy_terms_are_normalised_and_aliases_must_be_unambiguous() -> None:
    policy = parse_policy(
        "environments: {Prod: [PRODUCTION]}\n"
        "rules:\n  - {name: r, match: {action: [' Export'], environment: [production]}, outcome: deny}\n"
    )
    assert policy.rules[0].match.action == ("export",)
    request = GateRequest(action="EXPORT", environment="prod", requester="alice")
    assert evaluate(request, ALICE, policy).rule == "r"
    with pytest.raises(PolicyError, match=r"environments\.dev"):
        parse_policy("environments: {prod: [p], dev: [P]}\n")
    with pytest.raises(PolicyError, match=r"rules\.0\.match\.environment"):
        parse_policy(
            "environments: {prod: []}\nrules:\n  - {name: r, match: {environment: [qa]}, outcome: deny}\n"
        )
    with pytest.raises(PolicyError, match=r"rules\.0\.match\.action"):
        parse_policy("rules:\n  - {name: r, match: {action: ['ex\u200bport']}, outcome: deny}\n")


def test_spelling_figure(report: Report) -> None:
    """The property above, rerun small enough to count: the figure docs/guarantees.md shows."""
    changed = 0
    variants = ["Export", "EXPORT", " export", "ｅｘｐｏｒｔ", "export\t"]
    envs = ["Prod", "prod ", "production", "PRD", "ｐｒｏｄ"]
    for action in variants:
        for env in envs:
            spelled = GateRequest(action=action, environment=env, requester="alice")
            canonical = GateRequest(action="export", environment="prod", requester="alice")
            changed += (
                evaluate(spelled, ALICE, POLICY, NOON).rule != evaluate(canonical, ALICE, POLICY, NOON).rule
            )
    report("Spelling (R): spellings that changed the matched rule", changed, "of 25", "0")
    assert changed == 0
