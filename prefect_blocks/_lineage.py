"""Lineage for a gated Prefect step: what it accessed, tied to the flow run and its gate.

Inside ``lineage_scope`` every ``lineage.track_dataframe`` / ``lineage.record_access`` call —
in the flow, or in a task it calls or submits (Prefect runs those in a copy of the caller's
context) — is recorded for the flow run, on behalf of the requester, under the gate's approval,
and sent to the gate service with the block's own token (pipelines never hold database
credentials). The datasets named at the gate are recorded as accessed when the gate opens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import lineage
from gate_core import DatasetRef, RunContext

_OPERATIONS = frozenset(op.value for op in lineage.Operation)


def operation_for(action: str, operation: str | None) -> str:
    """The access a gated action makes on its datasets: ``operation`` if given, else the action
    itself when it names one (read, write, export, delete), else a read."""
    if operation:
        return operation
    return action if action in _OPERATIONS else lineage.Operation.READ.value


def service_sink(url: str, token: str) -> lineage.HttpSink:
    """Where a gated step's lineage goes: the gate service, with the block's token."""
    return lineage.HttpSink(url, token)


@contextmanager
def lineage_scope(
    *, sink: lineage.LineageSink, run: RunContext, actor: str, gate_id: str | None
) -> Iterator[None]:
    """Record lineage inside the block for ``run``, as ``actor``, under ``gate_id``, to ``sink``."""
    with lineage.context(run=run, actor=actor, gate_id=gate_id, sinks=[sink]):
        yield


def record_declared(datasets: Sequence[DatasetRef], operation: str) -> None:
    """The datasets named at the gate, as accessed by the step it let through (in the scope)."""
    for dataset in datasets:
        lineage.record_access(dataset, operation)
