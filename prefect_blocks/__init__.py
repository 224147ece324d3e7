"""Gatehouse for Prefect: stop a flow run at a human approval gate, resume it on the decision.

    from prefect_blocks import ApprovalGate

    gate = ApprovalGate.load("gatehouse")
    decision = gate.require(action="export", datasets=["warehouse/customers#pii"], reason="…")

``prefect block register -m prefect_blocks`` registers the block type; the ``prefect.collections``
entry point makes Prefect import this package itself. ``python -m prefect_blocks watch`` runs the
resumer that suspended runs need. The public API is exactly ``__all__``.
"""

from __future__ import annotations

from gate_core import GateCancelled, GateExpired, GateNotApproved, GateRejected  # the core's family
from prefect_blocks._block import ApprovalGate
from prefect_blocks._decision import DecisionRecord, GateDecision
from prefect_blocks._watch import watch_and_resume

__all__ = [
    "ApprovalGate",
    "DecisionRecord",
    "GateCancelled",
    "GateDecision",
    "GateExpired",
    "GateNotApproved",
    "GateRejected",
    "watch_and_resume",
]
