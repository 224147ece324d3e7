"""The lineage REST API under /v1/lineage, plugged into the gate service (entry point
``gatehouse.service``): the four governance queries and batch ingest.

    GET  /v1/lineage/accessed?dataset=&since=&limit=        AccessRows
    GET  /v1/lineage/runs/{run_id}?orchestrator=&limit=     AccessRows
    GET  /v1/lineage/gates/{gate_id}?limit=                 AccessRows
    GET  /v1/lineage/exports?tag=&since=&limit=             AccessRows
    GET  /v1/lineage/graph?dataset=&direction=&depth=       LineageGraph
    GET  /v1/lineage/violations?since=&gate=&limit=         Violations (out-of-scope findings)
    POST /v1/lineage/events   {"events": [...]}             {"recorded": n}   (scope: request)

Answers are the very objects ``gatehouse lineage … --format json`` prints. The plugin uses only
the service's public extension API (``gate_core.service.extension``): every caller is identified
by its ``Caller`` dependency, the service context comes from ``context_of``. On ingest the actor
is the caller; only a service principal may name another actor (the person it runs for, who must
be in the directory), and the event then also records the service as ``submitted_by``. The server
applies its own catalog too, so a pipeline cannot under-declare tags.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gate_core import Gate, PermissionDenied, PrincipalKind, Scope, SqlStore, UnknownPrincipal
from gate_core.service.extension import Caller, ServiceContext, context_of
from lineage._catalog import Catalog
from lineage._classifier import LineageClassifier
from lineage._errors import LineageInputError
from lineage._models import AccessEvent, check_storable
from lineage._queries import AccessRows, Direction, LineageGraph, Violations
from lineage._store import LineageStore
from lineage._time import parse_since

log = logging.getLogger("gatehouse.lineage")
router = APIRouter(prefix="/v1/lineage", tags=["lineage"])
Limit = Annotated[int, Query(ge=1, le=10_000)]
Since = Annotated[str | None, Query(max_length=64, description="30d, 2026-10-01 or an ISO time")]
DatasetParam = Annotated[str, Query(min_length=3, max_length=1600, description="NAMESPACE/NAME")]
MAX_BATCH = 5_000


class EventIn(AccessEvent):
    """An access event as a client sends it: ``actor`` defaults to the caller."""

    actor: str | None = Field(default=None, min_length=1, max_length=200)  # type: ignore[assignment]


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class Recorded(BaseModel):
    recorded: int = Field(description="events new to the store (a repeated event id is recorded once)")


def _text(*values: str | None) -> None:
    """Query text must be storable text (no NUL, no lone surrogates): a clean 422, not a 5xx."""
    try:
        check_storable([v for v in values if v is not None])
    except ValueError as exc:
        raise LineageInputError(str(exc)) from None


def _since(value: str | None) -> datetime | None:
    _text(value)
    return None if value is None else parse_since(value)


def _store(request: Request) -> LineageStore:
    store: LineageStore = request.app.state.gatehouse_lineage
    return store


@router.get("/accessed", response_model=AccessRows)
def accessed(
    caller: Caller, request: Request, dataset: DatasetParam, since: Since = None, limit: Limit = 1000
) -> Any:
    """Who accessed a dataset, newest first: by whom, in which run, how, under which approval."""
    _text(dataset)
    return _store(request).accessed(dataset, since=_since(since), limit=limit)


@router.get("/runs/{run_id}", response_model=AccessRows)
def run(
    caller: Caller,
    request: Request,
    run_id: Annotated[str, Path(min_length=1, max_length=500)],
    orchestrator: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 1000,
) -> Any:
    """Everything one run touched, in order."""
    _text(run_id, orchestrator)
    return _store(request).run(run_id, orchestrator=orchestrator, limit=limit)


@router.get("/gates/{gate_id}", response_model=AccessRows)
def gate(
    caller: Caller,
    request: Request,
    gate_id: Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")],
    limit: Limit = 1000,
) -> Any:
    """Everything done under one gate's approval, in order."""
    return _store(request).gate(gate_id, limit=limit)


@router.get("/exports", response_model=AccessRows)
def exports(
    caller: Caller,
    request: Request,
    tag: Annotated[str, Query(min_length=1, max_length=100)],
    since: Since = None,
    limit: Limit = 1000,
) -> Any:
    """Exports of datasets carrying a tag (on the dataset or any column), newest first."""
    _text(tag)
    return _store(request).exports(tag, since=_since(since), limit=limit)


@router.get("/graph", response_model=LineageGraph)
def graph(
    caller: Caller,
    request: Request,
    dataset: DatasetParam,
    direction: Direction = "both",
    depth: Annotated[int, Query(ge=1, le=10)] = 3,
) -> Any:
    """Datasets upstream and/or downstream of a dataset, up to ``depth`` hops."""
    _text(dataset)
    return _store(request).graph(dataset, direction=direction, depth=depth)


@router.get("/violations", response_model=Violations)
def violations(
    caller: Caller,
    request: Request,
    since: Since = None,
    gate: Annotated[str | None, Query(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    limit: Limit = 1000,
) -> Any:
    """Out-of-scope findings: what gated runs touched beyond their approvals, newest first."""
    return _store(request).violations(since=_since(since), gate_id=gate, limit=limit)


@router.post("/events", response_model=Recorded)
def record_events(body: EventsIn, caller: Caller, request: Request) -> Recorded:
    """Record a batch of access events (scope ``request``). Idempotent per event id."""
    caller.require(Scope.REQUEST)
    context = context_of(request)
    catalog: Catalog = request.app.state.gatehouse_lineage_catalog
    me = caller.principal
    accepted = []
    for item in body.events:
        actor = item.actor or me.id
        if actor != me.id:
            if me.kind is not PrincipalKind.SERVICE:
                raise PermissionDenied(f"{me.id} may record lineage only as themselves, not as {actor!r}")
            if context.gatekeeper.directory.find(actor) is None:
                raise UnknownPrincipal(actor, "the actor a service token named")
        classified = catalog.classify(item.dataset, item.columns)
        fields = item.model_dump(exclude={"actor", "submitted_by", "dataset", "columns"})
        accepted.append(
            AccessEvent.model_validate(
                {
                    **fields,
                    "dataset": classified.dataset,
                    "columns": classified.columns,
                    "actor": actor,
                    "submitted_by": me.id if actor != me.id else None,
                }
            )
        )
    return Recorded(recorded=_store(request).record_many(accepted))


def _on_finding(context: ServiceContext) -> Callable[[Gate, str, Mapping[str, Any]], None]:
    """What the receiver calls once per new finding, after storing and auditing it: the core is
    told (its observers — the service's ``gatehouse_lineage_violations_total{kind,rule}``), then
    the gate's notify targets are (``context.alert``, when the service offers it)."""
    alert = getattr(context, "alert", None)

    def found(gate: Gate, event: str, details: Mapping[str, Any]) -> None:
        context.gatekeeper.violation_found(gate, str(details.get("kind", "")))
        if alert is not None:
            alert(gate, event, details)

    return found


def install(app: FastAPI, context: ServiceContext) -> None:
    """The ``gatehouse.service`` entry point: routes, the store on the gate store's engine, the
    catalog, and the console page."""
    if not isinstance(context.gatekeeper.store, SqlStore):
        log.warning("lineage not installed: it needs the SQL gate store")
        return
    app.state.gatehouse_lineage = LineageStore.for_gate_store(context.gatekeeper.store)
    app.state.gatehouse_lineage_catalog = Catalog.from_settings()
    # tags the server knows: a gatekeeper from open_gatekeeper already classifies through lineage's
    # gatehouse.classifiers entry point; one built by hand (create_app in tests) gets it here
    if not any(isinstance(c, LineageClassifier) for c in context.gatekeeper.classifiers):
        context.gatekeeper.add_classifier(
            LineageClassifier(app.state.gatehouse_lineage_catalog, app.state.gatehouse_lineage)
        )
    app.include_router(router)
    from lineage._ol_ingest import OpenLineageIngest
    from lineage._ol_receiver import router as receiver

    app.state.gatehouse_openlineage = OpenLineageIngest(
        app.state.gatehouse_lineage,
        context.gatekeeper,
        app.state.gatehouse_lineage_catalog,
        _on_finding(context),
    )
    app.include_router(receiver)
    from lineage._console import install_page

    install_page(app)
