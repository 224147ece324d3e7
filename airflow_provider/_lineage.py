"""Gatehouse lineage for gated tasks: catalog tags before the gate, access events after it,
and the approval run facet for Airflow's OpenLineage provider.

    classify(ref)      the lineage catalog's tags (declared + detected) added to a dataset, so
                       the policy sees ``pii`` even when the DAG did not write ``#pii``
    record(...)        one access event per dataset, stamped with the run, the requester and
                       the gate, sent to the gate service with the pipeline's token
    operator_lineage   OperatorLineage(inputs, outputs, run_facets={"gatehouse_approval": …})

Operations: inlets are ``read``; outlets are ``export``/``delete`` for those actions, else
``write``; datasets named in ``datasets=`` take the action when it is an operation
(read/write/export/delete), else ``read``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_provider._context import TaskDatasets
from airflow_provider.hooks.gatehouse import Credentials
from gate_core import DatasetRef, Gate, GateRequest, RunContext
from gate_core.session import GateSession

if TYPE_CHECKING:
    from lineage import HttpSink

APPROVAL_FACET = "gatehouse_approval"


def classify(ref: DatasetRef) -> DatasetRef:
    """``ref`` with every tag the lineage catalog gives it (a broken catalog raises: fail closed)."""
    import lineage

    return lineage.classify(ref).dataset


def accesses(datasets: TaskDatasets, action: str) -> list[tuple[DatasetRef, str]]:
    """Each dataset with the operation the gated step performs on it."""
    import lineage

    return lineage.step_accesses(
        action, declared=datasets.declared, inputs=datasets.inputs, outputs=datasets.outputs
    )


_sinks: dict[Credentials, HttpSink] = {}
_sinks_lock = threading.Lock()


def _sink(credentials: Credentials) -> HttpSink:
    """One lineage sink (and connection pool) per service and token in this process."""
    import lineage

    with _sinks_lock:
        sink = _sinks.get(credentials)
        if sink is None:
            sink = _sinks[credentials] = lineage.HttpSink(credentials.base_url, credentials.token)
        return sink


def prepare(credentials: Credentials) -> None:
    """Import ``lineage`` and open its sink now (about 80 ms in a fresh task process), so a task
    waiting in its worker pays for it while people decide rather than after the decision."""
    _sink(credentials)


@contextmanager
def scope(*, run: RunContext, actor: str, gate_id: str, credentials: Credentials) -> Iterator[None]:
    """Inside: ``lineage.record_access``/``track_dataframe`` calls carry this run, the requester
    and the gate, and go to the gate service with the pipeline's token."""
    import lineage

    with lineage.GateLineage(_sink(credentials)).scope(run=run, actor=actor, gate_id=gate_id):
        yield


def record(
    datasets: TaskDatasets, action: str, request: GateRequest, gate: Gate, *, credentials: Credentials
) -> int:
    """Record the step's dataset accesses under ``gate``; returns how many. Raises when the
    service cannot take them, so an approved step never runs unrecorded."""
    import lineage

    recorder = lineage.GateLineage(_sink(credentials))
    return GateSession.record_lineage(recorder, request, gate.id, accesses(datasets, action))


def operator_lineage(datasets: TaskDatasets, action: str, gate: Gate | None) -> Any:
    """What Airflow's OpenLineage provider reports for a gated task (needs that provider)."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    inputs: list[InputDataset] = []
    outputs: list[OutputDataset] = []
    for ref, operation in accesses(datasets, action):
        if operation == "read":
            inputs.append(InputDataset(namespace=ref.namespace, name=ref.name))
        else:
            outputs.append(OutputDataset(namespace=ref.namespace, name=ref.name))
    from lineage import approval_facet

    run_facets = {APPROVAL_FACET: approval_facet(gate)} if gate is not None else {}
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)
