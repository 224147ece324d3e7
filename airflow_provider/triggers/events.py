"""The typed payload a GateTrigger hands back to its task.

A trigger event crosses a process boundary (triggerer → metadata database → worker), so it is
a plain JSON dict on the wire and a frozen dataclass on both ends: ``GateEvent.to_payload()``
writes it, ``GateEvent.from_payload()`` reads it back and refuses anything it does not know —
code matches on ``GateOutcome`` members, never on loose strings (the class of bug where
``if "error_type" == "timeout":`` is always False).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gate_core import (
    Gate,
    GateCancelled,
    GateExpired,
    GatehouseError,
    GateNotApproved,
    GateRejected,
    GateStatus,
    ServiceUnavailable,
    Verdict,
)


class GateOutcome(enum.StrEnum):
    """How the wait ended. Only APPROVED lets a step run, and only after ``consume`` agrees."""

    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"  # the task's own ``timeout`` passed before anyone decided
    ERROR = "error"  # the service refused the wait (unknown gate, bad token): fail, never pass

    @classmethod
    def of(cls, status: GateStatus) -> GateOutcome:
        """The outcome a gate's (non-pending) status means."""
        return _BY_STATUS[status]


_BY_STATUS = {
    GateStatus.APPROVED: GateOutcome.APPROVED,
    GateStatus.CONSUMED: GateOutcome.APPROVED,  # approved, and a step already ran under it (a retry)
    GateStatus.REJECTED: GateOutcome.REJECTED,
    GateStatus.EXPIRED: GateOutcome.EXPIRED,
    GateStatus.CANCELLED: GateOutcome.CANCELLED,
}


class MalformedEvent(ValueError):
    """A trigger payload that is not a GateEvent: the task fails rather than guess."""


@dataclass(frozen=True, slots=True)
class GateEvent:
    gate_id: str
    outcome: GateOutcome
    decided_by: tuple[str, ...] = ()
    decided_at: str | None = None
    message: str = ""  # the reject reason, or what went wrong

    @classmethod
    def from_gate(cls, gate: Gate) -> GateEvent:
        if gate.status is GateStatus.PENDING:
            raise ValueError(f"gate {gate.id} is still PENDING; there is no outcome to report")
        rejections = [d for d in gate.decisions if d.verdict is Verdict.REJECT]
        return cls(
            gate_id=gate.id,
            outcome=GateOutcome.of(gate.status),
            decided_by=gate.decided_by,
            decided_at=gate.decided_at.isoformat() if gate.decided_at else None,
            message=rejections[-1].comment if rejections else "",
        )

    @classmethod
    def failure(cls, gate_id: str, outcome: GateOutcome, message: str) -> GateEvent:
        return cls(gate_id=gate_id, outcome=outcome, message=message)

    def to_payload(self) -> dict[str, Any]:
        return {
            "gate_id": self.gate_id,
            "outcome": self.outcome.value,
            "decided_by": list(self.decided_by),
            "decided_at": self.decided_at,
            "message": self.message,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any] | Any) -> GateEvent:
        if not isinstance(payload, Mapping):
            raise MalformedEvent(f"a gate event is a mapping, got {type(payload).__name__}")
        try:
            gate_id, outcome = payload["gate_id"], GateOutcome(payload["outcome"])
        except (KeyError, ValueError) as exc:
            raise MalformedEvent(f"not a gate event ({exc!r}): keys {sorted(payload)}") from None
        decided_by = payload.get("decided_by") or ()
        if not isinstance(gate_id, str) or not gate_id or not isinstance(decided_by, list | tuple):
            raise MalformedEvent("a gate event needs a gate_id string and a decided_by list")
        decided_at = payload.get("decided_at")
        return cls(
            gate_id=gate_id,
            outcome=outcome,
            decided_by=tuple(str(p) for p in decided_by),
            decided_at=str(decided_at) if decided_at is not None else None,
            message=str(payload.get("message") or ""),
        )

    def describe(self) -> str:
        """One line for the task log and the failure reason Airflow shows."""
        by = f" by {', '.join(self.decided_by)}" if self.decided_by else ""
        at = f" at {self.decided_at}" if self.decided_at else ""
        match self.outcome:
            case GateOutcome.APPROVED:
                return f"gate {self.gate_id} approved{by}{at}"
            case GateOutcome.REJECTED:
                reason = self.message or "no reason given"
                return f"gate {self.gate_id} rejected{by}{at}: {reason}"
            case GateOutcome.EXPIRED:
                return f"gate {self.gate_id} expired{at} before enough people approved; the step must not run"
            case GateOutcome.CANCELLED:
                return f"gate {self.gate_id} was cancelled{by}{at}"
            case GateOutcome.TIMED_OUT:
                return f"gate {self.gate_id}: {self.message}"
            case GateOutcome.ERROR:
                return f"gate {self.gate_id}: cannot wait for a decision: {self.message}"

    def error(self) -> GatehouseError:
        """What stops the step: the core's GateNotApproved family, or ServiceUnavailable when no
        decision could be had. An approval has no error."""
        if self.outcome is GateOutcome.APPROVED:
            raise ValueError(f"gate {self.gate_id} was approved; there is no error to raise")
        if self.outcome is GateOutcome.ERROR:
            return ServiceUnavailable(self.describe())
        cls, status = _ERRORS[self.outcome]
        return cls(
            self.describe(),
            gate_id=self.gate_id,
            status=status.value,
            reason=self.message,
            decided_by=self.decided_by,
        )


_ERRORS: dict[GateOutcome, tuple[type[GateNotApproved], GateStatus]] = {
    GateOutcome.REJECTED: (GateRejected, GateStatus.REJECTED),
    GateOutcome.EXPIRED: (GateExpired, GateStatus.EXPIRED),
    GateOutcome.TIMED_OUT: (GateExpired, GateStatus.PENDING),  # the task's own timeout; withdrawn
    GateOutcome.CANCELLED: (GateCancelled, GateStatus.CANCELLED),
}
