"""Access events ⇄ table rows. Columns are stored as JSON text of names, types and tags only —
there is no field a value could travel in."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

from gate_core import DatasetRef, RunContext
from lineage._models import AccessEvent, ColumnInfo, Operation
from lineage._schema import events

EVENT_COLUMNS = tuple(c.name for c in events.columns)
TAG_COLUMNS = ("event_id", "tag", "operation", "at")
# PostgreSQL types for binary COPY, column for column (varchar shares text's binary format).
EVENT_PG_TYPES = tuple(
    {"at": "timestamptz", "row_count": "int8", "bytes": "int8", "try_number": "int4"}.get(c, "text")
    for c in EVENT_COLUMNS
)
TAG_PG_TYPES = ("text", "text", "text", "timestamptz")
Row = tuple[Any, ...]


# Remembered per value: a batch repeats a handful of schemas and tag sets, and hashing frozen
# values costs far less than encoding them again; bounded, so a stream of ever-new ones never grows it.
@functools.lru_cache(maxsize=4096)
def columns_json(columns: tuple[ColumnInfo, ...]) -> str:
    """The columns as stored."""
    return json.dumps([{"name": c.name, "type": c.type, "tags": sorted(c.tags)} for c in columns])


@functools.lru_cache(maxsize=4096)
def tags_json(tags: frozenset[str]) -> str:
    """A dataset's tags as stored."""
    return json.dumps(sorted(tags)) if tags else "[]"


def _stored_json(value: Any, encode: Callable[[Any], str], memo: dict[int, str] | None) -> str:
    if memo is None:
        return encode(value)
    text = memo.get(id(value))
    if text is None:
        text = memo[id(value)] = encode(value)
    return text


def event_values(e: AccessEvent, memo: dict[int, str] | None = None) -> tuple[Any, ...]:
    """One events row, in ``EVENT_COLUMNS`` order (COPY takes tuples; SQLite gets dicts).
    ``memo``: the stored JSON by ``id()`` of columns tuples and tag sets that stay alive while it
    is used (``rows_of_events``)."""
    run, ds = e.run, e.dataset
    return (
        e.id,
        e.at,
        ds.qualified_name,
        ds.namespace,
        ds.name,
        _stored_json(ds.tags, tags_json, memo),
        e.operation.value,
        _stored_json(e.columns, columns_json, memo),
        e.row_count,
        e.bytes,
        e.fingerprint,
        run.orchestrator,
        run.pipeline,
        run.run_id,
        run.task_id,
        run.try_number,
        run.url,
        e.actor,
        e.submitted_by,
        e.gate_id,
    )


def rows_of_events(batch: Sequence[AccessEvent]) -> list[Row]:
    """``event_values`` of each event of ``batch``. The stored JSON of its columns and tags is
    looked up once per distinct object (accesses the receiver copies from one template share
    theirs): the bounded caches behind it hash and compare pydantic models, which cost more than
    the rest of a row. The batch keeps every such object alive, so no ``id()`` is reused."""
    memo: dict[int, str] = {}
    return [event_values(e, memo) for e in batch]


def tag_values(e: AccessEvent) -> list[tuple[Any, ...]]:
    op = e.operation.value
    return [(e.id, tag, op, e.at) for tag in e.tags]


def event_from_row(row: Any) -> AccessEvent:
    return AccessEvent(
        id=row.id,
        at=row.at,
        dataset=DatasetRef(
            namespace=row.namespace, name=row.name, tags=frozenset(json.loads(row.dataset_tags))
        ),
        operation=Operation(row.operation),
        columns=tuple(ColumnInfo(**c) for c in json.loads(row.columns)),
        row_count=row.row_count,
        bytes=row.bytes,
        fingerprint=row.fingerprint,
        run=RunContext(
            orchestrator=row.orchestrator,
            pipeline=row.pipeline,
            run_id=row.run_id,
            task_id=row.task_id,
            try_number=row.try_number,
            url=row.run_url,
        ),
        actor=row.actor,
        gate_id=row.gate_id,
        submitted_by=row.submitted_by,
    )
