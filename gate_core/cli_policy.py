"""``gatehouse policy test`` and ``gatehouse policy check``: for governance teams to prove a policy
change before it ships, in their own CI (as ``opa test`` does for OPA).

    # policy_test.yaml — cases run against a policy; `gatehouse policy test policy_test.yaml`
    policy: policy.yaml            # relative to this file (or --policy)
    cases:
      - name: pii export needs data-governance
        request: {action: export, environment: dev, datasets: ["warehouse/customers#pii"]}
        requester: {id: alice, groups: [analysts]}     # default: a human with no groups
        at: 2026-12-24T09:00:00Z                       # for time windows (default: none given)
        expect: {outcome: require, rule: pii-export, approvals: 1}

``test`` exits 1 with a diff (expected vs got, and the policy's one-line explanation) on any
mismatch. ``check`` lints: rules that can never win, ``allow`` rules a missing tag would reach,
rules that overlap with different outcomes; exit 1 on errors (and on warnings with ``--strict``).
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from gate_core._errors import ConfigError, GatehouseError, PolicyError
from gate_core._home import Settings
from gate_core._models import DatasetRef, GateRequest, Principal
from gate_core._policy import Match, Outcome, Policy, Rule, evaluate, load_policy
from gate_core.cli_errors import fail


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expect(_Strict):
    outcome: Outcome | None = None
    rule: str | None = None
    approvals: int | None = Field(default=None, ge=0)


class Case(_Strict):
    name: str = Field(min_length=1)
    request: dict[str, Any]
    requester: Principal = Principal(id="requester")
    at: AwareDatetime | None = None
    expect: Expect


class CasesFile(_Strict):
    policy: str | None = None
    cases: list[Case] = Field(min_length=1)


def _request(case: Case) -> GateRequest:
    data = {"requester": case.requester.id, **case.request}
    data["datasets"] = [DatasetRef.parse(d) if isinstance(d, str) else d for d in data.get("datasets", [])]
    return GateRequest.model_validate(data)


def _load_cases(path: Path) -> CasesFile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return CasesFile.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read cases file: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from exc


def run_cases(policy: Policy, cases: list[Case]) -> list[str]:
    """One diff per mismatching case (empty: every case passed)."""
    failures = []
    for index, case in enumerate(cases):
        try:
            decision = evaluate(_request(case), case.requester, policy, case.at)
        except (ValidationError, GatehouseError) as exc:
            failures.append(f"FAIL cases.{index} {case.name}: the request is invalid: {exc}")
            continue
        got = {
            "outcome": decision.outcome.value,
            "rule": decision.rule,
            "approvals": decision.required_approvals,
        }
        expected = {k: (v.value if isinstance(v, Outcome) else v) for k, v in case.expect if v is not None}
        if any(got[key] != value for key, value in expected.items()):
            shown = " ".join(f"{k}={got[k]}" for k in expected)
            wanted = " ".join(f"{k}={v}" for k, v in expected.items())
            failures.append(
                f"FAIL cases.{index} {case.name}\n  - expected: {wanted}\n  + got:      {shown}\n"
                f"    {decision.explanation}"
            )
    return failures


# ---------------------------------------------------------------- lint


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Could one request meet both criteria? Empty means any; globs are assumed to overlap."""
    return not a or not b or bool(set(a) & set(b)) or any(ch in p for p in a + b for ch in "*?[")


def _covers(earlier: Match, later: Match) -> bool:
    """Every request ``later`` matches, ``earlier`` matches too (conservative: plain criteria only)."""
    if earlier.when or earlier.during or earlier.datasets or earlier.pipeline or earlier.requester:
        return False
    for field in ("action", "environment", "dataset_tags"):
        mine, theirs = getattr(earlier, field), getattr(later, field)
        if mine and (not theirs or not set(theirs) <= set(mine)):
            return False
    return True


def _could_both_match(a: Match, b: Match) -> bool:
    return all(
        _overlap(getattr(a, f), getattr(b, f))
        for f in ("action", "environment", "dataset_tags", "datasets", "requester", "pipeline")
    )


def lint(policy: Policy) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the policy's rules."""
    errors: list[str] = []
    warnings: list[str] = []
    rules: list[Rule] = list(policy.rules)
    for (i, earlier), (j, later) in combinations(enumerate(rules), 2):
        if later.outcome is not Outcome.DENY and _covers(earlier.match, later.match):
            errors.append(
                f"rules.{j} {later.name!r} can never decide: rule {earlier.name!r} (rules.{i}) matches "
                "every request it does and comes first"
            )
        elif earlier.outcome is not later.outcome and _could_both_match(earlier.match, later.match):
            warnings.append(
                f"rules.{i} {earlier.name!r} ({earlier.outcome.value}) and rules.{j} {later.name!r} "
                f"({later.outcome.value}) can match the same request; "
                + ("deny wins" if Outcome.DENY in (earlier.outcome, later.outcome) else "the first wins")
            )
    for i, allow in enumerate(rules):
        if allow.outcome is not Outcome.ALLOW:
            continue
        for j, strict in enumerate(rules):
            if strict.outcome is Outcome.ALLOW or not strict.match.dataset_tags:
                continue
            without_tags = strict.match.model_copy(update={"dataset_tags": ()})
            if _could_both_match(allow.match, without_tags) and not allow.match.dataset_tags:
                tags = ", ".join(strict.match.dataset_tags)
                warnings.append(
                    f"rules.{i} {allow.name!r} allows what rules.{j} {strict.name!r} catches only by tag "
                    f"({tags}): a dataset missing that tag is allowed; make sure the catalog classifies it"
                )
    return errors, warnings


# ---------------------------------------------------------------- commands


def _policy_path(explicit: str | None, relative_to: Path, named: str | None) -> Path:
    if explicit:
        return Path(explicit)
    if named:
        return relative_to.parent / named
    return Settings.from_env().policy_path


@click.group(name="policy")
def policy() -> None:
    """Test and lint a policy before it ships."""


@policy.command(name="test")
@click.argument("cases_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--policy", "policy_file", default=None, help="Policy file (default: the cases file's).")
def test_command(cases_file: Path, policy_file: str | None) -> None:
    """Run a file of cases against a policy; exit 1 with a diff on any mismatch."""
    try:
        cases = _load_cases(cases_file)
        loaded = load_policy(_policy_path(policy_file, cases_file, cases.policy))
    except (ConfigError, PolicyError) as exc:
        fail(str(exc))
    failures = run_cases(loaded, cases.cases)
    for failure in failures:
        click.echo(failure)
    passed = len(cases.cases) - len(failures)
    click.echo(f"{passed}/{len(cases.cases)} cases passed against {loaded.source} ({loaded.hash[:12]})")
    if failures:
        raise SystemExit(1)


@policy.command(name="check")
@click.argument("policy_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Warnings fail too.")
def check_command(policy_file: Path | None, strict: bool) -> None:
    """Lint a policy: rules that can never win, allows a missing tag reaches, overlapping outcomes."""
    try:
        loaded = load_policy(policy_file or _policy_path(None, Path("."), None))
    except (ConfigError, PolicyError) as exc:
        fail(str(exc))
    errors, warnings = lint(loaded)
    for line in errors:
        click.echo(f"error: {line}")
    for line in warnings:
        click.echo(f"warning: {line}")
    click.echo(f"{loaded.source}: {len(errors)} error(s), {len(warnings)} warning(s)")
    if errors or (strict and warnings):
        raise SystemExit(1)


__all__ = ["lint", "policy", "run_cases"]
