"""The policy file and its evaluation.

A policy is an ordered list of rules. Evaluation is a pure function of (request, requester,
policy): a matching ``deny`` anywhere wins; otherwise the first matching rule decides; when
nothing matches, the policy's ``default`` applies, and the default may never be ``allow`` — an
unmatched privileged action needs a person (fail closed).

Spelling never picks the rule (gate_core._terms): actions, environments and tags are compared
NFKC-normalised, case-folded and trimmed, and an environment may be known by aliases
(``environments: {prod: [production, prd]}``). An action or environment the policy does not know
— an environment not declared (or, without ``environments``, named by no rule), an action named
by no rule — gets the STRICTEST outcome among the default and every rule that matches (a rule's
environment criterion counts as met for an unknown environment: it may be that one): deny over
require over allow, then more approvals; ties go to the first in order, the default last. So
``--env prod-eu`` on a redeploy meets the two-person prod rule, and nothing unknown ever reaches an
``allow`` (the default, never ``allow``, is always a candidate).

    version: 1
    environments: {prod: [production, prd], dev: []}
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
import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import cel
import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gate_core._durations import format_duration, parse_duration
from gate_core._errors import PolicyError
from gate_core._models import ApprovalRequirement, GateRequest, Principal, canonical_json, sha256_hex
from gate_core._notify_target import NotifyTarget
from gate_core._terms import normalise_term, visible_term_problem
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
    """``groups`` + ``count``: that many distinct people from any of the groups; or ``all_of``:
    several such requirements at once (one from data-governance AND one from security), each
    counting distinct people, and one person never counting toward two."""

    groups: tuple[str, ...] = ()
    count: int = Field(default=1, ge=1, le=20, description="distinct people who must approve")
    all_of: tuple[ApprovalRequirement, ...] = ()

    @model_validator(mode="after")
    def _one_form(self) -> Approvers:
        if bool(self.groups) == bool(self.all_of):
            raise ValueError("groups: give either 'groups' (with 'count') or 'all_of', not both or neither")
        if self.all_of and "count" in self.model_fields_set:
            raise ValueError("count: with 'all_of' each requirement has its own 'count'")
        return self

    @property
    def requirements(self) -> tuple[ApprovalRequirement, ...]:
        return self.all_of or (ApprovalRequirement(groups=self.groups, count=self.count),)

    @property
    def total(self) -> int:
        return sum(r.count for r in self.requirements)

    @property
    def all_groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g for r in self.requirements for g in r.groups))


class Window(_Strict):
    """A time window, e.g. a change freeze: ``start`` ≤ now < ``end``; both with a UTC offset."""

    start: AwareDatetime
    end: AwareDatetime
    name: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError("end: a window must end after it starts")
        return self

    def contains(self, now: datetime) -> bool:
        return self.start <= now < self.end


@functools.lru_cache(maxsize=1024)
def compile_condition(expression: str) -> cel.Program:
    """CEL via ``common-expression-language`` (Rust cel-interpreter bindings; see pyproject)."""
    try:
        return cel.compile(expression)
    except (ValueError, RuntimeError) as exc:
        problem = str(exc).strip().splitlines()[0]
        raise ValueError(f"not a valid CEL expression: {problem}") from None


def condition_context(request: GateRequest, requester: Principal) -> dict[str, Any]:
    """What a ``when`` condition sees: ``request`` and ``requester``, as plain values."""
    return {
        "request": {
            "action": request.action,
            "environment": request.environment,
            "target": request.target,
            "parameters": request.parameters,
            "reason": request.reason,
            "pipeline": request.run.pipeline,
            "tags": sorted(request.tags),
            "datasets": [
                {
                    "namespace": d.namespace,
                    "name": d.name,
                    "qualified_name": d.qualified_name,
                    "tags": sorted(d.tags),
                }
                for d in request.datasets
            ],
        },
        "requester": {"id": requester.id, "groups": sorted(requester.groups), "kind": requester.kind.value},
    }


class Match(_Strict):
    """Every field given must match (AND); within a field any listed value matches (OR).

    ``requester`` entries are principal ids, ``group:NAME`` or ``kind:service|human``;
    ``pipeline`` and ``datasets`` entries are shell-style globs; ``when`` is a CEL condition on
    ``request`` (action, environment, target, parameters, reason, pipeline, tags, datasets) and
    ``requester`` (id, groups, kind), e.g. ``request.parameters.rows > 1000000``; ``during`` lists
    time windows (a change freeze). A condition that cannot be evaluated (a missing parameter, a
    type error) or a window when no time is given never makes the outcome more lenient: it counts
    as met for ``deny``/``require`` rules and as not met for ``allow`` rules.
    """

    action: tuple[str, ...] = ()
    environment: tuple[str, ...] = ()
    dataset_tags: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    requester: tuple[str, ...] = ()
    pipeline: tuple[str, ...] = ()
    when: str | None = Field(default=None, min_length=1, max_length=2000, description="a CEL condition")
    during: tuple[Window, ...] = ()

    @field_validator("when")
    @classmethod
    def _compiles(cls, expression: str | None) -> str | None:
        if expression is not None:
            compile_condition(expression)
        return expression

    @field_validator("action", "environment", "dataset_tags", mode="after")
    @classmethod
    def _one_spelling(cls, terms: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for term in terms:
            problem = visible_term_problem(str(info.field_name), term)
            if problem is not None:
                raise ValueError(problem)
        return tuple(dict.fromkeys(normalise_term(t) for t in terms))


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
    # ``passkey``: every decision must be signed with the decider's registered passkey over a
    # challenge derived from the decision itself (gate_core._passkeys); only the console can.
    signature: Literal["passkey"] | None = None

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
    environments: dict[str, tuple[str, ...]] | None = Field(
        default=None, description="each environment the policy knows, with its aliases"
    )
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

    @model_validator(mode="after")
    def _environments_declared(self) -> Policy:
        """Aliases name one environment each; rules name declared environments (or aliases),
        stored as the environment's own name."""
        if self.environments is None:
            return self
        canonical: dict[str, str] = {}
        for name, aliases in self.environments.items():
            for spelling in (name, *aliases):
                problem = visible_term_problem(f"environments.{name}", spelling)
                if problem is not None:
                    raise ValueError(problem)
                term = normalise_term(spelling)
                if canonical.setdefault(term, normalise_term(name)) != normalise_term(name):
                    raise ValueError(
                        f"environments.{name}: {spelling!r} already names environment {canonical[term]!r}"
                    )
        for index, rule in enumerate(self.rules):
            for env in rule.match.environment:
                if env not in canonical:
                    raise ValueError(
                        f"rules.{index}.match.environment: {env!r} is not declared under 'environments' "
                        f"(declared: {', '.join(sorted(set(canonical.values())))})"
                    )
        return self

    def canonical_environment(self, environment: str) -> str | None:
        """The environment's own name for a (normalised) spelling or alias; None if the policy
        does not know it. "" (no environment given) is always known."""
        if not environment:
            return ""
        if self.environments is None:
            named = {env for rule in self.rules for env in rule.match.environment}
            return environment if environment in named else None
        return self._environment_names().get(environment)

    def _environment_names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for name, aliases in (self.environments or {}).items():
            for spelling in (name, *aliases):
                names[normalise_term(spelling)] = normalise_term(name)
        return names

    def knows_action(self, action: str) -> bool:
        named = {a for rule in self.rules for a in rule.match.action}
        return not named or action in named

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
    signature: str = ""  # "passkey": decisions must be signed (gate_core._passkeys)
    expiry: timedelta
    reminder: timedelta | None
    notify: tuple[str, ...]
    policy_hash: str
    requirements: tuple[ApprovalRequirement, ...] = ()  # several groups at once (all_of); else empty


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


@dataclass(frozen=True, slots=True)
class _Facts:
    """The request as rules see it: the environment by its own name, and which of action and
    environment the policy does not know. A criterion on an unknown environment is treated as met
    (``prod-eu`` may be prod: find the strictest rule it could reach); an unknown action meets no
    action criterion, but then only the strictest of what matches applies."""

    environment: str
    unknown_action: bool
    unknown_environment: bool
    now: datetime | None


def _match_reasons(
    match: Match, request: GateRequest, requester: Principal, facts: _Facts, policy: Policy, *, strict: bool
) -> list[str] | None:
    """The reasons a rule matches, or None when any given criterion fails. ``strict``: the rule's
    outcome is not ``allow``, so what cannot be decided (a condition's error, no time) counts as met."""
    reasons: list[str] = []
    if match.action:
        if request.action not in match.action:
            return None
        reasons.append(f"action {request.action}")
    if match.environment:
        if facts.unknown_environment:
            reasons.append(f"environment {request.environment} unknown to the policy")
        elif facts.environment not in {policy.canonical_environment(e) for e in match.environment}:
            return None
        else:
            reasons.append(f"environment {facts.environment}")
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
    if match.during:
        if facts.now is None:
            if not strict:
                return None
            reasons.append("time window (no time given: counted as open)")
        else:
            open_windows = [w for w in match.during if w.contains(facts.now)]
            if not open_windows:
                return None
            reasons.append(
                "during " + ", ".join(w.name or f"{w.start:%Y-%m-%d}..{w.end:%Y-%m-%d}" for w in open_windows)
            )
    if match.when:
        try:
            met = compile_condition(match.when).execute(condition_context(request, requester))
        except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:
            if not strict:
                return None
            reasons.append(
                f"condition {match.when} not evaluable ({type(exc).__name__}: {exc}): counted as met"
            )
        else:
            if met is not True:
                return None
            reasons.append(f"condition {match.when}")
    return reasons or ["matches every request"]


def _describe(spec: _OutcomeSpec) -> str:
    if spec.outcome is Outcome.ALLOW:
        return "allowed without review"
    if spec.outcome is Outcome.DENY:
        return "denied by policy"
    assert spec.approvers is not None  # guaranteed by _OutcomeSpec's validator
    parts = []
    for requirement in spec.approvers.requirements:
        noun = "approval" if requirement.count == 1 else "distinct approvals"
        parts.append(f"{requirement.count} {noun} from {requirement.label}")
    distinct = " (distinct people)" if len(parts) > 1 else ""
    signed = ", each decision signed with a passkey" if spec.signature else ""
    return f"requires {' and '.join(parts)}{distinct}{signed}, expires in {format_duration(spec.expiry)}"


_RANK = {Outcome.ALLOW: 0, Outcome.REQUIRE: 1, Outcome.DENY: 2}


def _strictness(spec: _OutcomeSpec) -> tuple[int, int, int]:
    """deny over require over allow; then more approvals; then signed decisions."""
    count = spec.approvers.total if spec.approvers else 0
    return (_RANK[spec.outcome], count, 1 if spec.signature else 0)


def evaluate(
    request: GateRequest, requester: Principal, policy: Policy, now: datetime | None = None
) -> PolicyDecision:
    """Decide what a request needs. Pure: no clock (``now`` is an input, for time windows), no
    I/O, same inputs → same answer."""
    environment = policy.canonical_environment(request.environment)
    facts = _Facts(
        environment=environment or request.environment,
        unknown_action=not policy.knows_action(request.action),
        unknown_environment=environment is None,
        now=now,
    )
    matched: list[tuple[Rule, list[str]]] = []
    for rule in policy.rules:
        reasons = _match_reasons(
            rule.match, request, requester, facts, policy, strict=rule.outcome is not Outcome.ALLOW
        )
        if reasons is not None:
            matched.append((rule, reasons))
    deciding: _OutcomeSpec
    denials = [m for m in matched if m[0].outcome is Outcome.DENY]
    if (facts.unknown_action or facts.unknown_environment) and matched:
        unknown = " and ".join(
            f"{what} {value!r}"
            for what, value, flag in (
                ("action", request.action, facts.unknown_action),
                ("environment", request.environment, facts.unknown_environment),
            )
            if flag
        )
        candidates: list[tuple[_OutcomeSpec, str]] = [(rule, rule.name) for rule, _ in matched]
        candidates.append((policy.default, DEFAULT_RULE_NAME))
        deciding, name = max(candidates, key=lambda c: _strictness(c[0]))  # ties: the first in order
        explanation = (
            f"{unknown} unknown to the policy; the strictest outcome it could reach applies: "
            f"{'rule ' + repr(name) if name != DEFAULT_RULE_NAME else 'the default'}: {_describe(deciding)}"
        )
    elif denials or matched:
        rule, reasons = (denials or matched)[0]
        deciding, name = rule, rule.name
        explanation = f"rule {name!r} matched ({'; '.join(reasons)}): {_describe(rule)}"
        others = [m[0].name for m in matched if m[0] is not rule]
        if others:
            explanation += f" [also matched: {', '.join(others)}]"
    else:
        deciding, name = policy.default, DEFAULT_RULE_NAME
        explanation = f"no rule matched action {request.action!r}; the default applies: {_describe(deciding)}"
        if facts.unknown_action or facts.unknown_environment:
            explanation += " (unknown to the policy: the default is its strictest outcome here)"
    approvers = deciding.approvers
    return PolicyDecision(
        outcome=deciding.outcome,
        rule=name,
        matched_rules=tuple(m[0].name for m in matched),
        explanation=explanation,
        required_approvals=approvers.total if approvers else 0,
        approver_groups=approvers.all_groups if approvers else (),
        break_glass_groups=deciding.break_glass_groups,
        identified_by=tuple(m.value for m in deciding.identified_by),
        signature=deciding.signature or "",
        expiry=deciding.expiry,
        reminder=deciding.reminder,
        notify=deciding.notify,
        policy_hash=policy.hash,
        requirements=approvers.all_of if approvers else (),
    )


def policy_summary(policy: Policy) -> dict[str, Any]:
    return {"source": policy.source, "hash": policy.hash, "rules": [r.name for r in policy.rules]}
