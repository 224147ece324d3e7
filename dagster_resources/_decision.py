"""A gate's outcome in Dagster's terms: ``ApprovalDecision`` and its step metadata, or a ``Failure``.

Metadata keys are namespaced ``gatehouse/…`` and typed (text, JSON, timestamp, URL) so the Dagster
UI renders them — the console link is clickable — and ``ApprovalDecision.from_metadata`` can read
a decision back from a run's events (handy in your own tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from gate_core import Gate, GateNotApproved, GateStatus
from gate_core.session import not_approved

GATE_ID = "gatehouse/gate_id"
STATUS = "gatehouse/status"
APPROVERS = "gatehouse/approvers"
RULE = "gatehouse/rule"
DECIDED_AT = "gatehouse/decided_at"
REQUESTER = "gatehouse/requester"
COMMENTS = "gatehouse/comments"
BREAK_GLASS = "gatehouse/break_glass"
LINK = "gatehouse/gate"
EXPLANATION = "gatehouse/explanation"
DECIDED_BY = "gatehouse/decided_by"
EXPIRES_AT = "gatehouse/expires_at"
EVENT = "gatehouse/event"  # on observations: "requested" (open_gate) or the outcome (approval_sensor)
REQUESTED = "requested"


def console_link(console_url: str, gate_id: str) -> str:
    return f"{console_url.rstrip('/')}/console/gates/{gate_id}"


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """An approval a step ran under. ``status`` is the decision (APPROVED), also when the gate
    has since been consumed by this or an earlier attempt of the step."""

    gate_id: str
    status: GateStatus
    approvers: tuple[str, ...]  # distinct principal ids, in the order they approved
    comments: tuple[str, ...]  # "bob: aggregates only"
    decided_at: datetime | None
    rule: str
    requester: str
    url: str  # the gate in the Gatehouse console
    break_glass: bool = False

    @classmethod
    def from_gate(cls, gate: Gate, console_url: str) -> ApprovalDecision:
        status = GateStatus.APPROVED if gate.status is GateStatus.CONSUMED else gate.status
        return cls(
            gate_id=gate.id,
            status=status,
            approvers=tuple(dict.fromkeys(d.principal_id for d in gate.approvals)),
            comments=tuple(f"{d.principal_id}: {d.comment}" for d in gate.decisions if d.comment),
            decided_at=gate.decided_at,
            rule=gate.rule,
            requester=gate.request.requester,
            url=console_link(console_url, gate.id),
            break_glass=any(d.break_glass for d in gate.approvals),
        )

    def metadata(self) -> dict[str, dg.MetadataValue]:
        """Step/asset metadata for the Dagster UI."""
        entries: dict[str, dg.MetadataValue] = {
            GATE_ID: dg.MetadataValue.text(self.gate_id),
            STATUS: dg.MetadataValue.text(self.status.value),
            APPROVERS: dg.MetadataValue.json(list(self.approvers)),
            RULE: dg.MetadataValue.text(self.rule),
            REQUESTER: dg.MetadataValue.text(self.requester),
            LINK: dg.MetadataValue.url(self.url),
        }
        if self.decided_at is not None:
            entries[DECIDED_AT] = dg.MetadataValue.timestamp(self.decided_at)
        if self.comments:
            entries[COMMENTS] = dg.MetadataValue.json(list(self.comments))
        if self.break_glass:
            entries[BREAK_GLASS] = dg.MetadataValue.bool(True)
        return entries

    def as_dict(self) -> dict[str, Any]:
        return {
            "gate_id": self.gate_id,
            "status": self.status.value,
            "approvers": list(self.approvers),
            "comments": list(self.comments),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "rule": self.rule,
            "requester": self.requester,
            "url": self.url,
            "break_glass": self.break_glass,
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ApprovalDecision:
        """Read a decision back from step output or materialization metadata (values may be
        MetadataValue objects or plain values). KeyError when the metadata holds no decision."""

        def value(key: str, default: Any = None) -> Any:
            raw = metadata.get(key, default)
            return getattr(raw, "value", raw)

        if GATE_ID not in metadata:
            raise KeyError(f"no {GATE_ID!r} in this metadata: not a step that ran under a gate")
        decided = value(DECIDED_AT)
        return cls(
            gate_id=str(value(GATE_ID)),
            status=GateStatus(value(STATUS)),
            approvers=tuple(value(APPROVERS, []) or []),
            comments=tuple(value(COMMENTS, []) or []),
            decided_at=datetime.fromtimestamp(decided, UTC) if isinstance(decided, int | float) else None,
            rule=str(value(RULE, "")),
            requester=str(value(REQUESTER, "")),
            url=str(value(LINK, "")),
            break_glass=bool(value(BREAK_GLASS, False)),
        )


def failure_metadata(gate: Gate, console_url: str) -> dict[str, dg.MetadataValue]:
    entries: dict[str, dg.MetadataValue] = {
        GATE_ID: dg.MetadataValue.text(gate.id),
        STATUS: dg.MetadataValue.text(gate.status.value),
        RULE: dg.MetadataValue.text(gate.rule),
        DECIDED_BY: dg.MetadataValue.json(list(gate.decided_by)),
        EXPLANATION: dg.MetadataValue.text(gate.explanation),
        REQUESTER: dg.MetadataValue.text(gate.request.requester),
        EXPIRES_AT: dg.MetadataValue.timestamp(gate.expires_at),
        LINK: dg.MetadataValue.url(console_link(console_url, gate.id)),
    }
    if gate.decided_at is not None:
        entries[DECIDED_AT] = dg.MetadataValue.timestamp(gate.decided_at)
    comments = [f"{d.principal_id}: {d.comment}" for d in gate.decisions if d.comment]
    if comments:
        entries[COMMENTS] = dg.MetadataValue.json(comments)
    return entries


def request_observation(gate: Gate, console_url: str) -> dict[str, dg.MetadataValue]:
    """What ``open_gate`` records on the watched asset, for the UI and for ``approval_sensor``."""
    return {
        EVENT: dg.MetadataValue.text(REQUESTED),
        GATE_ID: dg.MetadataValue.text(gate.id),
        STATUS: dg.MetadataValue.text(gate.status.value),
        RULE: dg.MetadataValue.text(gate.rule),
        REQUESTER: dg.MetadataValue.text(gate.request.requester),
        EXPIRES_AT: dg.MetadataValue.timestamp(gate.expires_at),
        LINK: dg.MetadataValue.url(console_link(console_url, gate.id)),
    }


def outcome_observation(gate: Gate, console_url: str) -> dict[str, dg.MetadataValue]:
    """What ``approval_sensor`` records on the watched asset for a gate that will not run."""
    event = "approval_expired" if gate.status is GateStatus.APPROVED else gate.status.value.lower()
    return {EVENT: dg.MetadataValue.text(event)} | failure_metadata(gate, console_url)


def gate_failure(gate: Gate, console_url: str, refused: GateNotApproved | None = None) -> dg.Failure:
    """The step's ``Failure`` for a gate that did not approve. No step retries: a decision is
    final (a re-execution of the run finds the same gate and fails the same way)."""
    why = refused or not_approved(gate)
    return dg.Failure(description=str(why), metadata=failure_metadata(gate, console_url), allow_retries=False)
