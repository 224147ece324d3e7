"""What a gated Prefect step raises when its gate does not let it run.

    GatehouseError                  (gate_core's root: callers can catch everything Gatehouse raises)
    └── GateNotApproved             the gate closed without an approval; the step must not run
        ├── GateRejected            an approver rejected it (``reason`` is their comment)
        ├── GateExpired             nobody decided before the gate's expiry, or the step's own
        │                           ``timeout_seconds`` ran out first (the gate is then cancelled)
        └── GateCancelled           the gate was withdrawn, or the flow run left its pause otherwise

Raised inside the flow or task, each fails the Prefect run with a one-line message naming the
gate, who decided and why — the Prefect idiom for "this step must not run".
"""

from __future__ import annotations

from typing import Any

from gate_core import GatehouseError


class GateNotApproved(GatehouseError):
    """Base: ``gate_id``, the final ``status``, who decided (``decided_by``) and ``reason``."""

    code = "gate_not_approved"

    def __init__(
        self, message: str, *, gate_id: str, status: str, reason: str = "", decided_by: tuple[str, ...] = ()
    ) -> None:
        self.gate_id = gate_id
        self.status = status
        self.reason = reason
        self.decided_by = decided_by
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect may pickle a failed run's exception (results, subprocess runs): keep every field.
        fields = {"gate_id": self.gate_id, "status": self.status, "reason": self.reason}
        return (_rebuild, (type(self), str(self), fields, self.decided_by))


def _rebuild(
    cls: type[GateNotApproved], message: str, fields: dict[str, str], decided_by: tuple[str, ...]
) -> GateNotApproved:
    return cls(message, decided_by=decided_by, **fields)


class GateRejected(GateNotApproved):
    code = "gate_rejected"


class GateExpired(GateNotApproved):
    code = "gate_expired_unanswered"


class GateCancelled(GateNotApproved):
    code = "gate_cancelled"


def error_for(
    gate_id: str, status: str, *, comment: str, rejected_by: tuple[str, ...], approvers: tuple[str, ...]
) -> GateNotApproved:
    """The error that fails a step whose gate closed without an approval."""
    if status == "REJECTED":
        who = ", ".join(rejected_by) or "an approver"
        return GateRejected(
            f"gate {gate_id} rejected by {who}: {comment or 'no reason given'}",
            gate_id=gate_id,
            status=status,
            reason=comment,
            decided_by=rejected_by,
        )
    if status == "EXPIRED":
        so_far = f"approved so far by {', '.join(approvers)}" if approvers else "nobody approved it"
        return GateExpired(
            f"gate {gate_id} expired before it was approved ({so_far}); the step must not run",
            gate_id=gate_id,
            status=status,
            reason="expired",
            decided_by=approvers,
        )
    return GateCancelled(
        f"gate {gate_id} was {status.lower()}{': ' + comment if comment else ''}; the step must not run",
        gate_id=gate_id,
        status=status,
        reason=comment,
    )
