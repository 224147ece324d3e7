"""GateOperator: put a human approval gate in front of the next task.

    export_gate = GateOperator(
        task_id="approve_export",
        action="export",
        target="s3://exports/customers.csv",
        datasets=["warehouse/customers#pii"],
        reason="quarterly churn report for {{ ds }}",
    )
    export_gate >> export_customers

The task opens a gate (requester = the run's triggering user or the DAG owner; datasets from
``datasets=`` and the task's inlets/outlets), then defers: it holds no worker slot while people
decide in Slack, Teams or the console. Approved → it succeeds and returns the decision (XCom
``return_value``: gate_id, status, rule, approvers, comments, decided_at, break_glass, url; the
gate id alone is pushed early under ``gate_id``). Rejected → it fails with the reason (or skips,
``on_reject="skip"``). Expired, cancelled or timed out → it fails. A retry finds the same gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider.operators._base import BaseGateOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from gate_core import Gate


class GateOperator(BaseGateOperator):
    """Succeed once a Gatehouse gate for this task is approved. Arguments: ``BaseGateOperator``."""

    def execute(self, context: Context) -> dict[str, Any]:
        return self._passed(self.open_gate(context))

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Resumed by the trigger with its GateEvent payload."""
        return self._passed(self.resume_gate(context, event))

    def _passed(self, gate: Gate) -> dict[str, Any]:
        self.record_gate_lineage(gate)
        return self.decision(gate)
