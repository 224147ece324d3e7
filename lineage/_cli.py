"""``gatehouse lineage …``: the governance queries, recording from a shell, and retention.

Plugged into the core's ``gatehouse`` command through the ``gatehouse.cli`` entry point. Same
conventions as the core: exit 0 ok · 1 refused, not found or failed · 2 usage error, and every
failure is one line on stderr. Queries only read the database; ``purge`` acts as the
operating-system account (the kernel's record, or ``--as`` in a sandbox; ``gate_core.cli_identity``) and
is audited in the gate audit log. With a service URL (``--url``, ``$GATEHOUSE_URL`` or a login;
``gate_core.cli_remote``) the queries go through the service's ``/v1/lineage`` routes instead, with
the same output.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar
from urllib.parse import quote

import click

from gate_core import (
    DatasetRef,
    RunContext,
    Settings,
    SqlStore,
    open_gatekeeper,
)
from gate_core.cli_errors import clean_errors, fail
from gate_core.cli_identity import chosen_name, local_caller
from gate_core.cli_remote import remote_client
from lineage._errors import LineageError
from lineage._format import FORMATS, Format, render_graph, render_rows, render_violations
from lineage._models import ColumnInfo, Operation, parse_dataset
from lineage._queries import AccessRows, Direction, LineageGraph
from lineage._store import LineageStore
from lineage._time import parse_duration, parse_since

P = ParamSpec("P")
R = TypeVar("R")


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_since(value)
    except LineageError as exc:
        raise click.BadParameter(str(exc)) from None


def _dataset(_ctx: click.Context, _param: click.Parameter, value: str) -> DatasetRef:
    try:
        return parse_dataset(value)
    except LineageError as exc:
        raise click.BadParameter(str(exc)) from None


def _settings() -> Settings:
    settings = Settings.from_env()
    if not os.environ.get("GATEHOUSE_DATABASE_URL") and not settings.home.exists():
        fail(f"{settings.home} does not exist; run `gatehouse init` (or set GATEHOUSE_DATABASE_URL)")
    return settings


def _store() -> LineageStore:
    settings = _settings()
    return LineageStore.open(settings.database_url, timeout_s=settings.db_timeout_s)


_format = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format."
)
_limit = click.option("--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True)
_since_opt = click.option(
    "--since", callback=_since, metavar="T", help="30d, 12h, 2026-10-01 or an ISO time (UTC unless zoned)."
)


@click.group(name="lineage")
def lineage() -> None:
    """Data-usage lineage: who accessed what, under which approval, and where it went."""


@lineage.command()
@click.argument("dataset", callback=_dataset, metavar="NAMESPACE/NAME")
@_since_opt
@_format
@_limit
@clean_errors
def accessed(dataset: DatasetRef, since: datetime | None, fmt: Format, limit: int) -> None:
    """Who accessed DATASET: by whom, in which run, how, under which approval (newest first)."""
    query = {"dataset": str(dataset), "limit": limit, **_since_param(since)}
    rows = _remote_rows("/v1/lineage/accessed", query)
    rows = rows if rows is not None else _store().accessed(dataset, since=since, limit=limit)
    click.echo(render_rows(rows, fmt), nl=False)


@lineage.command()
@click.argument("run_id")
@click.option("--orchestrator", default=None, help="airflow, prefect, dagster, local… (default: any).")
@_format
@_limit
@clean_errors
def run(run_id: str, orchestrator: str | None, fmt: Format, limit: int) -> None:
    """Everything one run touched, in order."""
    query: dict[str, str | int] = {"limit": limit, **({"orchestrator": orchestrator} if orchestrator else {})}
    rows = _remote_rows(f"/v1/lineage/runs/{quote(run_id, safe='')}", query)
    rows = rows if rows is not None else _store().run(run_id, orchestrator=orchestrator, limit=limit)
    click.echo(render_rows(rows, fmt), nl=False)


@lineage.command()
@click.argument("gate_id")
@_format
@_limit
@clean_errors
def gate(gate_id: str, fmt: Format, limit: int) -> None:
    """Everything done under one gate's approval, in order."""
    rows = _remote_rows(f"/v1/lineage/gates/{quote(gate_id, safe='')}", {"limit": limit})
    click.echo(render_rows(rows if rows is not None else _store().gate(gate_id, limit=limit), fmt), nl=False)


@lineage.command()
@click.option("--tag", required=True, help="Dataset or column tag, e.g. pii.")
@_since_opt
@_format
@_limit
@clean_errors
def exports(tag: str, since: datetime | None, fmt: Format, limit: int) -> None:
    """Exports of datasets tagged TAG (newest first)."""
    rows = _remote_rows("/v1/lineage/exports", {"tag": tag, "limit": limit, **_since_param(since)})
    rows = rows if rows is not None else _store().exports(tag, since=since, limit=limit)
    click.echo(render_rows(rows, fmt), nl=False)


@lineage.command()
@_since_opt
@click.option("--gate", "gate_id", default=None, help="Only findings about this gate.")
@_format
@_limit
@clean_errors
def violations(since: datetime | None, gate_id: str | None, fmt: Format, limit: int) -> None:
    """Out-of-scope findings: what gated runs touched beyond their approvals (newest first).

    Found after the fact from the orchestrators' OpenLineage events (POST /api/v1/lineage):
    detection, not prevention."""
    click.echo(
        render_violations(_store().violations(since=since, gate_id=gate_id, limit=limit), fmt), nl=False
    )


@lineage.command()
@click.argument("dataset", callback=_dataset, metavar="NAMESPACE/NAME")
@click.option("--upstream", "direction", flag_value="upstream", help="Only what DATASET came from.")
@click.option("--downstream", "direction", flag_value="downstream", help="Only where DATASET went.")
@click.option("--depth", type=click.IntRange(1, 10), default=3, show_default=True)
@_format
@clean_errors
def graph(dataset: DatasetRef, direction: str | None, depth: int, fmt: Format) -> None:
    """Datasets upstream and downstream of DATASET (both unless --upstream or --downstream)."""
    way: Direction = (
        "upstream" if direction == "upstream" else "downstream" if direction == "downstream" else "both"
    )
    remote = remote_client()
    if remote is not None:
        query: dict[str, str | int] = {"dataset": str(dataset), "direction": way, "depth": depth}
        found = LineageGraph.model_validate(remote.get_json("/v1/lineage/graph", **query))
    else:
        found = _store().graph(dataset, direction=way, depth=depth)
    click.echo(render_graph(found, fmt), nl=False)


def _since_param(since: datetime | None) -> dict[str, str | int]:
    return {"since": since.isoformat()} if since is not None else {}


def _remote_rows(path: str, query: dict[str, str | int]) -> AccessRows | None:
    """The rows from the gate service's lineage routes in remote mode, else None (local mode)."""
    remote = remote_client()
    if remote is None:
        return None
    return AccessRows.model_validate(remote.get_json(path, **query))


@lineage.command()
@click.argument("dataset", callback=_dataset, metavar="NAMESPACE/NAME[#tag,tag]")
@click.option("--operation", "-o", required=True, type=click.Choice([o.value for o in Operation]))
@click.option("--column", "columns", multiple=True, metavar="NAME[:TYPE]", help="A column of the dataset.")
@click.option("--rows", "row_count", type=click.IntRange(0), default=None)
@click.option("--bytes", "size", type=click.IntRange(0), default=None)
@click.option("--gate", "gate_id", default=None, help="The gate this access ran under.")
@click.option("--run-id", default=None, help="Tie several calls into one run (edges need a shared run).")
@click.option("--pipeline", default="cli")
@click.option("--task", "task_id", default="")
@clean_errors
def record(
    dataset: DatasetRef,
    operation: str,
    columns: tuple[str, ...],
    row_count: int | None,
    size: int | None,
    gate_id: str | None,
    run_id: str | None,
    pipeline: str,
    task_id: str,
) -> None:
    """Record one access from a shell script, as the OS account (classified by the catalog)."""
    from lineage import _recorder
    from lineage._track import record_access

    store = _store()
    run = (
        RunContext(orchestrator="local", pipeline=pipeline, run_id=run_id or "", task_id=task_id)
        if run_id
        else None
    )
    chosen = chosen_name()  # lineage's actor is a label, never a proof; --as only in a sandbox
    if chosen is not None and not _settings().is_sandbox:
        fail("--as is only for sandbox homes (`gatehouse init --example`)")
    with _recorder.context(store=store, actor=chosen):
        event = record_access(
            dataset,
            operation,
            columns=[ColumnInfo(name=n, type=t) for n, _, t in (c.partition(":") for c in columns)],
            row_count=row_count,
            bytes=size,
            gate_id=gate_id,
            run=run,
        )
    tags = ",".join(sorted(event.tags)) or "no tags"
    click.echo(
        f"recorded {event.operation.value} of {event.dataset.qualified_name} by {event.actor} ({tags})"
    )
    click.echo(event.id)


@lineage.command()
@click.option(
    "--older-than",
    default=None,
    metavar="DURATION",
    help="Delete events older than this (e.g. 400d). Default: $GATEHOUSE_LINEAGE_RETENTION.",
)
@click.option("--batch-size", type=click.IntRange(100, 100_000), default=5000, show_default=True)
@clean_errors
def purge(older_than: str | None, batch_size: int) -> None:
    """Apply the retention setting: delete old access events in batches (audited first)."""
    retention = older_than or os.environ.get("GATEHOUSE_LINEAGE_RETENTION")
    if not retention:
        fail("no retention set: pass --older-than 400d or set GATEHOUSE_LINEAGE_RETENTION", code=2)
    assert retention is not None
    try:
        cutoff = datetime.now(UTC) - parse_duration(retention)
    except LineageError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than / GATEHOUSE_LINEAGE_RETENTION") from None
    gatekeeper = open_gatekeeper(_settings())
    actor = local_caller(gatekeeper.directory, _settings()).actor
    if not isinstance(gatekeeper.store, SqlStore):
        fail("lineage needs the SQL gate store")
    assert isinstance(gatekeeper.store, SqlStore)
    store = LineageStore.for_gate_store(gatekeeper.store)
    deleted = store.purge(
        before=cutoff, gatekeeper=gatekeeper, actor=actor, retention=retention, batch_size=batch_size
    )
    click.echo(
        f"purged {deleted} access event(s) older than {cutoff.isoformat(timespec='seconds')} "
        f"(retention {retention}); audited as lineage.retention_purged"
    )
