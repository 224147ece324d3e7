"""The decision a gated task pushes to XCom, the same from every operator and the sensor."""

from __future__ import annotations

from typing import Any

from gate_core import Gate, GateStatus


def decision_of(gate: Gate, url: str) -> dict[str, Any]:
    """gate_id, status (APPROVED), rule, approvers, comments, decided_at, break_glass, url."""
    approvals = gate.approvals
    return {
        "gate_id": gate.id,
        "status": GateStatus.APPROVED.value,
        "rule": gate.rule,
        "approvers": [d.principal_id for d in approvals],
        "comments": [
            {"by": d.principal_id, "comment": d.comment, "at": d.at.isoformat()}
            for d in approvals
            if d.comment
        ],
        "decided_at": gate.decided_at.isoformat() if gate.decided_at else None,
        "break_glass": any(d.break_glass for d in approvals),
        "url": url,
    }
