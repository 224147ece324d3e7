"""The OpenLineage receiver: where Airflow's OpenLineage provider, Spark's listener and dbt-ol
post their events (``OPENLINEAGE_URL=http://gatehouse:8080`` and the ``lineage`` token as the
HTTP transport's API key).

    POST /api/v1/lineage         one RunEvent, DatasetEvent or JobEvent
    POST /api/v1/lineage/batch   a JSON array of them (at most 1000)
    → 201 {"received": n, "recorded": new accesses, "violations": new findings}

The path is the one Marquez and openlineage-python's HTTP transport use by default. Only a
credential with the ``lineage`` scope may post (``LineageSender``), and it may do nothing else.
A body is all or nothing: one invalid event refuses the whole request (422, naming its index),
and nothing is stored. ``Content-Encoding: gzip`` (the transport's ``compression: gzip``) is
inflated up to a bound. See ``lineage._ol_events`` for what is validated and what is kept.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gate_core import Actor
from gate_core.service.extension import LineageSender
from lineage._ol_events import (
    MAX_BATCH_EVENTS,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_INFLATED_BYTES,
    BodyFacts,
    InvalidOpenLineageEvent,
    SeenEvent,
    body_facts,
    decode_body,
    reduce,
    validate,
)
from lineage._ol_ingest import Ingested, OpenLineageIngest

router = APIRouter(prefix="/api/v1/lineage", tags=["openlineage"])


def _ingest(request: Request) -> OpenLineageIngest:
    ingest: OpenLineageIngest = request.app.state.gatehouse_openlineage
    return ingest


def _checked(events: list[Any], facts: BodyFacts) -> list[SeenEvent]:
    seen = []
    for index, event in enumerate(events):
        try:
            _major, kind = validate(event, facts)
            seen.append(reduce(event, kind, facts))
        except InvalidOpenLineageEvent as exc:
            if len(events) == 1:
                raise
            raise InvalidOpenLineageEvent(f"event {index}: {exc}") from None
    return seen


def _decode(body: bytes, encoding: str | None, limit: int) -> tuple[Any, BodyFacts]:
    payload = decode_body(body, encoding, limit)
    if encoding and encoding.strip().lower() == "gzip":
        import zlib

        body = zlib.decompress(body, wbits=16 + zlib.MAX_WBITS)  # bounded: decode_body checked it
    return payload, body_facts(body)


def _handle(
    ingest: OpenLineageIngest, body: bytes, encoding: str | None, batch: bool, sender: Actor
) -> Ingested:
    """The whole request off the event loop, in one worker-thread hop: decode, check, ingest."""
    limit = MAX_INFLATED_BYTES if batch else MAX_EVENT_BYTES
    payload, facts = _decode(body, encoding, limit)
    if facts.depth > MAX_DEPTH + (1 if batch else 0):
        raise InvalidOpenLineageEvent(f"JSON nested deeper than {MAX_DEPTH} levels")
    if batch:
        if not isinstance(payload, list) or not payload:
            raise InvalidOpenLineageEvent("a batch is a non-empty JSON array of OpenLineage events")
        if len(payload) > MAX_BATCH_EVENTS:
            raise InvalidOpenLineageEvent(f"a batch holds at most {MAX_BATCH_EVENTS} events")
        events = payload
    else:
        events = [payload]
    return ingest.ingest(_checked(events, facts), sender)


async def _receive(request: Request, sender: Any, *, batch: bool) -> JSONResponse:
    body = await request.body()
    encoding = request.headers.get("content-encoding")
    result = await run_in_threadpool(_handle, _ingest(request), body, encoding, batch, sender.actor)
    return JSONResponse(
        {"received": result.received, "recorded": result.recorded, "violations": len(result.violations)},
        status_code=201,
    )


@router.post("", status_code=201)
async def receive_event(request: Request, sender: LineageSender) -> JSONResponse:
    """One OpenLineage event (scope ``lineage``)."""
    return await _receive(request, sender, batch=False)


@router.post("/batch", status_code=201)
async def receive_batch(request: Request, sender: LineageSender) -> JSONResponse:
    """A JSON array of OpenLineage events (scope ``lineage``), all or nothing."""
    return await _receive(request, sender, batch=True)
