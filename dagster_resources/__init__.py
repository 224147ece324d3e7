"""Gatehouse for Dagster: human approval gates in ops and assets, and a sensor for long waits.

    ApprovalGateResource   ConfigurableResource: require_approval() blocks a step until people
                           decide (long-poll); open_gate() opens a gate and returns at once;
                           track_dataframe() records lineage and returns Dagster table metadata
    approval_sensor        launches a gated job once per approved gate (nothing waits in a run)
    ApprovalDecision       the approval a step ran under, as returned and shown as step metadata

Dagster ``Failure`` is raised on reject, expiry or cancellation, with the reason and the gate's
metadata. The public API is exactly ``__all__``; ``dagster_resources._*`` is private.
"""

from __future__ import annotations

from dagster_resources._context import GATE_ID_TAG, REQUESTER_TAG, RUN_KEY_TAG
from dagster_resources._decision import ApprovalDecision
from dagster_resources._lineage import table_metadata
from dagster_resources._resource import ApprovalGateResource
from dagster_resources._sensor import SensorCursor, approval_sensor

__all__ = [
    "GATE_ID_TAG",
    "REQUESTER_TAG",
    "RUN_KEY_TAG",
    "ApprovalDecision",
    "ApprovalGateResource",
    "SensorCursor",
    "approval_sensor",
    "table_metadata",
]
