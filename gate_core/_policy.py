"""The policy file and its evaluation.

A policy is an ordered list of rules. Evaluation is a pure function of (request, requester,
policy): a matching ``deny`` anywhere wins; otherwise the first matching rule decides; when
nothing matches, the policy's ``default`` applies, and the default may never be ``allow`` — an
unmatched privileged action needs a person (fail closed).

    version: 1
    rules:
      - name: pii-export
        match: {action: [export], dataset_tags: [pii]}
        outcome: require
        approvers: {groups: [data-governance], count: 1}
        expiry: 4h
        notify: ["slack:#data-approvals"]
    default:
      outcome: require
      approvers: {groups: [data-governance], count: 1}
"""

from __future__ import annotations

import enum
import fnmatch
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from gate_core._durations import format_duration, parse_duration
from gate_core._errors import PolicyError
from gate_core._models import GateRequest, Principal, canonical_json, sha256_hex
from gate_core._notify_target import NotifyTarget
from gate_core.identity import AuthMethod

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _well_formed_target(text: str) -> str:
    NotifyTarget.parse(text)  # whether the instance exists is the service's to say
    return text


# Kept as written: gates store the text, and the policy's hash is the file's.
Target = Annotated[str, AfterValidator(_well_formed_target)]


class Outcome(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REQUIRE = "require"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Approvers(_Strict):
    groups: tuple[str, ...] = Field(min_length=1)
    count: int = Field(default=1, ge=1, le=20, description="distinct people who must approve")


class Match(_Strict):
    """Every field given must match (AND); within a field any listed value matches (OR).

    ``requester`` entries are principal ids, ``group:NAME`` or ``kind:service|human``;
    ``pipeline`` and ``datasets`` entries are shell-style globs.
    """

    action: tuple[str, ...] = ()
    environment: tuple[str, ...] = ()
    dataset_tags: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    requester: tuple[str, ...] = ()
    pipeline: tuple[str, ...] = ()


class _OutcomeSpec(_Strict):
    outcome: Outcome
    approvers: Approvers | None = None
    expiry: Duration = timedelta(hours=24)
    notify: tuple[Target, ...] = ()
    reminder: Duration | None = None
    break_glass_groups: tuple[str, ...] = ()
    # How approvers must have been identified (AuthMethod values: oidc, slack, api-token, …); empty:
    # any channel. A sandbox's --as is never a method a rule lists by accident (issue 14).
    identified_by: tuple[AuthMethod, ...] = ()

    @model_validator(mode="after")
    def _approvers_iff_require(self) -> _OutcomeSpec:
        if self.outcome is Outcome.REQUIRE and self.approvers is None:
            raise ValueError("approvers: outcome 'require' needs 'approvers' (groups and count)")
        if self.outcome is not Outcome.REQUIRE and self.approvers is not None:
            raise ValueError(
                f"approvers: outcome {self.outcome.value!r} takes no 'approvers'; did you mean 'require'?"
            )
        if self.reminder is not None and self.reminder >= self.expiry:
            raise ValueError("reminder: 'reminder' must come before 'expiry'")
        return self


class Rule(_OutcomeSpec):
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    match: Match = Match()


class DefaultOutcome(_OutcomeSpec):
    outcome: Literal[Outcome.REQUIRE, Outcome.DENY] = Outcome.REQUIRE


class PipelinePolicy(_Strict):
    owners: tuple[str, ...] = ()  # involved in every gate of the pipeline: they never decide it


class Policy(_Strict):
    version: Literal[1] = 1
    rules: tuple[Rule, ...] = ()
    pipelines: dict[str, PipelinePolicy] = Field(default_factory=dict)  # glob → owners (issue 14)
    default: DefaultOutcome = DefaultOutcome(approvers=Approvers(groups=("data-governance",)))
    source: str = Field(default="<memory>", exclude=True)
    content_hash: str = Field(default="", exclude=True)

    @model_validator(mode="after")
    def _unique_rule_names(self) -> Policy:
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ValueError(f"rules.{index}.name: duplicate rule name {rule.name!r}")
            seen.add(rule.name)
        return self

    def owners_of(self, pipeline: str) -> tuple[tuple[str, str], ...]:
        """(owner, glob) for every ``pipelines`` glob that matches ``pipeline``."""
        return tuple(
            (owner, glob)
            for glob, entry in self.pipelines.items()
            if pipeline and fnmatch.fnmatchcase(pipeline, glob)
            for owner in entry.owners
        )

    @property
    def hash(self) -> str:
        return self.content_hash or sha256_hex(canonical_json(self.model_dump(mode="json")))


class PolicyDecision(_Strict):
    """The pure result of evaluation: what to do, which rule(s) said so, and why in one line."""

    outcome: Outcome
    rule: str
    matched_rules: tuple[str, ...]
    explanation: str
    required_approvals: int
    approver_groups: tuple[str, ...]
    break_glass_groups: tuple[str, ...]
    identified_by: tuple[str, ...] = ()
    expiry: timedelta
    reminder: timedelta | None
    notify: tuple[str, ...]
    policy_hash: str


DEFAULT_RULE_NAME = "default"
_NAMED_FIELD = re.compile(r"^(?P<field>[a-z_][a-z0-9_.]*): (?P<problem>.+)$", re.S)


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), "", f"cannot read policy file: {exc.strerror or exc}") from exc
    return parse_policy(text, source=str(path))


def parse_policy(text: str, *, source: str = "<string>") -> Policy:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(source, where, f"not valid YAML: {problem}") from exc
    if not isinstance(data, dict):
        raise PolicyError(source, "", "a policy file must be a mapping with 'version' and 'rules'")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = [str(p) for p in first["loc"]]
        message = first["msg"].removeprefix("Value error, ")
        # Cross-field validators name their field as "field: problem"; fold it into the path.
        named = _NAMED_FIELD.match(message)
        if named:
            location.append(named["field"])
            message = named["problem"]
        raise PolicyError(source, ".".join(location), message) from exc
    return policy.model_copy(update={"source": source, "content_hash": sha256_hex(text)})


def _requester_matches(patterns: tuple[str, ...], requester: Principal) -> bool:
    for pattern in patterns:
        kind, _, value = pattern.partition(":")
        if (
            (kind == "group" and value in requester.groups)
            or (kind == "kind" and value == requester.kind.value)
            or (not value and pattern == requester.id)
        ):
            return True
    return False


def _match_reasons(match: Match, request: GateRequest, requester: Principal) -> list[str] | None:
    """The reasons a rule matches, or None when any given criterion fails."""
    reasons: list[str] = []
    if match.action:
        if request.action not in match.action:
            return None
        reasons.append(f"action {request.action}")
    if match.environment:
        if request.environment not in match.environment:
            return None
        reasons.append(f"environment {request.environment}")
    if match.dataset_tags:
        hits = sorted(
            f"{tag} on {d.qualified_name}"
            for d in request.datasets
            for tag in d.tags
            if tag in match.dataset_tags
        )
        if not hits:
            return None
        reasons.append("dataset tag " + ", ".join(hits))
    if match.datasets:
        names = [
            d.qualified_name
            for d in request.datasets
            if any(fnmatch.fnmatchcase(d.qualified_name, p) for p in match.datasets)
        ]
        if not names:
            return None
        reasons.append("dataset " + ", ".join(sorted(names)))
    if match.requester:
        if not _requester_matches(match.requester, requester):
            return None
        reasons.append(f"requester {requester.id}")
    if match.pipeline:
        if not any(fnmatch.fnmatchcase(request.run.pipeline, p) for p in match.pipeline):
            return None
        reasons.append(f"pipeline {request.run.pipeline}")
    return reasons or ["matches every request"]


def _describe(spec: _OutcomeSpec) -> str:
    if spec.outcome is Outcome.ALLOW:
        return "allowed without review"
    if spec.outcome is Outcome.DENY:
        return "denied by policy"
    assert spec.approvers is not None  # guaranteed by _OutcomeSpec's validator
    count = spec.approvers.count
    who = " or ".join(spec.approvers.groups)
    noun = "approval" if count == 1 else "distinct approvals"
    return f"requires {count} {noun} from {who}, expires in {format_duration(spec.expiry)}"


def evaluate(request: GateRequest, requester: Principal, policy: Policy) -> PolicyDecision:
    """Decide what a request needs. Pure: no clock, no I/O, same inputs → same answer."""
    matched: list[tuple[Rule, list[str]]] = []
    for rule in policy.rules:
        reasons = _match_reasons(rule.match, request, requester)
        if reasons is not None:
            matched.append((rule, reasons))
    deciding: _OutcomeSpec
    denials = [m for m in matched if m[0].outcome is Outcome.DENY]
    if denials or matched:
        rule, reasons = (denials or matched)[0]
        deciding, name = rule, rule.name
        explanation = f"rule {name!r} matched ({'; '.join(reasons)}): {_describe(rule)}"
        others = [m[0].name for m in matched if m[0] is not rule]
        if others:
            explanation += f" [also matched: {', '.join(others)}]"
    else:
        deciding, name = policy.default, DEFAULT_RULE_NAME
        explanation = f"no rule matched action {request.action!r}; the default applies: {_describe(deciding)}"
    approvers = deciding.approvers
    return PolicyDecision(
        outcome=deciding.outcome,
        rule=name,
        matched_rules=tuple(m[0].name for m in matched),
        explanation=explanation,
        required_approvals=approvers.count if approvers else 0,
        approver_groups=approvers.groups if approvers else (),
        break_glass_groups=deciding.break_glass_groups,
        identified_by=tuple(m.value for m in deciding.identified_by),
        expiry=deciding.expiry,
        reminder=deciding.reminder,
        notify=deciding.notify,
        policy_hash=policy.hash,
    )


def policy_summary(policy: Policy) -> dict[str, Any]:
    return {"source": policy.source, "hash": policy.hash, "rules": [r.name for r in policy.rules]}
