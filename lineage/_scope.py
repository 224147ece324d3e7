"""The approval scope check: what a run actually touched, against what its gate approved.

Pure: (one classified access, the gates of its run, the policy's tags) → at most one finding.
Detection after the fact, from the orchestrator's own OpenLineage events — never prevention: by
the time the event arrives the access happened. What it finds, per access of a run that has a gate:

    not_approved        the run's gates were never approved (rejected, cancelled, expired, still
                        pending) and the access is a write/export/delete or touches a tagged dataset
    after_approval      the access happened after every approval of the run had expired (an
                        approval is usable, and consumed, only within its expiry)
    unapproved_target   a write/export/delete to a dataset no approval of the run names, when the
                        gated action is itself a write/export/delete
    unapproved_dataset  a dataset carrying a tag the policy matches on (pii, …), after server-side
                        classification with the catalog, that no approval of the run names

The receiver adds one more, about runs rather than accesses: ``contested_run``, an OpenLineage
runId of a gated run also claimed for another run (``lineage._ol_ingest.contested``).

A dataset is covered when an approved gate of the run names it (``datasets``) or it is the gate's
``target``. One access yields at most one finding (the first that applies, in the order above);
a finding is keyed on (gate, kind, dataset, operation), so START and COMPLETE of one task, or a
retried event, make one violation.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from gate_core import DatasetRef, Gate, GateStatus
from lineage._models import AccessEvent, Operation

_APPROVED = (GateStatus.APPROVED, GateStatus.CONSUMED)
_OUTPUTS = frozenset({Operation.WRITE, Operation.EXPORT, Operation.DELETE})
CONTESTED_RUN = "contested_run"  # found by the receiver, not per access: see lineage._ol_ingest
KINDS = ("not_approved", "after_approval", "unapproved_target", "unapproved_dataset", CONTESTED_RUN)


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    gate_id: str
    kind: str
    dataset: str
    operation: str
    tags: tuple[str, ...]
    accessed_at: datetime
    detail: str


def finding_id(gate_id: str, kind: str, dataset: str, operation: str) -> str:
    key = f"{gate_id}\x00{kind}\x00{dataset}\x00{operation}".encode()
    return "v" + hashlib.sha256(key).hexdigest()[:32]


def _covered_names(gate: Gate) -> set[str]:
    names = {d.qualified_name for d in gate.request.datasets}
    target = gate.request.target.strip()
    if target:
        names.add(target)
        with contextlib.suppress(ValueError):
            names.add(DatasetRef.parse(target).qualified_name)
    return names


def governing_gate(gates: Sequence[Gate], at: datetime) -> Gate:
    """The gate an access is tied to: the newest gate of the run opened before it, else the first."""
    before = [g for g in gates if g.created_at <= at]
    return max(before, key=lambda g: g.created_at) if before else min(gates, key=lambda g: g.created_at)


@dataclass(frozen=True)
class RunScope:
    """What the approvals of one run cover, computed once per run (not once per access)."""

    gates: tuple[Gate, ...]
    approved: tuple[Gate, ...]
    covered: frozenset[str]
    latest_expiry: datetime | None
    writes_approved: bool

    @classmethod
    def of(cls, gates: Sequence[Gate]) -> RunScope:
        approved = tuple(g for g in gates if g.status in _APPROVED)
        return cls(
            tuple(gates),
            approved,
            frozenset().union(*(_covered_names(g) for g in approved)),
            max((g.expires_at for g in approved), default=None),
            any(g.request.action in ("write", "export", "delete") for g in approved),
        )


def check(
    access: AccessEvent, scope: RunScope | Sequence[Gate], relevant_tags: Iterable[str]
) -> Finding | None:
    """The one finding ``access`` makes against the gates of its run, or None (in scope)."""
    if not isinstance(scope, RunScope):
        scope = RunScope.of(scope)
    if not scope.gates:
        return None
    gate = governing_gate(scope.gates, access.at)
    name = access.dataset.qualified_name
    relevant = sorted(access.tags.intersection(relevant_tags))
    operation = access.operation

    def found(kind: str, detail: str) -> Finding:
        return Finding(
            finding_id(gate.id, kind, name, operation.value),
            gate.id,
            kind,
            name,
            operation.value,
            tuple(relevant),
            access.at,
            detail[:1000],
        )

    if scope.latest_expiry is None:
        if operation in _OUTPUTS or relevant:
            return found("not_approved", f"gate {gate.id} is {gate.status.value}: nothing was approved")
        return None
    if access.at > scope.latest_expiry:
        return found(
            "after_approval",
            f"accessed at {access.at.isoformat()}; the approval expired at {scope.latest_expiry.isoformat()}",
        )
    if name in scope.covered:
        return None
    if operation in _OUTPUTS and scope.writes_approved:
        return found("unapproved_target", f"{operation.value} to {name}, which no approval of the run names")
    if relevant:
        return found(
            "unapproved_dataset", f"{name} is tagged {', '.join(relevant)}; no approval of the run names it"
        )
    return None
