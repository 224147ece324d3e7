"""The governance queries, answered from indexes (and the gate store's tables for approvals).

    accessed(dataset, since)   events on (dataset, at)                   newest first
    run(run_id)                events on (run_id, orchestrator)          in order
    gate(gate_id)              events on (gate_id)                       in order
    exports(tag, since)        tag rows on (tag, operation, at) → events newest first
    graph(dataset, dir, depth) a recursive CTE over the distinct edges (both backends)

Each access row carries the approval it ran under — the gate's status and who decided — joined
from ``gh_gates`` when the gate store shares the database. Results are capped (``limit``) and say
when they were cut (``truncated``), so no query can pull a whole table into memory.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Select, column, inspect, select, table, text

from gate_core import DatasetRef
from gate_core.sql import UtcDateTime
from lineage._errors import LineageInputError
from lineage._models import Operation, parse_dataset
from lineage._schema import event_tags, events

Direction = Literal["upstream", "downstream", "both"]
MAX_DEPTH = 10
MAX_LIMIT = 10_000
MAX_EDGES = 5_000
_gates = table("gh_gates", column("id"), column("status"), column("decided_by"))


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class AccessRow(_Row):
    """One access as the governance queries report it: metadata and the approval, no contents."""

    at: datetime
    dataset: str
    operation: Operation
    actor: str
    orchestrator: str
    pipeline: str
    run_id: str
    task_id: str
    try_number: int
    gate_id: str | None
    approval: str | None  # the gate's status (APPROVED, CONSUMED…), when the gate store knows it
    decided_by: list[str]
    row_count: int | None
    bytes: int | None
    tags: list[str]
    fingerprint: str | None
    event_id: str


class AccessRows(_Row):
    rows: list[AccessRow]
    truncated: bool  # more rows matched than ``limit``


class GraphNode(_Row):
    dataset: str
    depth: int
    direction: Literal["root", "upstream", "downstream"]


class GraphEdge(_Row):
    upstream: str
    downstream: str
    depth: int  # hops from the root to the far end of this edge
    first_seen_at: datetime
    last_seen_at: datetime


class LineageGraph(_Row):
    root: str
    direction: Direction
    depth: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    truncated: bool


def qualified(dataset: str | DatasetRef) -> str:
    """The qualified name to look up; a ``#tag`` suffix is allowed and ignored."""
    return parse_dataset(dataset).qualified_name


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise LineageInputError(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _has_gates(conn: Connection) -> bool:
    """Whether the gate store shares this database; remembered per pooled connection once true."""
    if not conn.info.get("gh_gates"):
        conn.info["gh_gates"] = inspect(conn).has_table("gh_gates")
    return bool(conn.info["gh_gates"])


def _select_rows(conn: Connection) -> Select[Any]:
    if _has_gates(conn):
        return select(
            events, _gates.c.status.label("approval"), _gates.c.decided_by.label("g_decided_by")
        ).outerjoin(_gates, _gates.c.id == events.c.gate_id)
    return select(events)


def _access_row(row: Any) -> AccessRow:
    tags = set(json.loads(row.dataset_tags))
    for col in json.loads(row.columns):
        tags.update(col.get("tags", ()))
    mapping = row._mapping
    approval = mapping.get("approval")
    decided_by = mapping.get("g_decided_by")
    return AccessRow(
        at=row.at,
        dataset=row.dataset,
        operation=Operation(row.operation),
        actor=row.actor,
        orchestrator=row.orchestrator,
        pipeline=row.pipeline,
        run_id=row.run_id,
        task_id=row.task_id,
        try_number=row.try_number,
        gate_id=row.gate_id,
        approval=approval,
        decided_by=list(json.loads(decided_by)) if decided_by else [],
        row_count=row.row_count,
        bytes=row.bytes,
        tags=sorted(tags),
        fingerprint=row.fingerprint,
        event_id=row.id,
    )


def _rows(conn: Connection, stmt: Select[Any], limit: int) -> AccessRows:
    found = conn.execute(stmt.limit(limit + 1)).all()
    return AccessRows(rows=[_access_row(r) for r in found[:limit]], truncated=len(found) > limit)


def accessed(
    conn: Connection, dataset: str | DatasetRef, *, since: datetime | None, limit: int
) -> AccessRows:
    stmt = _select_rows(conn).where(events.c.dataset == qualified(dataset))
    if since is not None:
        stmt = stmt.where(events.c.at >= since)
    return _rows(conn, stmt.order_by(events.c.at.desc(), events.c.id.desc()), _check_limit(limit))


def run(conn: Connection, run_id: str, *, orchestrator: str | None, limit: int) -> AccessRows:
    stmt = _select_rows(conn).where(events.c.run_id == run_id)
    if orchestrator:
        stmt = stmt.where(events.c.orchestrator == orchestrator)
    return _rows(conn, stmt.order_by(events.c.at, events.c.id), _check_limit(limit))


def gate(conn: Connection, gate_id: str, *, limit: int) -> AccessRows:
    stmt = _select_rows(conn).where(events.c.gate_id == gate_id)
    return _rows(conn, stmt.order_by(events.c.at, events.c.id), _check_limit(limit))


def exports(conn: Connection, tag: str, *, since: datetime | None, limit: int) -> AccessRows:
    tag = tag.strip().lower()
    if not tag or len(tag) > 100:
        raise LineageInputError("a tag is 1 to 100 characters")
    # Driven by the tag index (tag, operation, at), newest first: a LIMIT stops the scan early.
    stmt = (
        _select_rows(conn)
        .join(event_tags, event_tags.c.event_id == events.c.id)
        .where(event_tags.c.tag == tag, event_tags.c.operation == Operation.EXPORT.value)
    )
    if since is not None:
        stmt = stmt.where(event_tags.c.at >= since)
    return _rows(
        conn, stmt.order_by(event_tags.c.at.desc(), event_tags.c.event_id.desc()), _check_limit(limit)
    )


# One statement per direction; ``near``/``far`` swap for upstream. UNION (not ALL) plus the depth
# bound ends the recursion on cycles.
_WALK = """
WITH RECURSIVE walk(near, far, depth, first_seen_at, last_seen_at) AS (
    SELECT {near}, {far}, 1, first_seen_at, last_seen_at FROM gh_lineage_edges WHERE {near} = :root
    UNION
    SELECT e.{near}, e.{far}, w.depth + 1, e.first_seen_at, e.last_seen_at
    FROM walk w JOIN gh_lineage_edges e ON e.{near} = w.far
    WHERE w.depth < :depth
)
SELECT near, far, MIN(depth) AS depth, MIN(first_seen_at) AS first_seen_at, MAX(last_seen_at) AS last_seen_at
FROM walk GROUP BY near, far ORDER BY MIN(depth), near, far LIMIT :limit
"""
_WALKS = {
    "downstream": text(_WALK.format(near="upstream", far="downstream")),
    "upstream": text(_WALK.format(near="downstream", far="upstream")),
}


def graph(conn: Connection, dataset: str | DatasetRef, *, direction: Direction, depth: int) -> LineageGraph:
    root = qualified(dataset)
    if direction not in ("upstream", "downstream", "both"):
        raise LineageInputError(f"direction {direction!r} is not upstream, downstream or both")
    if not 1 <= depth <= MAX_DEPTH:
        raise LineageInputError(f"depth must be between 1 and {MAX_DEPTH}")
    nodes: dict[str, GraphNode] = {root: GraphNode(dataset=root, depth=0, direction="root")}
    found: list[GraphEdge] = []
    truncated = False
    for way in ("upstream", "downstream"):
        if direction not in (way, "both"):
            continue
        stmt = _WALKS[way].columns(first_seen_at=UtcDateTime, last_seen_at=UtcDateTime)
        rows = conn.execute(stmt, {"root": root, "depth": depth, "limit": MAX_EDGES + 1}).all()
        truncated = truncated or len(rows) > MAX_EDGES
        for row in rows[:MAX_EDGES]:
            up, down = (row.near, row.far) if way == "downstream" else (row.far, row.near)
            found.append(
                GraphEdge(
                    upstream=up,
                    downstream=down,
                    depth=row.depth,
                    first_seen_at=row.first_seen_at,
                    last_seen_at=row.last_seen_at,
                )
            )
            if row.far not in nodes or nodes[row.far].depth > row.depth:
                nodes[row.far] = GraphNode(dataset=row.far, depth=row.depth, direction=way)
    return LineageGraph(
        root=root,
        direction=direction,
        depth=depth,
        nodes=sorted(nodes.values(), key=lambda n: (n.depth, n.direction, n.dataset)),
        edges=found,
        truncated=truncated,
    )


class ViolationRow(_Row):
    """One out-of-scope finding (``lineage._scope``): what a gated run touched beyond its approval."""

    id: str
    at: datetime
    gate_id: str
    kind: str
    dataset: str
    operation: str
    tags: list[str]
    orchestrator: str
    pipeline: str
    run_id: str
    task_id: str
    accessed_at: datetime
    detail: str


class Violations(_Row):
    rows: list[ViolationRow]
    truncated: bool


def violations(conn: Connection, *, since: datetime | None, gate_id: str | None, limit: int) -> Violations:
    from lineage._schema import violations as table_

    stmt = select(table_).order_by(table_.c.at.desc(), table_.c.id).limit(_check_limit(limit) + 1)
    if since is not None:
        stmt = stmt.where(table_.c.at >= since)
    if gate_id is not None:
        stmt = stmt.where(table_.c.gate_id == gate_id)
    found = [ViolationRow(**{**row._asdict(), "tags": json.loads(row.tags)}) for row in conn.execute(stmt)]
    return Violations(rows=found[:limit], truncated=len(found) > limit)
