"""The typed payloads of the gate domain: what a gate asks, who asks, who decides.

Who (``Principal``, ``Actor``, ``AuthMethod``) is defined in gate_core.identity, the layer below
this one, and the hashing helpers in ``_hashing.py``; both are re-exported here for the modules that
import the domain's payloads from one place.

All are frozen pydantic models so that they serialise identically everywhere they cross a boundary
(store, audit, HTTP, orchestrator adapters) and cannot be mutated behind the store's back.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from gate_core._errors import InvalidInput
from gate_core._hashing import canonical_json as canonical_json
from gate_core._hashing import sha256_hex as sha256_hex
from gate_core._terms import normalise_term, visible_term_problem
from gate_core.identity._principal import SYSTEM_ACTOR as SYSTEM_ACTOR
from gate_core.identity._principal import Actor as Actor
from gate_core.identity._principal import AuthMethod as AuthMethod
from gate_core.identity._principal import Principal as Principal
from gate_core.identity._principal import PrincipalKind as PrincipalKind


def _term(value: Any) -> Any:
    return normalise_term(value) if isinstance(value, str) else value


# An action or environment as policies match it (gate_core._terms): normalised on the way in, so
# the binding hash, the stored gate and every reader see one spelling.
Term = Annotated[str, BeforeValidator(_term)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def check_text(value: Any, where: str = "") -> None:
    """Refuse text no store can keep faithfully: NUL characters (PostgreSQL text cannot hold
    them) and lone surrogates (not encodable as UTF-8, so not hashable). Walks nested JSON."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where or 'text'} must not contain NUL (\\x00) characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where or 'text'} is not valid Unicode (lone surrogate)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, where)
            check_text(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            check_text(item, where)


def require_storable(value: Any, what: str) -> None:
    """``check_text`` for what a caller passed in: refused as InvalidInput, not a ValueError."""
    try:
        check_text(value, what)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


_NAMESPACE_WITH_SCHEME = re.compile(r"^(?P<ns>[a-zA-Z][a-zA-Z0-9+.-]*://[^/]+)/(?P<name>.+)$")


class DatasetRef(_Frozen):
    """A dataset in OpenLineage naming (namespace + name) with its classification tags."""

    namespace: str = Field(min_length=1, max_length=500)
    name: str = Field(min_length=1, max_length=1000)
    tags: frozenset[str] = frozenset()

    @field_validator("tags")
    @classmethod
    def _normalise_tags(cls, tags: frozenset[str]) -> frozenset[str]:
        return frozenset(n for n in (normalise_term(t) for t in tags) if n)

    @property
    def qualified_name(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> DatasetRef:
        """Parse ``NAMESPACE/NAME[#tag,tag]``.

        A namespace with a URI scheme (``postgres://db:5432/public.customers``) ends at the first
        slash after the authority; otherwise at the first slash (``warehouse/customers``).
        """
        spec, _, tag_text = text.partition("#")
        match = _NAMESPACE_WITH_SCHEME.match(spec)
        if match:
            namespace, name = match["ns"], match["name"]
        else:
            namespace, _, name = spec.partition("/")
        if not namespace or not name:
            raise ValueError(f"dataset {text!r} is not NAMESPACE/NAME[#tag,tag]")
        tags = frozenset(t for t in tag_text.split(",") if t.strip())
        return cls(namespace=namespace, name=name, tags=tags)

    def __str__(self) -> str:
        tags = f"#{','.join(sorted(self.tags))}" if self.tags else ""
        return f"{self.qualified_name}{tags}"


class RunContext(_Frozen):
    """Where a request comes from. Outside any orchestrator it is ``local``."""

    orchestrator: str = "local"
    pipeline: str = ""
    run_id: str = ""
    task_id: str = ""
    try_number: int = 1
    url: str | None = None

    def key(self) -> str | None:
        """The run as one fixed-width key (``run_key``), by which the gates of a run are found."""
        return run_key(self.orchestrator, self.pipeline, self.run_id)


def run_key(orchestrator: str, pipeline: str, run_id: str) -> str | None:
    """Orchestrator, pipeline and run id NUL-joined (none can hold NUL), SHA-256 hex; None outside
    any run. ``gh_gates.run_key`` holds it; audit verify recomputes it from each gate's logged
    request."""
    if not run_id:
        return None
    return sha256_hex(f"{orchestrator}\x00{pipeline}\x00{run_id}")


class Involved(_Frozen):
    """A person involved in a request, and the source of that claim (issue 14). Nobody involved
    decides: the requester, whoever triggered the run as the orchestrator recorded it, every person
    the pipeline names, the submitting credential's principal, the pipeline's owners."""

    principal: str = Field(min_length=1, max_length=200)
    source: str = Field(default="", max_length=200, description="e.g. airflow dag_run.triggering_user_name")
    recorded_by_orchestrator: bool = False


class GateRequest(_Frozen):
    """What a step asks permission for. Everything in ``binding`` is what the approval is bound to."""

    action: Term = Field(min_length=1, max_length=100)
    target: str = Field(default="", max_length=1000)
    datasets: tuple[DatasetRef, ...] = ()
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    environment: Term = Field(default="", max_length=100)
    requester: str = Field(min_length=1, max_length=200, description="principal id of the person asking")
    run: RunContext = Field(default_factory=RunContext)
    idempotency_key: str | None = Field(default=None, max_length=500)
    reason: str = Field(default="", max_length=4000)
    involved: tuple[Involved, ...] = Field(
        default=(), max_length=20, description="everyone else involved, each with its source; none decides"
    )

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        check_text(data)
        return data

    def invisible_term_problem(self) -> str | None:
        """``"FIELD: …"`` when the action, environment or a tag holds an invisible character.
        Refused when a gate is opened (not when one is read: old rows stay readable)."""
        terms = [("action", self.action), ("environment", self.environment)] + [
            (f"datasets.{i}.tags", tag) for i, d in enumerate(self.datasets) for tag in sorted(d.tags)
        ]
        return next((p for field, text in terms if (p := visible_term_problem(field, text))), None)

    def binding(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "environment": self.environment,
            "parameters": self.parameters,
            "datasets": sorted(d.qualified_name for d in self.datasets),
        }

    def binding_hash(self) -> str:
        """SHA-256 of exactly what the approval covers: a different payload needs a new gate."""
        return sha256_hex(canonical_json(self.binding()))

    @property
    def tags(self) -> frozenset[str]:
        return frozenset().union(*(d.tags for d in self.datasets)) if self.datasets else frozenset()


class GateStatus(enum.StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    CONSUMED = "CONSUMED"

    @property
    def is_open(self) -> bool:
        return self is GateStatus.PENDING


class Verdict(enum.StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Decision(_Frozen):
    principal_id: str
    email: str | None
    display_name: str
    verdict: Verdict
    comment: str = ""
    at: datetime
    via: AuthMethod
    break_glass: bool = False
    counts_for: int | None = Field(
        default=None, description="index in Gate.requirements this approval counts toward (multi-group rules)"
    )
    issuer: str | None = Field(default=None, description="via oidc: the IdP that proved the decider")
    subject: str | None = Field(default=None, description="via oidc: the IdP's sub for the decider")

    passkey: str | None = Field(
        default=None, description="credential id of the passkey that signed this decision (signature rules)"
    )

    @property
    def identified_as(self) -> str:
        """`` (subject … at …)`` for a decision the IdP proved, else ""."""
        return f" (subject {self.subject} at {self.issuer})" if self.subject and self.issuer else ""


class ApprovalRequirement(_Frozen):
    """One of several requirements a gate must meet at once (``approvers: {all_of: [...]}``):
    ``count`` distinct people from any of ``groups``. One person counts toward one requirement."""

    groups: tuple[str, ...] = Field(min_length=1)
    count: int = Field(default=1, ge=1, le=20)

    @property
    def label(self) -> str:
        return " or ".join(self.groups)


class LastReview(_Frozen):
    """When this action on this target was last decided by a person, for the approver's context."""

    gate_id: str
    status: GateStatus
    decided_at: datetime
    decided_by: tuple[str, ...]


class Gate(_Frozen):
    id: str
    status: GateStatus
    request: GateRequest
    submitted_by: str
    requester_identities: tuple[str, ...] = Field(
        description="id: and email: keys of everyone involved when the gate opened; none may decide"
    )
    involved: tuple[Involved, ...] = Field(
        default=(), description="who is involved (requester, submitter, named, owners) and by which source"
    )
    identified_by: tuple[str, ...] = Field(
        default=(),
        description="how approvers must have been identified (the rule's identified_by); empty: any",
    )
    signature: str = Field(
        default="", description="'passkey': every decision must be signed with the decider's passkey"
    )
    binding_hash: str
    policy_hash: str
    rule: str
    matched_rules: tuple[str, ...]
    explanation: str
    required_approvals: int
    approver_groups: tuple[str, ...]
    break_glass_groups: tuple[str, ...]
    notify: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    remind_at: datetime | None = None
    decided_at: datetime | None = None
    decided_by: tuple[str, ...] = ()
    consumed_at: datetime | None = None
    decisions: tuple[Decision, ...] = ()
    last_review: LastReview | None = None
    requirements: tuple[ApprovalRequirement, ...] = Field(
        default=(), description="several groups at once (all must be met); empty: approver_groups and count"
    )
    tag_sources: dict[str, dict[str, tuple[str, ...]]] = Field(
        default_factory=dict,
        description="per dataset, where each tag came from: caller, catalog, lineage (gate_core._classify)",
    )

    @property
    def approvals(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.verdict is Verdict.APPROVE)

    def server_sources(self, dataset: DatasetRef, tag: str) -> tuple[str, ...]:
        """Which of the server's sources (catalog, lineage) knew this tag; () if only the caller."""
        sources = self.tag_sources.get(dataset.qualified_name, {}).get(tag, ())
        return tuple(s for s in sources if s != "caller")

    def tag_with_source(self, dataset: DatasetRef, tag: str) -> str:
        """``pii (catalog)``: the tag and which server source knew it, as every channel shows it;
        a tag only the caller declared is shown bare."""
        sources = self.server_sources(dataset, tag)
        return f"{tag} ({', '.join(sources)})" if sources else tag

    def approvals_missing(self) -> int:
        return max(0, self.required_approvals - len(self.approvals))

    def involved_people(self) -> tuple[tuple[str, str], ...]:
        """Each person involved once, with every source that names them, as every channel shows
        them: ``("bob", "requester; Airflow triggering user (recorded by the orchestrator)")``.
        None of them may decide; a name the orchestrator recorded says so."""
        sources: dict[str, list[str]] = {}
        for person in self.involved:
            said = person.source or "named"
            if person.recorded_by_orchestrator:
                said += " (recorded by the orchestrator)"
            named = sources.setdefault(person.principal, [])
            if said not in named:
                named.append(said)
        return tuple((principal, "; ".join(said)) for principal, said in sources.items())
