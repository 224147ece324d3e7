"""Lineage for Dagster steps: access events through ``lineage``, metadata in Dagster's standard keys.

An access event recorded here carries the Dagster run (orchestrator ``dagster``, job, run id, step,
try), the person the run acts for and the gate it ran under, and goes to the gate service with the
pipeline's own token (``lineage.HttpSink``): pipelines never hold database credentials.

``table_metadata`` turns an event into the metadata the Dagster UI shows for a table:
``dagster/column_schema`` (each column's type and classification tags) and ``dagster/row_count``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import dagster as dg

import lineage
from gate_core import DatasetRef, RunContext

if TYPE_CHECKING:
    import pandas as pd

COLUMN_SCHEMA = "dagster/column_schema"
ROW_COUNT = "dagster/row_count"
DATASET = "gatehouse/dataset"
DATASET_TAGS = "gatehouse/dataset_tags"
ACCESS_EVENT = "gatehouse/access_event"


def table_metadata(event: lineage.AccessEvent) -> dict[str, dg.MetadataValue]:
    """Dagster metadata for what an access event saw: schema with column tags, rows, dataset."""
    entries: dict[str, dg.MetadataValue] = {
        DATASET: dg.MetadataValue.text(event.dataset.qualified_name),
        ACCESS_EVENT: dg.MetadataValue.text(event.id),
    }
    if event.columns:
        schema = dg.TableSchema(
            columns=[
                dg.TableColumn(name=c.name, type=c.type or "unknown", tags=dict.fromkeys(sorted(c.tags), ""))
                for c in event.columns
            ]
        )
        entries[COLUMN_SCHEMA] = dg.MetadataValue.table_schema(schema)
    if event.row_count is not None:
        entries[ROW_COUNT] = dg.MetadataValue.int(event.row_count)
    if event.tags:
        entries[DATASET_TAGS] = dg.MetadataValue.json(sorted(event.tags))
    return entries


def classified(datasets: Iterable[str | DatasetRef]) -> tuple[DatasetRef, ...]:
    """Parse ``NAMESPACE/NAME[#tag,…]`` and add the tags the lineage catalog declares for each
    dataset, so a policy rule on ``pii`` matches a dataset the catalog says is personal data."""
    return tuple(lineage.classify(d).dataset for d in datasets)


class StepLineage:
    """Records access events for one step, as ``actor`` in ``run`` under ``gate_id``, to ``sink``."""

    def __init__(self, sink: lineage.LineageSink, run: RunContext, actor: str, gate_id: str | None) -> None:
        self.sink = sink
        self.run = run
        self.actor = actor
        self.gate_id = gate_id

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Around your own ``lineage.track_dataframe``/``record_access`` calls: they carry this
        step's run, actor and gate and go to the sink."""
        with lineage.context(run=self.run, actor=self.actor, gate_id=self.gate_id, sinks=[self.sink]):
            yield

    def datasets(
        self, datasets: Iterable[DatasetRef], operation: lineage.Operation
    ) -> list[lineage.AccessEvent]:
        with self.scope():
            return [lineage.record_access(d, operation) for d in datasets]

    def dataframe(
        self,
        df: pd.DataFrame,
        *,
        dataset: str | DatasetRef,
        operation: str | lineage.Operation,
        fingerprint: bool = False,
        tags: Iterable[str] = (),
    ) -> lineage.AccessEvent:
        with self.scope():
            return lineage.track_dataframe(
                df, dataset=dataset, operation=operation, fingerprint=fingerprint, tags=tags
            )
