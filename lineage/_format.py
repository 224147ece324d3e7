"""One place that turns query results into text: a table for people (rich), JSON for programs
(exactly what the REST API answers), CSV for spreadsheets. Lists inside a row join with ``;``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any, Literal

from lineage._queries import AccessRows, LineageGraph, Violations

Format = Literal["table", "json", "csv"]
FORMATS: tuple[Format, ...] = ("table", "json", "csv")

_ROW_FIELDS = (
    "at", "dataset", "operation", "actor", "orchestrator", "pipeline", "run_id", "task_id", "try_number",
    "gate_id", "approval", "decided_by", "row_count", "bytes", "tags", "fingerprint", "event_id",
)  # fmt: skip
_EDGE_FIELDS = ("depth", "upstream", "downstream", "first_seen_at", "last_seen_at")


_VIOLATION_FIELDS = (
    "at", "gate_id", "kind", "dataset", "operation", "tags", "orchestrator", "pipeline", "run_id",
    "task_id", "accessed_at", "detail", "id",
)  # fmt: skip


def as_json(result: AccessRows | LineageGraph | Violations) -> str:
    return json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False)


def _csv(fields: Sequence[str], records: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields)
    for record in records:
        writer.writerow(
            ";".join(value) if isinstance(value := record[f], list) else "" if value is None else value
            for f in fields
        )
    return out.getvalue()


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], footer: str) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=None, pad_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*row)
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None, force_terminal=False, soft_wrap=False)
    console.print(table)
    if footer:
        console.print(footer)
    return out.getvalue()


def _run_label(r: dict[str, Any]) -> str:
    parts = [p for p in (r["pipeline"], r["run_id"], r["task_id"]) if p]
    attempt = f" try {r['try_number']}" if r["try_number"] != 1 else ""
    return f"{r['orchestrator']}:{'/'.join(parts)}{attempt}"


def _approval(r: dict[str, Any]) -> str:
    if not r["gate_id"]:
        return "—"
    status = r["approval"] or "unknown gate"
    by = f" by {', '.join(r['decided_by'])}" if r["decided_by"] else ""
    return f"{r['gate_id']} {status}{by}"


def render_rows(result: AccessRows, fmt: Format) -> str:
    records = result.model_dump(mode="json")["rows"]
    if fmt == "json":
        return as_json(result) + "\n"
    if fmt == "csv":
        return _csv(_ROW_FIELDS, records)
    rows = [
        (
            r["at"][:19].replace("T", " "),
            r["operation"],
            r["dataset"],
            r["actor"],
            _run_label(r),
            _approval(r),
            "" if r["row_count"] is None else str(r["row_count"]),
            ",".join(r["tags"]),
        )
        for r in records
    ]
    footer = f"{len(rows)} access(es)" + (
        " — more matched; narrow with --since or raise --limit" if result.truncated else ""
    )
    return _table(("at (UTC)", "op", "dataset", "actor", "run", "approval", "rows", "tags"), rows, footer)


def render_violations(result: Violations, fmt: Format) -> str:
    records = result.model_dump(mode="json")["rows"]
    if fmt == "json":
        return as_json(result) + "\n"
    if fmt == "csv":
        return _csv(_VIOLATION_FIELDS, records)
    rows = [
        (
            r["at"][:19].replace("T", " "),
            r["gate_id"],
            r["kind"],
            f"{r['operation']} {r['dataset']}",
            ",".join(r["tags"]),
            _run_label({**r, "try_number": 1}),
            r["detail"],
        )
        for r in records
    ]
    footer = f"{len(rows)} out-of-scope finding(s)" + (
        " — more matched; narrow with --since or raise --limit" if result.truncated else ""
    )
    return _table(("found (UTC)", "gate", "kind", "access", "tags", "run", "why"), rows, footer)


def render_graph(graph: LineageGraph, fmt: Format) -> str:
    if fmt == "json":
        return as_json(graph) + "\n"
    records = graph.model_dump(mode="json")["edges"]
    if fmt == "csv":
        return _csv(_EDGE_FIELDS, records)
    rows = [
        (str(e["depth"]), e["upstream"], "→", e["downstream"], e["last_seen_at"][:19].replace("T", " "))
        for e in records
    ]
    upstream = sum(1 for n in graph.nodes if n.direction == "upstream")
    downstream = sum(1 for n in graph.nodes if n.direction == "downstream")
    footer = f"{graph.root}: {upstream} upstream, {downstream} downstream within {graph.depth} hop(s)" + (
        " — cut at the edge limit" if graph.truncated else ""
    )
    return _table(("hop", "upstream", "", "downstream", "last seen (UTC)"), rows, footer)
