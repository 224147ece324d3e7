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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from gate_core._errors import InvalidInput
from gate_core._hashing import canonical_json as canonical_json
from gate_core._hashing import sha256_hex as sha256_hex
from gate_core.identity._principal import SYSTEM_ACTOR as SYSTEM_ACTOR
from gate_core.identity._principal import Actor as Actor
from gate_core.identity._principal import AuthMethod as AuthMethod
from gate_core.identity._principal import Principal as Principal
from gate_core.identity._principal import PrincipalKind as PrincipalKind


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
        return frozenset(t.strip().lower() for t in tags if t.strip())

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


class Involved(_Frozen):
    """A person involved in a request, and the source of that claim (issue 14). Nobody involved
    decides: the requester, whoever triggered the run as the orchestrator recorded it, every person
    the pipeline names, the submitting credential's principal, the pipeline's owners."""

    principal: str = Field(min_length=1, max_length=200)
    source: str = Field(default="", max_length=200, description="e.g. airflow dag_run.triggering_user_name")
    recorded_by_orchestrator: bool = False


class GateRequest(_Frozen):
    """What a step asks permission for. Everything in ``binding`` is what the approval is bound to."""

    action: str = Field(min_length=1, max_length=100)
    target: str = Field(default="", max_length=1000)
    datasets: tuple[DatasetRef, ...] = ()
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    environment: str = Field(default="", max_length=100)
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

    @property
    def approvals(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.verdict is Verdict.APPROVE)

    def approvals_missing(self) -> int:
        return max(0, self.required_approvals - len(self.approvals))
