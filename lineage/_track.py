"""``record_access`` and ``track_dataframe``: the two calls adapters and users' code make.

Both build one AccessEvent from metadata only, classify it (catalog + name detectors), stamp it
with the scope in force (run, actor, gate — see ``lineage._recorder``) and hand it to every sink.
Neither ever reads, logs or stores a cell value; ``track_dataframe`` reads ``df.dtypes``,
``len(df)`` and ``df.memory_usage(deep=False)`` only, unless a fingerprint is asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from gate_core import DatasetRef, RunContext
from lineage import _pandas, _recorder
from lineage._catalog import Catalog, Classification
from lineage._errors import LineageInputError
from lineage._models import AccessEvent, ColumnInfo, Operation, parse_dataset, parse_operation

if TYPE_CHECKING:
    import pandas as pd

ColumnSpec = ColumnInfo | str | tuple[str, str] | Mapping[str, Any]


def _column(spec: ColumnSpec) -> ColumnInfo:
    if isinstance(spec, ColumnInfo):
        return spec
    if isinstance(spec, str):
        return ColumnInfo(name=spec)
    if isinstance(spec, tuple):
        name, type_ = spec
        return ColumnInfo(name=name, type=type_)
    return ColumnInfo.model_validate(dict(spec))


def _invalid(exc: ValidationError, *prefix: str | int) -> LineageInputError:
    """The first problem, by field path; pydantic's own str() would echo the offending input."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in (*prefix, *first["loc"])) or "event"
    return LineageInputError(f"invalid access event {where}: {first['msg']}")


def _columns(specs: Iterable[ColumnSpec]) -> tuple[ColumnInfo, ...]:
    columns = []
    for index, spec in enumerate(specs):
        try:
            columns.append(_column(spec))
        except ValidationError as exc:
            raise _invalid(exc, "columns", index) from None
    return tuple(columns)


def record_access(
    dataset: str | DatasetRef,
    operation: str | Operation,
    *,
    columns: Iterable[ColumnSpec] = (),
    row_count: int | None = None,
    bytes: int | None = None,
    fingerprint: str | None = None,
    tags: Iterable[str] = (),
    run: RunContext | None = None,
    actor: str | None = None,
    gate_id: str | None = None,
    at: datetime | None = None,
    catalog: Catalog | None = None,
) -> AccessEvent:
    """Record that the current step accessed ``dataset`` (``"NAMESPACE/NAME"``); returns the event.

    ``run``/``actor``/``gate_id`` override the scope in force for this one event. Raises
    MalformedDataset, UnknownOperation or LineageInputError for bad input, NoDestination when
    nothing is configured, and the sink's error (e.g. StoreUnavailable) when recording fails —
    callers that must not run unrecorded can fail closed on it."""
    ref = parse_dataset(dataset)
    op = parse_operation(operation)
    with _recorder.context(run=run, actor=actor, gate_id=gate_id):
        current = _recorder.resolved()
    cols = _columns(columns)
    try:
        if tags:
            # DatasetRef validates (normalises) its tags; AccessEvent below bounds their length.
            ref = DatasetRef(namespace=ref.namespace, name=ref.name, tags=ref.tags | frozenset(tags))
        classified = (catalog or _recorder.catalog()).classify(ref, cols)
        fields: dict[str, Any] = {
            "dataset": classified.dataset,
            "operation": op,
            "columns": classified.columns,
            "row_count": row_count,
            "bytes": bytes,
            "fingerprint": fingerprint,
            "run": current.run,
            "actor": current.actor,
            "gate_id": current.gate_id,
        }
        if at is not None:
            fields["at"] = at
        event = AccessEvent.model_validate(fields)
    except ValidationError as exc:
        raise _invalid(exc) from None
    _recorder.deliver(event, current.sinks or ())
    return event


def track_dataframe(
    df: pd.DataFrame,
    *,
    dataset: str | DatasetRef,
    operation: str | Operation,
    fingerprint: bool = False,
    tags: Iterable[str] = (),
    run: RunContext | None = None,
    actor: str | None = None,
    gate_id: str | None = None,
    at: datetime | None = None,
    catalog: Catalog | None = None,
) -> AccessEvent:
    """Record a DataFrame's access from its schema, row count and shallow size — O(columns).

    ``fingerprint=True`` adds a content hash (O(cells); see ``lineage._pandas`` for its cost and
    for keying it with GATEHOUSE_LINEAGE_FINGERPRINT_KEY). Cell values never leave this call."""
    ref, op = parse_dataset(dataset), parse_operation(operation)  # fail on bad input before any work
    columns, rows, size = _pandas.describe(df)
    digest = _pandas.fingerprint(df, _recorder.fingerprint_key()) if fingerprint else None
    return record_access(
        ref,
        op,
        columns=columns,
        row_count=rows,
        bytes=size,
        fingerprint=digest,
        tags=tags,
        run=run,
        actor=actor,
        gate_id=gate_id,
        at=at,
        catalog=catalog,
    )


def classify(
    dataset: str | DatasetRef, columns: Iterable[ColumnSpec] = (), *, catalog: Catalog | None = None
) -> Classification:
    """Tags for a dataset and its columns: declared in the catalog, detected from column names,
    and the dataset's tags as the union (what a gate's policy matches on). Uses the configured
    catalog (``$GATEHOUSE_HOME/catalog.yaml`` or GATEHOUSE_LINEAGE_CATALOG) unless one is given."""
    return (catalog or _recorder.catalog()).classify(parse_dataset(dataset), _columns(columns))
