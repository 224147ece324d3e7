"""Attacks on the OpenLineage receiver (``POST /api/v1/lineage``), over a real socket, on SQLite
and PostgreSQL.

P — a pipeline or its token: only a ``lineage`` credential may post lineage, and it can do nothing
    else (no gate, no decision, no read of the governance queries or the audit trail); lineage
    credentials are pipeline credentials, minted for service principals by gatehouse-admins.
    A pipeline that under-declares (no tags, odd column spelling) still gets its unapproved pii
    read found, once.
C — any caller with a valid credential: malformed, oversized, deeply nested, inflating and
    unstorable events are refused with a clear 4xx, nothing of the request is stored, and the
    service keeps serving; whatever arbitrary facets carry, none of it is stored (a hypothesis
    property searches the whole database's text for sentinel values).
"""

from __future__ import annotations

import gzip
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect, text

from gate_core import PermissionDenied, Scope, Settings
from gate_core.testing import actor
from tests.lineage import ol_shapes as ol
from tests.lineage.test_openlineage_receiver import (
    CUSTOMERS,
    PAYMENTS,
    approved_gate,
    post,
    run_id,
    start_with_webhook,
    store_of,
)
from tests.security.conftest import PII_EXPORT
from tests.service.conftest import Service
from tests.service.http_receiver import HttpReceiver

LEADS = "test.public.leads"


@pytest.fixture
def svc(service_factory: Callable[..., Service], service_settings: Settings) -> Service:
    with HttpReceiver() as hook:
        return start_with_webhook(service_factory, service_settings, hook)


def valid_event() -> dict[str, Any]:
    return ol.airflow_task(
        "attack_dag", run_id(), "load", inputs=[ol.table(CUSTOMERS, ("id", "integer"), rows=1)]
    )


def stored_rows(service: Service) -> int:
    engine = service.gatekeeper.store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return sum(
            int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
            for t in (
                "gh_lineage_events",
                "gh_lineage_event_tags",
                "gh_lineage_ol_runs",
                "gh_lineage_violations",
            )
        )


def database_text(service: Service) -> str:
    """Every row of every table of the database, as text: what a dump would hold."""
    url = service.settings.database_url.replace("postgresql://", "postgresql+psycopg://")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            parts = []
            for name in inspect(conn).get_table_names():
                parts.extend(repr(tuple(r)) for r in conn.execute(text(f'SELECT * FROM "{name}"')))
            return "\n".join(parts)
    finally:
        engine.dispose()


# ---------------------------------------------------------------- P: the credential


@pytest.mark.parametrize("who", ["bot", "alice", "admin"])
def test_no_other_scope_may_post_lineage(svc: Service, who: str, report: Any) -> None:
    """request, decide and admin tokens all get 403; nothing is stored."""
    response = post(svc, valid_event(), who=who)
    assert response.status_code == 403, response.text
    assert "'lineage' is needed" in response.json()["detail"]
    assert post(svc, [valid_event()], batch=True, who=who).status_code == 403
    assert httpx.post(f"{svc.base_url}/api/v1/lineage", json=valid_event()).status_code == 401
    assert stored_rows(svc) == 0
    assert post(svc, valid_event()).status_code == 201  # the lineage token may
    backend = "SQLite" if svc.settings.database_url.startswith("sqlite") else "PostgreSQL"
    report(f"Lineage receiver (P): '{who}' token posting lineage ({backend})", "403, nothing stored")


def test_a_lineage_token_can_do_nothing_else(svc: Service, report: Any) -> None:
    gate = svc.gatekeeper.open(
        __import__("gate_core").GateRequest.model_validate({**PII_EXPORT, "requester": "dave"}),
        submitted_by=actor("etl-bot"),
    )
    attempts = [
        ("GET", "/v1/me", None),
        ("GET", "/v1/gates", None),
        ("GET", f"/v1/gates/{gate.id}", None),
        ("POST", "/v1/gates", {**PII_EXPORT, "requester": "dave"}),
        ("POST", f"/v1/gates/{gate.id}/decisions", {"verdict": "approve"}),
        ("POST", f"/v1/gates/{gate.id}/consume", {"binding_hash": "0" * 64}),
        ("POST", f"/v1/gates/{gate.id}/cancel", {"reason": "x"}),
        ("GET", f"/v1/gates/{gate.id}/wait", None),
        ("GET", "/v1/audit/export", None),
        ("GET", "/v1/audit/verify", None),
        ("GET", "/v1/lineage/accessed?dataset=warehouse/customers", None),
        ("GET", "/v1/lineage/violations", None),
        ("POST", "/v1/lineage/events", {"events": [{"dataset": "w/x", "operation": "read"}]}),
    ]
    with svc.client("lineage") as client:
        for method, path, body in attempts:
            response = client.request(method, path, json=body)
            assert response.status_code == 403, (path, response.status_code, response.text)
            assert "may only send OpenLineage events" in response.text
    assert svc.gatekeeper.get(gate.id).status.value == "PENDING"
    assert stored_rows(svc) == 0
    backend = "SQLite" if svc.settings.database_url.startswith("sqlite") else "PostgreSQL"
    report(
        f"Lineage receiver (P): other routes a lineage token tried ({backend})",
        f"{len(attempts)} tried, 0 allowed",
    )


def test_lineage_tokens_are_pipeline_credentials_minted_by_admins(svc: Service) -> None:
    with pytest.raises(PermissionDenied, match="service principal"):
        svc.gatekeeper.tokens.create("alice", Scope.LINEAGE, created_by=actor("alice"))
    with pytest.raises(PermissionDenied, match="gatehouse-admins"):
        svc.gatekeeper.tokens.create("etl-bot", Scope.LINEAGE, created_by=actor("bob"))
    token, _ = svc.gatekeeper.tokens.create("etl-bot", Scope.LINEAGE, created_by=actor("frank"))
    assert token.scope is Scope.LINEAGE
    # a revoked lineage token is refused at once
    svc.gatekeeper.tokens.revoke(token.id, actor=actor("frank"))
    assert Scope.LINEAGE.allows(Scope.LINEAGE) and not Scope.ADMIN.allows(Scope.LINEAGE)
    assert not Scope.LINEAGE.allows(Scope.REQUEST)


def export_also_reading_payments(dag_id: str, run: str) -> dict[str, Any]:
    """The gated export task's event: it reads customers (approved) and payments, which no approval
    names; the pipeline declares no tags and spells the column oddly, and the server's catalog
    still finds payments pii."""
    return ol.airflow_task(
        dag_id,
        run,
        "export_customers",
        inputs=[
            ol.table(CUSTOMERS, ("id", "integer"), rows=3),
            ol.table(PAYMENTS, ("id", "integer"), ("Customer-EMail", "text"), rows=3),
        ],
    )


def test_an_under_declared_pii_read_is_still_one_violation(svc: Service) -> None:
    """The pipeline declares no tags and spells the column oddly: the server's catalog finds it."""
    run = run_id()
    gate_id = approved_gate(svc, "export_dag", run)
    event = export_also_reading_payments("export_dag", run)
    assert post(svc, event).json()["violations"] == 1
    assert post(svc, event).json()["violations"] == 0
    [found] = store_of(svc).violations().rows
    assert (found.gate_id, found.dataset, "pii" in found.tags) == (gate_id, f"{ol.PG}/{PAYMENTS}", True)


# ---------------------------------------------------------------- C: hostile bodies


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"n": value}
    return value


def _with(path: list[str], value: Any) -> dict[str, Any]:
    event = valid_event()
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


def _utf16_hiding(value: Any) -> bytes:
    event = _with(["run", "facets", "custom"], {"a": "\u4e22", "n": value, "b": "\u4e22"})
    return json.dumps(event, ensure_ascii=False).encode("utf-16-le")


def _bomb() -> bytes:
    return gzip.compress(b"[" + b" " * (40 * 1024 * 1024) + b"]")


HOSTILE: list[tuple[str, Callable[[], tuple[bytes, dict[str, str]]]]] = [
    ("not JSON", lambda: (b"{not json", {})),
    ("a JSON string", lambda: (b'"hello"', {})),
    (
        "no schemaURL",
        lambda: (json.dumps({k: v for k, v in valid_event().items() if k != "schemaURL"}).encode(), {}),
    ),
    (
        "unknown spec version",
        lambda: (
            json.dumps(_with(["schemaURL"], "https://openlineage.io/spec/9-0-0/OpenLineage.json")).encode(),
            {},
        ),
    ),
    (
        "foreign schema host",
        lambda: (
            json.dumps(_with(["schemaURL"], "https://evil.example/spec/2-0-2/OpenLineage.json")).encode(),
            {},
        ),
    ),
    ("runId not a UUID", lambda: (json.dumps(_with(["run", "runId"], "1; DROP TABLE")).encode(), {})),
    # Other spellings of one UUID: the receiver stores the runId as sent (lower-cased), so each
    # would be a second run for the same one — refused by the spec's canonical form instead.
    *(
        (f"runId {how}", lambda spelled=spelled: (json.dumps(_with(["run", "runId"], spelled)).encode(), {}))
        for how, spelled in (
            ("in braces", "{0176a8c2-fe01-7439-87e6-56a1a1b4029f}"),
            ("without hyphens", "0176a8c2fe01743987e656a1a1b4029f"),
            ("with a trailing newline", "0176a8c2-fe01-7439-87e6-56a1a1b4029f\n"),
            ("with a leading space", " 0176a8c2-fe01-7439-87e6-56a1a1b4029f"),
            ("as a URN", "urn:uuid:0176a8c2-fe01-7439-87e6-56a1a1b4029f"),
        )
    ),
    ("unknown eventType", lambda: (json.dumps(_with(["eventType"], "EXPLODE")).encode(), {})),
    ("eventTime not a time", lambda: (json.dumps(_with(["eventTime"], "yesterday")).encode(), {})),
    ("naive eventTime", lambda: (json.dumps(_with(["eventTime"], "2026-01-01T00:00:00")).encode(), {})),
    ("NUL in a job name", lambda: (json.dumps(_with(["job", "name"], "a\x00b")).encode(), {})),
    ("lone surrogate", lambda: (json.dumps(valid_event()).replace('"load"', '"\\ud800"').encode(), {})),
    (
        "negative row count",
        lambda: (
            json.dumps(
                _with(
                    ["inputs"],
                    [{"namespace": "n", "name": "t", "inputFacets": {"inputStatistics": {"rowCount": -5}}}],
                )
            ).encode(),
            {},
        ),
    ),
    (
        "nested 40 deep in a custom facet",
        lambda: (json.dumps(_with(["run", "facets", "custom"], _nested(40))).encode(), {}),
    ),
    ("nested 30000 deep", lambda: (b'{"a":' * 30_000 + b"1" + b"}" * 30_000, {})),
    # In UTF-16 a character such as U+4E22 is a quote byte and another: two of them around a
    # deep object once made the depth count (which reads the bytes) see it as text, 8 levels deep.
    ("UTF-16 body hiding 40 levels", lambda: (_utf16_hiding(_nested(40)), {})),
    ("UTF-16 body", lambda: (json.dumps(valid_event()).encode("utf-16"), {})),
    (
        "600 inputs",
        lambda: (
            json.dumps(_with(["inputs"], [{"namespace": "n", "name": f"t{i}"} for i in range(600)])).encode(),
            {},
        ),
    ),
    (
        "300 KiB event",
        lambda: (json.dumps(_with(["run", "facets", "pad"], {"x": "y" * 300_000})).encode(), {}),
    ),
    ("gzip bomb", lambda: (_bomb(), {"Content-Encoding": "gzip"})),
    ("broken gzip", lambda: (b"\x1f\x8b not gzip", {"Content-Encoding": "gzip"})),
    ("unsupported encoding", lambda: (json.dumps(valid_event()).encode(), {"Content-Encoding": "br"})),
]


@pytest.mark.parametrize(("name", "build"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_single_events_are_refused_with_nothing_stored(
    svc: Service, name: str, build: Callable[[], tuple[bytes, dict[str, str]]], report: Any
) -> None:
    body, headers = build()
    with svc.client("lineage") as client:
        response = client.post(
            "/api/v1/lineage", content=body, headers={"Content-Type": "application/json", **headers}
        )
    assert response.status_code in (413, 422), (name, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"]
    assert stored_rows(svc) == 0
    assert post(svc, valid_event()).status_code == 201  # the service is fine
    backend = "SQLite" if svc.settings.database_url.startswith("sqlite") else "PostgreSQL"
    report(
        f"Lineage receiver (C): hostile body '{name}' ({backend})", f"{response.status_code}, nothing stored"
    )


def test_oversized_and_hostile_batches_are_refused_whole(svc: Service) -> None:
    big = [valid_event() for _ in range(1001)]
    with svc.client("lineage") as client:
        too_big = client.post("/api/v1/lineage/batch", content=json.dumps(big).encode() * 1)
    assert too_big.status_code in (413, 422)
    assert post(svc, [], batch=True).status_code == 422
    assert post(svc, valid_event(), batch=True).status_code == 422  # an object is not a batch
    one_bad = [valid_event(), valid_event(), _with(["run", "runId"], "nope")]
    refused = post(svc, one_bad, batch=True)
    assert refused.status_code == 422 and refused.json()["detail"].startswith("event 2:")
    assert stored_rows(svc) == 0
    gz = gzip.compress(json.dumps([valid_event(), valid_event()]).encode())
    with svc.client("lineage") as client:
        ok = client.post(
            "/api/v1/lineage/batch",
            content=gz,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
    assert ok.status_code == 201 and ok.json()["received"] == 2


# ---------------------------------------------------------------- C: never contents

_json_leaf = st.one_of(st.integers(-(2**40), 2**40), st.booleans(), st.none(), st.text(max_size=8))
_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


def _sentinel_blob(sentinel: str) -> st.SearchStrategy[Any]:
    """Arbitrary JSON with the sentinel in keys and values at any depth (at most 6 deep)."""
    leaf = st.one_of(_json_leaf, st.just(sentinel), st.just(f"prefix {sentinel} suffix"))
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.one_of(_names, st.just(sentinel)), inner, max_size=4),
        ),
        max_leaves=12,
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_sentinel_in_any_facet_is_ever_stored(svc: Service, data: st.DataObject, report: Any) -> None:
    sentinel = f"SENTINEL{secrets.token_hex(6)}"
    blob = data.draw(_sentinel_blob(sentinel))
    run = run_id()
    event = ol.airflow_task(
        "sentinel_dag",
        run,
        "load",
        inputs=[ol.table(CUSTOMERS, ("id", "integer"), ("email", "varchar"), rows=5)],
        outputs=[ol.table("test.public.out", ("id", "integer"), rows=5, role="output")],
        conf={"secret_value": sentinel, "blob": blob},  # the DAG run's conf: anything a user typed
    )
    event["run"]["facets"]["custom_" + data.draw(_names)] = {"_producer": "x", "_schemaURL": "y", "v": blob}
    event["run"]["facets"]["errorMessage"] = {
        "_producer": "x",
        "_schemaURL": "y",
        "message": sentinel,
        "programmingLanguage": "python",
    }
    event["job"]["facets"]["sql"] = {"_producer": "x", "_schemaURL": "y", "query": f"SELECT '{sentinel}'"}
    dataset = event["inputs"][0]
    dataset["facets"]["dataSource"]["uri"] = f"postgres://user:{sentinel}@db:5432/test"
    dataset["facets"]["schema"]["fields"][1]["description"] = f"e.g. {sentinel}"
    dataset["facets"]["schema"]["fields"][1]["examples"] = blob
    dataset["facets"]["schema"][data.draw(_names) + "_extra"] = blob
    dataset["facets"]["custom_" + data.draw(_names)] = {"_producer": "x", "_schemaURL": "y", "v": blob}
    dataset["facets"]["tags"] = {
        "_producer": "x",
        "_schemaURL": "y",
        "tags": [{"key": "classification", "value": f"{sentinel} said so", "source": sentinel}],
    }
    dataset["inputFacets"]["dataQualityAssertions"] = {
        "_producer": "x",
        "_schemaURL": "y",
        "assertions": [{"assertion": sentinel, "success": True}],
    }
    dataset["inputFacets"]["inputStatistics"]["note"] = blob
    output = event["outputs"][0]
    output["facets"]["columnLineage"] = {
        "_producer": "x",
        "_schemaURL": "y",
        "fields": {
            "id": {
                "inputFields": [
                    {
                        "namespace": ol.PG,
                        "name": CUSTOMERS,
                        "field": "id",
                        "transformations": [{"type": "DIRECT", "description": sentinel}],
                    }
                ],
                "transformationDescription": sentinel,
            }
        },
    }
    response = post(svc, event)
    assert response.status_code == 201, response.text
    assert store_of(svc).run(run).rows  # it was recorded…
    assert sentinel not in database_text(svc)  # …and nothing of the facets' contents was
    backend = "SQLite" if svc.settings.database_url.startswith("sqlite") else "PostgreSQL"
    report(f"Lineage receiver (C): sentinels in arbitrary facets found stored ({backend})", 0)


def test_brackets_inside_strings_are_not_nesting(svc: Service) -> None:
    """The depth limit reads the body's structure, not text that looks like it (escaped quotes too)."""
    event = _with(["run", "facets", "note"], {"text": '"\\' + "[{" * 200 + '\\"]}' * 3})
    assert post(svc, event).status_code == 201
    assert post(svc, _with(["run", "facets", "deep"], _nested(31))).status_code == 422


def test_every_escape_is_read_whole_by_the_depth_count(svc: Service) -> None:
    """Escapes other than quotes (\\u001f, \\n, \\\\) neither hide structure nor invent it: a body
    whose strings hold them is counted as deep as it is (an escaped control character once made
    the count skip the brackets up to the next quote, so too deep an event went through)."""
    escapes = ["\x1f", "line\nbreak", "back\\slash", 'quote"d']
    shallow = _with(["run", "facets", "note"], {"a": escapes, "b": {"c": [1, {"d": "x\x1f"}]}})
    assert post(svc, shallow).status_code == 201
    deep = _with(["run", "facets", "deep"], {"x": escapes, "n": _nested(31)})
    assert post(svc, deep).status_code == 422


def test_gates_that_name_a_run_elsewhere_do_not_hide_that_runs_own_gate(svc: Service, report: Any) -> None:
    """P opens, with its own pipeline token and in its own DAG's run, 250 gates whose parameters
    say ``{"run_id": <a run id of another DAG>}`` (scheduled run ids are predictable, so this can
    come first). The receiver once found a run's gates by searching the gates' request JSON for
    ``"run_id":"…"``, at most 200 hits per run: the flood filled them, the run's real gate went
    unseen, and its unapproved pii read made no violation."""
    run = run_id()
    flood = {
        "action": "refresh",
        "requester": "alice",
        "parameters": {"run_id": run},
        "run": {"orchestrator": "airflow", "pipeline": "p_own_dag", "run_id": "p_own_run"},
    }
    with svc.client("bot") as bot:
        for _ in range(250):
            opened = bot.post("/v1/gates", json=flood)
            assert opened.status_code == 200, opened.text
    gate_id = approved_gate(svc, "victim_dag", run)
    event = export_also_reading_payments("victim_dag", run)
    assert post(svc, event).json()["violations"] == 1
    [found] = store_of(svc).violations().rows
    assert (found.gate_id, found.dataset) == (gate_id, f"{ol.PG}/{PAYMENTS}")
    backend = "SQLite" if svc.settings.database_url.startswith("sqlite") else "PostgreSQL"
    report(
        f"Lineage receiver (P): 250 gates naming another DAG's run hide its gate ({backend})",
        "no: 1 violation",
    )


def _under(event: dict[str, Any], ol_run_id: str) -> dict[str, Any]:
    """``event`` posted under another OpenLineage runId (the ``airflow`` facet's taskUuid too)."""
    event["run"]["runId"] = ol_run_id
    event["run"]["facets"]["airflow"]["taskUuid"] = ol_run_id
    return event


def test_a_predictable_run_id_claimed_first_for_a_decoy_run_hides_nothing(svc: Service, report: Any) -> None:
    """Airflow's OpenLineage provider names a task run with a UUID built from dag id, task id,
    try number, logical date and map index (``build_task_instance_ol_run_id``): for a scheduled
    run it is known in advance. P posts first, under that runId, an event whose ``airflow`` facet
    names a decoy DAG run. The receiver kept the first run a runId came with: the real task's
    events, and the Spark job it launched, were recorded in the decoy run, and the gated run's
    unapproved pii reads made no violation."""
    from airflow.providers.openlineage.utils.utils import build_task_instance_ol_run_id
    from openlineage.client.event_v2 import RunState

    logical = datetime(2026, 12, 7, tzinfo=UTC)
    run = f"scheduled__{logical.isoformat()}"
    ol_run = build_task_instance_ol_run_id(
        dag_id="victim_dag", task_id="export_customers", try_number=1, logical_date=logical, map_index=-1
    )
    decoy = _under(ol.airflow_task("decoy_dag", "decoy_run", "noop", state=RunState.START), ol_run)
    assert post(svc, decoy).status_code == 201
    gate_id = approved_gate(svc, "victim_dag", run)
    real = export_also_reading_payments("victim_dag", run)
    assert post(svc, _under(real, ol_run)).json()["violations"] == 2  # the pii read, and the contest
    spark = ol.spark(
        ol_run, "victim_dag.export_customers", inputs=[ol.table(LEADS, ("email", "text"), rows=9)], outputs=[]
    )
    assert post(svc, spark).json()["violations"] == 1
    found = store_of(svc).violations().rows
    assert sorted((v.gate_id, v.kind, v.dataset) for v in found) == [
        (gate_id, "contested_run", f"openlineage run {ol_run}"),
        (gate_id, "unapproved_dataset", f"{ol.PG}/{LEADS}"),
        (gate_id, "unapproved_dataset", f"{ol.PG}/{PAYMENTS}"),
    ]
    [contest] = [v for v in found if v.kind == "contested_run"]
    assert "decoy_dag run decoy_run" in contest.detail
    assert {r.run_id for r in store_of(svc).accessed(f"{ol.PG}/{PAYMENTS}").rows} == {run}
    backend = "SQLite" if svc.settings.database_url.startswith("sqlite") else "PostgreSQL"
    report(
        f"Lineage receiver (P): a task's runId claimed first for a decoy run hides its reads ({backend})",
        "no: 2 of 2 reads found, and the contest itself",
    )


def test_an_access_posted_first_under_a_decoy_run_does_not_replace_the_real_runs_record(svc: Service) -> None:
    """P pre-posts, under the victim task's predictable runId and with its job name, the very read
    the task will make — but in a decoy DAG run. An access's id hashed runId, job, dataset,
    operation and phase only, so the real read was "already recorded": governance queries showed
    the payments read in the decoy run, and never in the gated one."""
    from airflow.providers.openlineage.utils.utils import build_task_instance_ol_run_id

    logical = datetime(2026, 12, 8, tzinfo=UTC)
    run = f"scheduled__{logical.isoformat()}"
    ol_run = build_task_instance_ol_run_id(
        dag_id="victim_dag", task_id="export_customers", try_number=1, logical_date=logical, map_index=-1
    )
    payments = ol.table(PAYMENTS, ("id", "integer"), ("Customer-EMail", "text"), rows=3)
    decoy = _under(ol.airflow_task("decoy_dag", "decoy_run", "export_customers", inputs=[payments]), ol_run)
    decoy["job"]["name"] = "victim_dag.export_customers"
    assert post(svc, decoy).json()["recorded"] == 1
    approved_gate(svc, "victim_dag", run)
    real = _under(ol.airflow_task("victim_dag", run, "export_customers", inputs=[payments]), ol_run)
    assert post(svc, real).json() == {"received": 1, "recorded": 1, "violations": 2}  # pii read, contest
    rows = store_of(svc).accessed(f"{ol.PG}/{PAYMENTS}").rows
    assert sorted(r.run_id for r in rows) == sorted(["decoy_run", run])
    assert post(svc, real).json()["recorded"] == 0  # a retried event is still stored once


def test_a_decoy_claim_with_a_gate_of_its_own_learns_nothing_of_the_real_run(svc: Service) -> None:
    """P, with its own lineage credential (another principal), opens a gate in a decoy run and
    claims the victim task's predictable runId for it first. The victim's events — the task's own,
    and its Spark job's, both posted with the victim pipeline's credential — are recorded and
    checked in the victim run only: P's gate hears of the contest, never of what the victim read."""
    from airflow.providers.openlineage.utils.utils import build_task_instance_ol_run_id

    from gate_core import Actor, AuthMethod
    from lineage._ol_events import reduce, validate

    ingest = svc.app.state.gatehouse_openlineage

    def send(principal: str, event: dict[str, Any]) -> int:
        seen = [reduce(event, validate(event)[1])]
        return len(ingest.ingest(seen, Actor(principal_id=principal, via=AuthMethod.API_TOKEN)).violations)

    logical = datetime(2026, 12, 9, tzinfo=UTC)
    run = f"scheduled__{logical.isoformat()}"
    ol_run = build_task_instance_ol_run_id(
        dag_id="victim_dag", task_id="export_customers", try_number=1, logical_date=logical, map_index=-1
    )
    decoy_gate = approved_gate(svc, "decoy_dag", "decoy_run")
    assert send("p-bot", _under(ol.airflow_task("decoy_dag", "decoy_run", "noop"), ol_run)) == 0
    victim_gate = approved_gate(svc, "victim_dag", run)
    assert send("etl-bot", _under(export_also_reading_payments("victim_dag", run), ol_run)) == 3
    spark = ol.spark(
        ol_run, "victim_dag.export_customers", inputs=[ol.table(LEADS, ("email", "text"), rows=9)], outputs=[]
    )
    assert send("etl-bot", spark) == 1
    found = store_of(svc).violations().rows
    assert sorted((v.gate_id == victim_gate, v.kind, v.dataset) for v in found) == [
        (False, "contested_run", f"openlineage run {ol_run}"),
        (True, "contested_run", f"openlineage run {ol_run}"),
        (True, "unapproved_dataset", f"{ol.PG}/{LEADS}"),
        (True, "unapproved_dataset", f"{ol.PG}/{PAYMENTS}"),
    ]
    assert {v.gate_id for v in found} == {victim_gate, decoy_gate}
    for dataset in (PAYMENTS, LEADS):
        assert {r.run_id for r in store_of(svc).accessed(f"{ol.PG}/{dataset}").rows} == {run}


def test_a_parent_run_id_in_capitals_is_the_same_run(svc: Service) -> None:
    """The event's own runId is kept lower-cased; a Spark job naming its parent in capitals once
    matched no claim, became a run of its own, and its reads were checked against nothing."""
    run = run_id()
    approved_gate(svc, "caps_dag", run)
    task = ol.airflow_task("caps_dag", run, "submit")
    assert post(svc, task).status_code == 201
    spark = ol.spark(
        task["run"]["runId"].upper(),
        "caps_dag.submit",
        inputs=[ol.table(LEADS, ("email", "text"))],
        outputs=[],
    )
    assert post(svc, spark).json()["violations"] == 1
