"""Gatehouse lineage: data-usage metadata without contents.

Record every dataset access at the step that makes it — dataset (OpenLineage naming), operation,
schema, rows, bytes, classification tags, an optional content hash, the run, the actor and the
gate — and answer governance's questions from the gate store's own database::

    import lineage
    lineage.track_dataframe(df, dataset="warehouse/customers", operation="read")
    lineage.record_access("s3://exports/customers.csv", "export", row_count=1200)

    store = lineage.LineageStore.open("sqlite:///gatehouse.db")
    store.accessed("warehouse/customers", since=...)      # who, which run, which approval
    store.graph("warehouse/customers", direction="downstream", depth=3)

The public API is exactly ``__all__``; ``lineage._*`` is private.
"""

from __future__ import annotations

from lineage._catalog import Catalog, Classification
from lineage._errors import (
    BadTimeWindow,
    CatalogError,
    EmitFailed,
    LineageError,
    LineageInputError,
    MalformedDataset,
    NoDestination,
    UnknownOperation,
)
from lineage._gated import GateLineage, approval_facet, operation_for, step_accesses
from lineage._http import HttpSink
from lineage._models import AccessEvent, ColumnInfo, Operation
from lineage._queries import AccessRow, AccessRows, GraphEdge, GraphNode, LineageGraph
from lineage._recorder import LineageSink, configure, context, reset
from lineage._store import LineageStore
from lineage._track import classify, record_access, track_dataframe

__all__ = [
    "AccessEvent",
    "AccessRow",
    "AccessRows",
    "BadTimeWindow",
    "Catalog",
    "CatalogError",
    "Classification",
    "ColumnInfo",
    "EmitFailed",
    "GateLineage",
    "GraphEdge",
    "GraphNode",
    "HttpSink",
    "LineageError",
    "LineageGraph",
    "LineageInputError",
    "LineageSink",
    "LineageStore",
    "MalformedDataset",
    "NoDestination",
    "Operation",
    "UnknownOperation",
    "approval_facet",
    "classify",
    "configure",
    "context",
    "operation_for",
    "record_access",
    "reset",
    "step_accesses",
    "track_dataframe",
]
