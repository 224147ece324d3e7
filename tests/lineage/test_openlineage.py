"""OpenLineage emission: events valid against the schema, delivered through openlineage-python's
real transports (http to a Marquez stand-in, file, openlineage.yml), spooled while the endpoint is
down and delivered in order when it is back — and never carrying a cell value.

Schema validation: no package on the registries this project can reach ships the OpenLineage
spec JSON (see the note at ``_openlineage_registry``), so the OpenLineage schemas are derived from
openlineage-python's ``generated`` model — the classes that package generates from the official
spec, each naming its spec ``$id`` — and our facet is validated against the file we ship.
"""

from __future__ import annotations

import enum
import functools
import importlib
import json
import logging
import os
import pkgutil
import types
import typing
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import attr
import openlineage.client.generated as generated
import pandas as pd
import pytest
from jsonschema import Draft202012Validator, ValidationError
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import RunEvent
from openlineage.client.serde import Serde
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable

import lineage
from gate_core import ConfigError, DatasetRef, Gate, GateRequest, GateStatus, RunContext
from gate_core.testing import ManualClock, actor, example_gatekeeper
from lineage import AccessEvent, Catalog, ColumnInfo, EmitFailed, Operation
from lineage._openlineage import (
    APPROVAL_FACET_KEY,
    APPROVAL_FACET_SCHEMA_URL,
    LineageEmitter,
    approval_facet,
    approval_facet_schema,
    run_events,
    run_uuid_for,
)
from tests.lineage.marquez_standin import LINEAGE_PATH, MarquezStandIn

_DRAFT = "https://json-schema.org/draft/2020-12/schema"
RUN_EVENT_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
RUN = RunContext(
    orchestrator="airflow",
    pipeline="customer_export",
    run_id="scheduled__2026-01-05T09:00:00+00:00",
    task_id="export_to_partner",
    try_number=1,
)
CUSTOMERS = DatasetRef(namespace="postgres://warehouse:5432", name="analytics.public.customers", tags={"pii"})
ORDERS = DatasetRef(namespace="postgres://warehouse:5432", name="analytics.public.orders")
PARTNER_FILE = DatasetRef(namespace="s3://partner-bucket", name="exports/customers.csv", tags={"pii"})
STAGING = DatasetRef(namespace="warehouse", name="staging.customers_tmp")
CUSTOMER_COLUMNS = (
    ColumnInfo(name="customer_id", type="int64"),
    ColumnInfo(name="email", type="object", tags={"pii", "email"}),
    ColumnInfo(name="country", type="category"),
)


# --------------------------------------------------------------------------- schema validation


def _json_type(hint: Any) -> dict[str, Any]:
    """The JSON Schema of one annotation of openlineage-python's generated attrs model."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        return _json_type(rest[0]) if len(rest) == 1 else {"anyOf": [_json_type(a) for a in rest]}
    if typing.get_origin(hint) is list:
        return {"type": "array", "items": _json_type(args[0])}
    if typing.get_origin(hint) is dict:
        return {"type": "object", "additionalProperties": _json_type(args[1])}
    simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
    if hint in simple:
        return {"type": simple[hint]}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    if hint is Any:
        return {}
    if typing.get_origin(hint) is typing.Literal:
        return {"enum": list(args)}
    if attr.has(hint):  # a class with its own $defs entry is referenced; an anonymous one inlined
        return {"$ref": hint._get_schema()} if hasattr(hint, "_get_schema") else _class_schema(hint)
    raise AssertionError(f"no JSON Schema for {hint!r}")


# What the generated classes' validators check, as JSON Schema formats.
_FORMATS = {"runId": "uuid", "eventTime": "date-time"}


def _class_schema(cls: type) -> dict[str, Any]:
    """Fields with their types; required when they have no default or are not Optional."""
    hints = typing.get_type_hints(cls)
    properties, required = {}, []
    for field in attr.fields(cls):
        schema = _json_type(hints[field.name])
        if field.name in _FORMATS:
            schema["format"] = _FORMATS[field.name]
        properties[field.name] = schema
        if field.default is attr.NOTHING or type(None) not in typing.get_args(hints[field.name]):
            required.append(field.name)
    return {"type": "object", "properties": properties, "required": required}


@functools.cache
def _openlineage_registry() -> Registry[Any]:
    """Every OpenLineage schema openlineage-python 1.54 knows, as JSON Schema under its spec ``$id``.

    The official spec JSON is in none of: openlineage-python (wheel 1.54, sdist 1.39 — the newest
    sdist on the index), openlineage-integration-common (wheel 1.54, sdist 1.39), openlineage-airflow,
    openlineage-sql, apache-airflow-providers-openlineage (wheel and sdist); Maven Central and
    crates.io are unreachable from here. The generated classes are what openlineage-python builds
    from that spec, one per ``$defs`` entry. Facets and events stay open to extra properties, as in
    the spec.
    """
    documents: dict[str, dict[str, Any]] = {}
    for module_info in pkgutil.iter_modules(generated.__path__):
        module = importlib.import_module(f"{generated.__name__}.{module_info.name}")
        for cls in list(vars(module).values()):
            if not (attr.has(cls) and cls.__module__ == module.__name__):
                continue
            schema_url = getattr(cls, "_get_schema", None)
            if schema_url is None:
                continue  # an anonymous nested object: inlined where it is used
            document, _, pointer = str(schema_url()).partition("#/$defs/")
            doc = documents.setdefault(document, {"$schema": _DRAFT, "$id": document, "$defs": {}})
            doc["$defs"][pointer] = _class_schema(cls)
    ours = approval_facet_schema()
    resources = [(url, Resource.from_contents(doc)) for url, doc in documents.items()]
    resources.append((ours["$id"], Resource.from_contents(ours)))
    return Registry().with_resources(resources)


def _validator(schema_url: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": schema_url},
        registry=_openlineage_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def _facets(event: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from event["run"].get("facets", {}).items()
    yield from event["job"].get("facets", {}).items()
    for dataset in event.get("inputs", []) + event.get("outputs", []):
        for group in ("facets", "inputFacets", "outputFacets"):
            yield from dataset.get(group, {}).items()


def validate_event(event: dict[str, Any]) -> None:
    """The event against RunEvent, then every facet against the schema its ``_schemaURL`` names;
    a facet whose schema is unknown fails (nothing is skipped)."""
    _validator(RUN_EVENT_URL).validate(event)
    for key, facet in _facets(event):
        try:
            _validator(facet["_schemaURL"]).validate(facet)
        except ValidationError as exc:
            raise AssertionError(f"facet {key!r} is invalid: {exc.message}") from exc
        except Unresolvable as exc:
            raise AssertionError(f"facet {key!r}: no schema known for {facet['_schemaURL']}") from exc


def as_json(event: RunEvent) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(Serde.to_json(event))
    return parsed


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OpenLineage configuration but the test's own. OpenLineageClient() writes aliases of
    OPENLINEAGE_URL into os.environ itself, so the whole environment is put back afterwards."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("OPENLINEAGE")]:
        del os.environ[key]
    (tmp_path / "user-home").mkdir()
    os.environ["HOME"] = str(tmp_path / "user-home")  # no ~/.openlineage/openlineage.yml
    os.environ["GATEHOUSE_HOME"] = str(tmp_path / "gatehouse-home")
    monkeypatch.chdir(tmp_path)  # no openlineage.yml (nor git checkout) in the working directory
    lineage.reset()
    yield
    lineage.reset()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def marquez() -> Iterator[MarquezStandIn]:
    with MarquezStandIn() as server:
        yield server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def gate(clock: ManualClock) -> Gate:
    """A real approved gate: alice asks to export pii to a partner, bob (data governance) approves."""
    gatekeeper = example_gatekeeper(clock=clock)
    request = GateRequest(
        action="export",
        target=f"{PARTNER_FILE.namespace}/{PARTNER_FILE.name}",
        datasets=(CUSTOMERS,),
        requester="alice",
        run=RUN,
        reason="quarterly partner sync",
    )
    opened = gatekeeper.open(request, submitted_by=actor("alice"))
    clock.advance(minutes=20)
    approved = gatekeeper.approve(opened.id, actor=actor("bob"), comment="scoped to Q1 customers")
    gatekeeper.store.close()
    assert approved.status is GateStatus.APPROVED
    return approved


def access(dataset: DatasetRef, operation: Operation, at_minute: int, **fields: Any) -> AccessEvent:
    defaults: dict[str, Any] = {"columns": CUSTOMER_COLUMNS, "row_count": 1200, "bytes": 96_000}
    return AccessEvent(
        id=f"e{uuid.uuid4().hex[:20]}",
        at=ManualClock().now() + timedelta(minutes=30 + at_minute),
        dataset=dataset,
        operation=operation,
        run=RUN,
        actor="alice",
        **(defaults | fields),
    )


@pytest.fixture
def accesses(gate: Gate) -> list[AccessEvent]:
    return [
        access(CUSTOMERS, Operation.READ, 0),
        access(CUSTOMERS, Operation.READ, 1, row_count=300, bytes=24_000),  # read twice: summed
        access(ORDERS, Operation.READ, 2, columns=(ColumnInfo(name="order_id", type="int64"),), bytes=None),
        access(PARTNER_FILE, Operation.EXPORT, 3, gate_id=gate.id),
        access(STAGING, Operation.WRITE, 4, columns=(), row_count=1500, bytes=120_000),
        access(STAGING, Operation.DELETE, 5, columns=(), row_count=None, bytes=None),
    ]


def http_config(url: str) -> dict[str, str]:
    """The http transport through OPENLINEAGE__TRANSPORT__* variables; one attempt, no backoff,
    so a down endpoint fails at once instead of after urllib3's default five retries."""
    return {
        "OPENLINEAGE__TRANSPORT__TYPE": "http",
        "OPENLINEAGE__TRANSPORT__URL": url,
        "OPENLINEAGE__TRANSPORT__TIMEOUT": "2",
        "OPENLINEAGE__TRANSPORT__RETRY": json.dumps({"total": 0, "backoff_factor": 0}),
    }


def spooled_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "gatehouse.lineage.openlineage" and r.levelno == logging.WARNING
    ]


# --------------------------------------------------------------------------- building events


def test_events_are_valid_openlineage_with_every_facet(gate: Gate, accesses: list[AccessEvent]) -> None:
    start, complete = (as_json(e) for e in run_events(RUN, accesses, gate=gate))
    for event in (start, complete):
        validate_event(event)
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"] == run_uuid_for(RUN)
    assert (
        start["job"]
        == complete["job"]
        == {
            "namespace": "gatehouse.airflow",
            "name": "customer_export.export_to_partner",
            "facets": {},
        }
    )
    assert start["eventTime"] == "2026-01-05T09:30:00+00:00"
    assert complete["eventTime"] == "2026-01-05T09:35:00+00:00"

    inputs = {d["name"]: d for d in complete["inputs"]}
    outputs = {d["name"]: d for d in complete["outputs"]}
    assert list(inputs) == [CUSTOMERS.name, ORDERS.name]
    assert list(outputs) == [PARTNER_FILE.name, STAGING.name]

    customers = inputs[CUSTOMERS.name]
    assert customers["facets"]["dataSource"] | {"_producer": "", "_schemaURL": ""} == {
        "_producer": "",
        "_schemaURL": "",
        "name": "postgres://warehouse:5432",
        "uri": "postgres://warehouse:5432",
    }
    assert [(f["name"], f["type"]) for f in customers["facets"]["schema"]["fields"]] == [
        ("customer_id", "int64"),
        ("email", "object"),
        ("country", "category"),
    ]
    assert {(t["key"], t.get("field")) for t in customers["facets"]["tags"]["tags"]} == {
        ("pii", None),
        ("email", "email"),
        ("pii", "email"),
    }
    statistics = customers["inputFacets"]["inputStatistics"]
    assert (statistics["rowCount"], statistics["size"]) == (1500, 120_000)  # both reads together
    # A size one of the reads did not report is left out rather than under-reported.
    assert inputs[ORDERS.name]["inputFacets"]["inputStatistics"] == {
        "_producer": statistics["_producer"],
        "_schemaURL": statistics["_schemaURL"],
        "rowCount": 1200,
    }
    export = outputs[PARTNER_FILE.name]
    assert export["outputFacets"]["outputStatistics"]["rowCount"] == 1200
    assert {t["key"] for t in export["facets"]["tags"]["tags"] if "field" not in t} == {"pii"}
    staging = outputs[STAGING.name]
    assert "uri" not in staging["facets"]["dataSource"]  # "warehouse" is a name, not a URI
    assert staging["outputFacets"]["outputStatistics"]["rowCount"] == 1500  # the delete adds no rows
    assert "schema" not in staging["facets"]

    # START says what the run will touch; nothing has been counted yet.
    assert all(not d["inputFacets"] for d in start["inputs"])
    assert all(not d["outputFacets"] for d in start["outputs"])
    for event in (start, complete):
        facet = event["run"]["facets"][APPROVAL_FACET_KEY]
        assert facet["gate_id"] == gate.id
        assert facet["status"] == "APPROVED"
        assert facet["rule"] == "pii-export"
        assert facet["approvers"][0]["principal_id"] == "bob"


def test_failed_run_carries_the_error_type_but_never_its_message(accesses: list[AccessEvent]) -> None:
    _, failed = run_events(RUN, accesses, error=ValueError("bad row: jane.doe@example.org"))
    event = as_json(failed)
    validate_event(event)
    assert event["eventType"] == "FAIL"
    assert event["run"]["facets"]["errorMessage"]["message"] == "ValueError (message withheld)"
    assert event["run"]["facets"]["errorMessage"]["programmingLanguage"] == "PYTHON"
    assert "jane.doe" not in Serde.to_json(failed)
    assert APPROVAL_FACET_KEY not in event["run"]["facets"]  # no gate given, no approval claimed
    _, explained = run_events(RUN, accesses, error="partner bucket refused the upload")
    assert (
        as_json(explained)["run"]["facets"]["errorMessage"]["message"] == "partner bucket refused the upload"
    )


def test_run_ids_are_uuids_stable_per_task_try() -> None:
    assert run_uuid_for(RUN) == run_uuid_for(RUN.model_copy())
    assert run_uuid_for(RUN) != run_uuid_for(RUN.model_copy(update={"try_number": 2}))
    assert run_uuid_for(RUN) != run_uuid_for(RUN.model_copy(update={"task_id": "other"}))
    adhoc = RunContext()  # no run id: nothing to derive from, each call is a new run
    assert uuid.UUID(run_uuid_for(adhoc)) != uuid.UUID(run_uuid_for(adhoc))
    start, end = run_events(adhoc, [])
    assert start.run.runId == end.run.runId
    assert (start.job.namespace, start.job.name) == ("gatehouse.local", "adhoc")


def test_job_namespace_follows_openlineage_namespace(accesses: list[AccessEvent]) -> None:
    os.environ["OPENLINEAGE_NAMESPACE"] = "prod-airflow"
    assert run_events(RUN, accesses)[0].job.namespace == "prod-airflow"
    assert run_events(RUN, accesses, job_namespace="explicit")[0].job.namespace == "explicit"


def test_the_validator_is_not_vacuous(gate: Gate, accesses: list[AccessEvent]) -> None:
    """Broken events and facets are rejected — the checks above could fail."""
    event = as_json(run_events(RUN, accesses, gate=gate)[1])
    breakages: tuple[tuple[Callable[[dict[str, Any]], object], str], ...] = (
        (lambda e: e["run"].update(runId="not-a-uuid"), "is not a 'uuid'"),
        (lambda e: e.update(eventType="DONE"), "is not one of"),
        (lambda e: e["job"].pop("name"), "'name' is a required property"),
        (lambda e: e["inputs"][0]["facets"]["schema"]["fields"][0].update(name=7), "is not of type 'string'"),
        (lambda e: e["run"]["facets"][APPROVAL_FACET_KEY].pop("gate_id"), "'gate_id' is a required"),
        (
            lambda e: e["inputs"][0]["facets"]["tags"].update(_schemaURL="https://example.org/x.json"),
            "no schema known",
        ),
    )
    for breakage, expected in breakages:
        broken = json.loads(json.dumps(event))
        breakage(broken)
        with pytest.raises((AssertionError, ValidationError), match=expected):
            validate_event(broken)


# --------------------------------------------------------------------------- the approval facet


def test_approval_facet_matches_its_shipped_schema(gate: Gate) -> None:
    schema = approval_facet_schema()
    Draft202012Validator.check_schema(schema)
    assert f"{schema['$id']}#/$defs/GatehouseApprovalRunFacet" == APPROVAL_FACET_SCHEMA_URL
    facet = json.loads(Serde.to_json(approval_facet(gate)))
    assert facet["_schemaURL"] == APPROVAL_FACET_SCHEMA_URL
    _validator(APPROVAL_FACET_SCHEMA_URL).validate(facet)
    # The whole document validates the run facets object, the way OpenLineage's own facet files do.
    Draft202012Validator(schema, registry=_openlineage_registry()).validate({APPROVAL_FACET_KEY: facet})
    assert facet == facet | {
        "gate_id": gate.id,
        "status": "APPROVED",
        "action": "export",
        "rule": "pii-export",
        "required_approvals": 1,
        "requested_at": "2026-01-05T09:00:00+00:00",
        "decided_at": "2026-01-05T09:20:00+00:00",
        "expires_at": "2026-01-05T13:00:00+00:00",
        "policy_hash": gate.policy_hash,
        "binding_hash": gate.binding_hash,
        "break_glass": False,
    }
    assert facet["approvers"] == [
        {
            "principal_id": "bob",
            "display_name": "Bob (data governance)",
            "via": "local-os-user",
            "at": "2026-01-05T09:20:00+00:00",
            "comment": "scoped to Q1 customers",
        }
    ]
    statuses = schema["$defs"]["GatehouseApprovalRunFacet"]["allOf"][1]["properties"]["status"]["enum"]
    assert statuses == [s.value for s in GateStatus]  # the schema follows gate_core's statuses
    with pytest.raises(ValidationError, match="'rule' is a required property"):
        _validator(APPROVAL_FACET_SCHEMA_URL).validate({k: v for k, v in facet.items() if k != "rule"})


def test_the_facet_schema_ships_inside_the_package() -> None:
    shipped = Path(lineage.__file__).parent / "schemas" / "GatehouseApprovalRunFacet.json"
    assert json.loads(shipped.read_text("utf-8")) == approval_facet_schema()


# --------------------------------------------------------------------------- transports


def test_http_transport_from_openlineage_url_reaches_marquez(
    marquez: MarquezStandIn, gate: Gate, accesses: list[AccessEvent], tmp_path: Path
) -> None:
    os.environ["OPENLINEAGE_URL"] = marquez.url
    emitter = LineageEmitter(spool_dir=tmp_path / "spool")  # a default OpenLineageClient()
    assert emitter.transport.kind == "http"
    emitter.emit_run(RUN, accesses, gate=gate)

    assert marquez.event_types == ["START", "COMPLETE"]
    assert {path for path, _ in marquez.requests} == {LINEAGE_PATH}
    for event in marquez.events:
        validate_event(event)
    complete = marquez.events[1]
    facet = complete["run"]["facets"][APPROVAL_FACET_KEY]
    assert (facet["gate_id"], facet["rule"], facet["status"]) == (gate.id, "pii-export", "APPROVED")
    assert [a["principal_id"] for a in facet["approvers"]] == ["bob"]
    assert complete["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] == 1500
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["size"] == 96_000
    assert marquez.events[0]["run"]["runId"] == complete["run"]["runId"]
    assert not emitter.spool_dir.exists()  # while the endpoint is up the spool is never touched


def test_file_transport_from_environment(gate: Gate, accesses: list[AccessEvent], tmp_path: Path) -> None:
    log_file = tmp_path / "events" / "openlineage.jsonl"
    log_file.parent.mkdir()
    os.environ |= {
        "OPENLINEAGE__TRANSPORT__TYPE": "file",
        "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH": str(log_file),
        "OPENLINEAGE__TRANSPORT__APPEND": "true",
    }
    emitter = LineageEmitter(spool_dir=tmp_path / "spool")
    assert emitter.transport.kind == "file"
    emitter.emit_run(RUN, accesses, gate=gate)
    events = [json.loads(line) for line in log_file.read_text("utf-8").splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        validate_event(event)
        assert event["run"]["facets"][APPROVAL_FACET_KEY]["gate_id"] == gate.id


def test_openlineage_yml_from_openlineage_config(
    marquez: MarquezStandIn, gate: Gate, accesses: list[AccessEvent], tmp_path: Path
) -> None:
    config = tmp_path / "conf" / "openlineage.yml"
    config.parent.mkdir()
    config.write_text(
        "transport:\n"
        "  type: http\n"
        f"  url: {marquez.url}\n"
        "  endpoint: api/v1/lineage\n"
        "  timeout: 2\n"
        "  retry: {total: 0, backoff_factor: 0}\n",
        encoding="utf-8",
    )
    os.environ["OPENLINEAGE_CONFIG"] = str(config)
    emitter = LineageEmitter(spool_dir=tmp_path / "spool")
    emitter.emit_run(RUN, accesses, gate=gate)
    assert marquez.event_types == ["START", "COMPLETE"]
    for event in marquez.events:
        validate_event(event)
    assert marquez.events[1]["run"]["facets"][APPROVAL_FACET_KEY]["approvers"][0]["principal_id"] == "bob"


def test_explicit_client_is_used_as_given(marquez: MarquezStandIn, accesses: list[AccessEvent]) -> None:
    client = OpenLineageClient(config={"transport": {"type": "http", "url": marquez.url}})
    transport = client.transport
    LineageEmitter(client, spool_dir="spool").emit_run(RUN, accesses)
    assert marquez.event_types == ["START", "COMPLETE"]
    assert client.transport is transport  # the caller's client is not rewired


def test_disabled_openlineage_sends_and_spools_nothing(accesses: list[AccessEvent], tmp_path: Path) -> None:
    os.environ["OPENLINEAGE_DISABLED"] = "true"
    emitter = LineageEmitter(spool_dir=tmp_path / "spool")
    emitter.emit_run(RUN, accesses)
    assert emitter.spooled() == []
    assert emitter.flush_spool().remaining == 0


# --------------------------------------------------------------------------- endpoint down


def test_endpoint_down_spools_then_delivers_everything_in_order(
    marquez: MarquezStandIn,
    gate: Gate,
    accesses: list[AccessEvent],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    os.environ |= http_config(marquez.url)
    emitter = LineageEmitter(spool_dir=tmp_path / "spool", retry_interval=0)  # try on every emit
    second_run = RUN.model_copy(update={"try_number": 2})

    marquez.go_down()
    first = run_events(RUN, accesses, gate=gate)
    for event in first:
        emitter.emit(event)  # spooled, and the pipeline goes on
    lines = spooled_lines(caplog)
    assert len(lines) == 2
    assert lines[0].startswith("OpenLineage endpoint unreachable; event spooled to ")
    assert lines[0].endswith("(1 waiting); will retry")
    assert str(emitter.spool_dir) in lines[0]
    assert len(emitter.spooled()) == 2
    for path in emitter.spooled():  # the event as the client finished it, its run tags included
        spooled = json.loads(path.read_text("utf-8"))
        validate_event(spooled)
        assert "openlineage_client_version" in {t["key"] for t in spooled["run"]["facets"]["tags"]["tags"]}

    marquez.come_back()
    second = run_events(second_run, accesses, gate=gate)
    emitter.emit(second[0])  # the backlog goes first, then this one
    assert emitter.spooled() == []
    assert len(marquez.events) == 3
    marquez.go_down()
    emitter.emit(second[1])
    assert len(emitter.spooled()) == 1
    marquez.come_back()
    result = emitter.flush_spool()
    assert (result.delivered, result.remaining, result.error) == (1, 0, None)

    sent = [as_json(e) for e in (*first, *second)]
    assert len(marquez.events) == 4  # nothing lost, nothing twice
    assert [(e["eventType"], e["run"]["runId"]) for e in marquez.events] == [
        (e["eventType"], e["run"]["runId"]) for e in sent
    ]
    for received, original in zip(marquez.events, sent, strict=True):
        # The client adds its own run tags on the way out; everything Gatehouse built arrives as built.
        assert received["inputs"] == original["inputs"]
        assert received["outputs"] == original["outputs"]
        assert received["run"]["facets"][APPROVAL_FACET_KEY] == original["run"]["facets"][APPROVAL_FACET_KEY]
        validate_event(received)
    assert emitter.spooled() == []
    assert not list(emitter.spool_dir.glob(".*.tmp"))


def test_events_queue_behind_the_backlog_while_the_endpoint_stays_down(
    marquez: MarquezStandIn, accesses: list[AccessEvent], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    os.environ |= http_config(marquez.url)
    emitter = LineageEmitter(spool_dir=tmp_path / "spool")
    marquez.go_down()
    for try_number in (1, 2, 3):
        emitter.emit_run(RUN.model_copy(update={"try_number": try_number}), accesses)
    assert len(emitter.spooled()) == 6
    assert len(spooled_lines(caplog)) == 6  # one line per event, no more
    result = emitter.flush_spool()
    assert (result.delivered, result.remaining) == (0, 6)
    assert result.error == "OpenLineage endpoint unreachable"
    marquez.come_back()
    assert emitter.flush_spool().delivered == 6
    assert marquez.event_types == ["START", "COMPLETE"] * 3
    assert [e["run"]["runId"] for e in marquez.events[::2]] == [
        run_uuid_for(RUN.model_copy(update={"try_number": n})) for n in (1, 2, 3)
    ]


def test_after_a_failure_events_are_spooled_without_another_attempt_for_a_while(
    marquez: MarquezStandIn, accesses: list[AccessEvent], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    os.environ |= http_config(marquez.url)
    emitter = LineageEmitter(spool_dir=tmp_path / "spool")  # retry_interval: 30 s
    marquez.fail_with = 503
    for try_number in (1, 2):
        emitter.emit_run(RUN.model_copy(update={"try_number": try_number}), accesses)
    assert len(marquez.requests) == 1  # one attempt; the other three events queued behind it
    lines = spooled_lines(caplog)
    assert len(lines) == 4
    assert all("503" in line and "event spooled to" in line for line in lines)
    marquez.fail_with = None
    emitter.emit_run(RUN.model_copy(update={"try_number": 3}), accesses)
    assert len(marquez.requests) == 1  # still pausing: spooled, in order
    assert emitter.flush_spool().delivered == 6  # on demand, no pause
    assert marquez.event_types == ["START", "COMPLETE"] * 3


def test_endpoint_answering_errors_is_spooled_with_the_status(
    marquez: MarquezStandIn, accesses: list[AccessEvent], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    os.environ |= http_config(marquez.url)
    emitter = LineageEmitter(spool_dir=tmp_path / "spool")
    marquez.fail_with = 401
    emitter.emit_run(RUN, accesses)
    assert spooled_lines(caplog)[0].startswith("OpenLineage endpoint answered HTTP 401; event spooled to ")
    marquez.fail_with = None
    assert emitter.flush_spool().delivered == 2
    assert marquez.event_types == ["START", "COMPLETE"]


def test_on_error_raise_fails_the_step_but_keeps_the_event(
    marquez: MarquezStandIn, accesses: list[AccessEvent], tmp_path: Path
) -> None:
    os.environ |= http_config(marquez.url)
    emitter = LineageEmitter(spool_dir=tmp_path / "spool", on_error="raise")
    marquez.go_down()
    start, _ = run_events(RUN, accesses)
    with pytest.raises(EmitFailed, match=r"unreachable; event spooled to .*on_error='raise' fails the step"):
        emitter.emit(start)
    assert len(emitter.spooled()) == 1
    marquez.come_back()
    assert emitter.flush_spool().delivered == 1
    assert marquez.event_types == ["START"]


def test_on_error_comes_from_the_environment_and_is_checked(tmp_path: Path) -> None:
    os.environ["GATEHOUSE_OPENLINEAGE_ON_ERROR"] = "raise"
    client = OpenLineageClient(config={"transport": {"type": "console"}})
    assert LineageEmitter(client, spool_dir=tmp_path).on_error == "raise"
    os.environ["GATEHOUSE_OPENLINEAGE_ON_ERROR"] = "ignore"
    with pytest.raises(ConfigError, match="on_error must be 'spool' or 'raise', not 'ignore'"):
        LineageEmitter(client, spool_dir=tmp_path)


def test_spool_defaults_to_gatehouse_home(tmp_path: Path) -> None:
    client = OpenLineageClient(config={"transport": {"type": "console"}})
    assert LineageEmitter(client).spool_dir == tmp_path / "gatehouse-home" / "openlineage-spool"
    os.environ["GATEHOUSE_OPENLINEAGE_SPOOL"] = str(tmp_path / "elsewhere")
    assert LineageEmitter(client).spool_dir == tmp_path / "elsewhere"


def test_an_unwritable_spool_is_reported_not_hidden(
    marquez: MarquezStandIn, accesses: list[AccessEvent], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    os.environ |= http_config(marquez.url)
    (tmp_path / "a-file").write_text("", "utf-8")
    marquez.go_down()
    emitter = LineageEmitter(spool_dir=tmp_path / "a-file" / "spool")
    start, _ = run_events(RUN, accesses)
    emitter.emit(start)  # the default still does not fail the pipeline...
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert line.startswith("OpenLineage endpoint unreachable, and the spool ")
    assert line.endswith("; event lost")  # ...but says plainly what was lost
    strict = LineageEmitter(spool_dir=tmp_path / "a-file" / "spool", on_error="raise")
    with pytest.raises(EmitFailed, match=r"is not writable .*event lost"):
        strict.emit(start)


def test_an_unreadable_spool_file_is_set_aside(marquez: MarquezStandIn, tmp_path: Path) -> None:
    os.environ |= http_config(marquez.url)
    emitter = LineageEmitter(spool_dir=tmp_path / "spool")
    emitter.spool_dir.mkdir()
    (emitter.spool_dir / "00000000000000000001-1.json").write_text('{"eventType": "START", "ru', "utf-8")
    assert emitter.flush_spool().delivered == 0
    assert emitter.spooled() == []
    assert (emitter.spool_dir / "00000000000000000001-1.unreadable").exists()


# --------------------------------------------------------------------------- as a lineage sink


def test_emitter_as_a_lineage_sink_sends_running_events(marquez: MarquezStandIn, tmp_path: Path) -> None:
    os.environ |= http_config(marquez.url)
    emitter = LineageEmitter(spool_dir=tmp_path / "spool")
    frame = pd.DataFrame({"customer_id": [1, 2, 3], "email": ["a@x.org", "b@x.org", "c@x.org"]})
    with lineage.context(run=RUN, actor="alice", sinks=[emitter]):
        lineage.track_dataframe(frame, dataset=str(CUSTOMERS), operation="read", catalog=Catalog())
    [event] = marquez.events
    validate_event(event)
    assert event["eventType"] == "RUNNING"
    assert event["run"]["runId"] == run_uuid_for(RUN)
    [dataset] = event["inputs"]
    assert dataset["inputFacets"]["inputStatistics"]["rowCount"] == 3
    assert ("email", "email") in {(t["key"], t.get("field")) for t in dataset["facets"]["tags"]["tags"]}


# --------------------------------------------------------------------------- never contents

SENTINELS = ("SENTINEL-5f0c-jane.doe@example.org", "SENTINEL-9b2e-4111111111111111", "SENTINEL-77aa-555-0199")
SENTINEL_NUMBER = 987654321987654


def sentinel_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "email": [SENTINELS[0]] * 3,
            "card_number": [SENTINELS[1]] * 3,
            "phone": pd.Categorical([SENTINELS[2]] * 3),  # categories live in the dtype: never emitted
            "balance": [SENTINEL_NUMBER] * 3,
        }
    )


def assert_no_sentinel(text: str, where: str) -> None:
    for sentinel in (*SENTINELS, str(SENTINEL_NUMBER)):
        assert sentinel not in text, f"cell value {sentinel!r} leaked into {where}"


def test_never_contents_from_an_access_event_built_by_hand(
    marquez: MarquezStandIn, gate: Gate, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # even the client's DEBUG dump of each event
    frame = sentinel_frame()
    by_hand = AccessEvent(
        id="e01JH0000000000000000000000",
        at=ManualClock().now(),
        dataset=CUSTOMERS,
        operation=Operation.EXPORT,
        columns=tuple(ColumnInfo(name=str(c), type=str(t)[:20]) for c, t in frame.dtypes.items()),
        row_count=len(frame),
        bytes=int(frame.memory_usage(deep=False).sum()),
        run=RUN,
        actor="alice",
        gate_id=gate.id,
    )
    assert_no_sentinel(by_hand.model_dump_json(), "the AccessEvent")
    os.environ |= http_config(marquez.url)
    emitter = LineageEmitter(spool_dir=tmp_path / "spool")
    marquez.go_down()
    emitter.emit_run(RUN, [by_hand], gate=gate, error=RuntimeError(SENTINELS[0]))
    spool_text = "".join(p.read_text("utf-8") for p in emitter.spooled())
    assert spool_text
    assert_no_sentinel(spool_text, "the spool")
    marquez.come_back()
    emitter.flush_spool()
    assert len(marquez.events) == 2
    assert_no_sentinel(json.dumps(marquez.events), "the events Marquez received")
    assert_no_sentinel(caplog.text, "the log")


def test_never_contents_through_track_dataframe(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    log_file = tmp_path / "openlineage.jsonl"
    os.environ |= {
        "OPENLINEAGE__TRANSPORT__TYPE": "file",
        "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH": str(log_file),
        "OPENLINEAGE__TRANSPORT__APPEND": "true",
    }
    emitter = LineageEmitter(spool_dir=tmp_path / "spool")
    recorded: list[AccessEvent] = []

    class Keep:
        def record_many(self, events: Sequence[AccessEvent], /) -> None:
            recorded.extend(events)

    with lineage.context(run=RUN, actor="alice", sinks=[emitter, Keep()]):
        for operation in ("read", "write", "export"):
            lineage.track_dataframe(sentinel_frame(), dataset=str(CUSTOMERS), operation=operation)
    emitter.emit_run(RUN, recorded)
    text = log_file.read_text("utf-8")
    assert len(text.splitlines()) == 3 + 2  # three RUNNING, then START and COMPLETE
    assert "card_number" in text  # the columns are there, their values are not
    assert_no_sentinel(text, "the file transport's events")
    assert_no_sentinel(caplog.text, "the log")
    assert emitter.spooled() == []
