"""Lineage for gated steps: the operation a gated action implies, and the recorder the core's
adapter session (``gate_core.session``) ties to each gate.

    operation_for(action, operation)   ``operation`` if given, else the action when it names an
                                       operation (read/write/export/delete), else a read
    step_accesses(...)                 a step's datasets by role, each with its operation
    GateLineage(sink)                  a ``gate_core.session.LineageRecorder``: access events for
                                       the step's run, on behalf of its requester, under its gate
    approval_facet(gate)               the ``gatehouse_approval`` OpenLineage run facet
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from gate_core import DatasetRef, Gate, RunContext
from lineage._models import Operation
from lineage._recorder import LineageSink, context
from lineage._track import record_access

if TYPE_CHECKING:
    from openlineage.client.facet_v2 import RunFacet

_OPERATIONS = frozenset(op.value for op in Operation)


def approval_facet(gate: Gate) -> RunFacet:
    """The ``gatehouse_approval`` OpenLineage run facet for ``gate`` (for an orchestrator's own
    OpenLineage integration). Imports openlineage-python only when called."""
    from lineage._openlineage import approval_facet as facet

    return facet(gate)


def operation_for(action: str, operation: str | None = None) -> Operation:
    """The access a gated action makes on the datasets it names."""
    if operation:
        return Operation(operation.strip().lower())
    named = action.strip().lower()
    return Operation(named) if named in _OPERATIONS else Operation.READ


def step_accesses(
    action: str,
    *,
    declared: Sequence[DatasetRef] = (),
    inputs: Sequence[DatasetRef] = (),
    outputs: Sequence[DatasetRef] = (),
    operation: str | None = None,
) -> list[tuple[DatasetRef, str]]:
    """Each dataset with what the step does to it: the datasets named at the gate take the
    action's operation; inputs are read; outputs are exported or deleted when that is the action,
    else written."""
    declared_op = operation_for(action, operation).value
    written = operation_for(action).value if action.strip().lower() in ("export", "delete") else "write"
    return [
        *((ref, declared_op) for ref in declared),
        *((ref, Operation.READ.value) for ref in inputs),
        *((ref, written) for ref in outputs),
    ]


class GateLineage:
    """Records a gated step's accesses to ``sink`` (the gate service, with the pipeline's token)."""

    def __init__(self, sink: LineageSink) -> None:
        self.sink = sink

    @contextmanager
    def scope(self, *, run: RunContext, actor: str, gate_id: str | None) -> Iterator[None]:
        """Inside: ``lineage.record_access``/``track_dataframe`` calls carry this run, the person
        the step runs for and the gate, and go to the sink."""
        with context(run=run, actor=actor, gate_id=gate_id, sinks=[self.sink]):
            yield

    def record(
        self, accesses: Sequence[tuple[DatasetRef, str]], *, run: RunContext, actor: str, gate_id: str
    ) -> int:
        with self.scope(run=run, actor=actor, gate_id=gate_id):
            for ref, operation in accesses:
                record_access(ref, operation)
        return len(accesses)
