"""The OpenLineage receiver on the real service over a socket (SQLite and PostgreSQL): Airflow,
Spark-launched-by-Airflow and dbt events in the OpenLineage project's published shapes join the
gate of their run; a gated run that touches more than its approval covers gives exactly one
``out_of_scope`` finding — stored, audited with control ids, sent to the rule's webhook, and shown
by the CLI, the API and the console — and a run that stays in scope gives none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gate_core import DatasetRef, GateRequest, RunContext, Scope, Settings, SqlStore
from gate_core._audit import control_ids
from gate_core.service import ServiceConfig
from gate_core.testing import actor
from lineage import LineageStore
from tests.lineage import ol_shapes as ol
from tests.service.conftest import Service
from tests.service.http_receiver import HttpReceiver
from tests.service.test_console import browser, sign_in

CUSTOMERS = "test.public.customers"
PAYMENTS = "test.public.payments"
EXPORT = "test.public.customers_export"
CUSTOMER_COLUMNS = (("id", "integer"), ("email", "varchar"), ("country", "varchar"))


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def svc(service_factory: Callable[..., Service], service_settings: Settings, hook: HttpReceiver) -> Service:
    """The service with the example policy's pii-export rule notifying a signed webhook."""
    return start_with_webhook(service_factory, service_settings, hook)


def start_with_webhook(
    service_factory: Callable[..., Service], settings: Settings, hook: HttpReceiver
) -> Service:
    policy = settings.policy_path
    text = policy.read_text(encoding="utf-8")
    policy.write_text(
        text.replace('notify: ["slack:#data-approvals"]', 'notify: ["webhook:siem"]', 1), encoding="utf-8"
    )
    config = ServiceConfig(
        public_url="http://127.0.0.1",
        sweep_interval_s=0.2,
        notifiers={
            "webhook": {"type": "webhook", "endpoints": {"siem": {"url": f"{hook.url}/siem", "secret": "s3"}}}
        },
    )
    service = service_factory(config, local_signin=True)
    service.tokens["lineage"] = service.gatekeeper.tokens.create(
        "etl-bot", Scope.LINEAGE, created_by=actor("frank")
    )[1]
    return service


def approved_gate(
    service: Service,
    dag_id: str,
    run_id: str,
    *,
    datasets: tuple[str, ...] = (CUSTOMERS,),
    target: str = EXPORT,
) -> str:
    """A gate opened by the DAG's gate task, approved by bob (data-governance) and consumed."""
    request = GateRequest(
        action="export",
        target=f"{ol.PG}/{target}",
        datasets=tuple(DatasetRef(namespace=ol.PG, name=d, tags=frozenset({"pii"})) for d in datasets),
        requester="dave",
        run=RunContext(orchestrator="airflow", pipeline=dag_id, run_id=run_id, task_id="approve_export"),
        reason="monthly export",
    )
    gate = service.gatekeeper.open(request, submitted_by=actor("etl-bot"))
    service.gatekeeper.approve(gate.id, actor=actor("bob"))
    service.gatekeeper.consume(gate.id, actor=actor("etl-bot"), binding_hash=request.binding_hash())
    return gate.id


def post(service: Service, body: Any, *, batch: bool = False, who: str = "lineage") -> httpx.Response:
    with service.client(who) as client:
        return client.post("/api/v1/lineage/batch" if batch else "/api/v1/lineage", json=body)


def store_of(service: Service) -> LineageStore:
    assert isinstance(service.gatekeeper.store, SqlStore)
    return LineageStore.for_gate_store(service.gatekeeper.store, migrate=False)


def sql_task(
    dag_id: str, run_id: str, *reads: str, writes: str = EXPORT, state: Any = None
) -> dict[str, Any]:
    from openlineage.client.event_v2 import RunState

    return ol.airflow_task(
        dag_id,
        run_id,
        "export_customers",
        state=state or RunState.COMPLETE,
        inputs=[ol.table(r, *CUSTOMER_COLUMNS, rows=42) for r in reads],
        outputs=[ol.table(writes, ("id", "integer"), ("email", "varchar"), rows=42, role="output")],
    )


def run_id() -> str:
    return f"manual__{datetime.now(UTC).isoformat()}_{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------- joins


def test_airflow_task_events_join_the_gate_of_their_dag_run(svc: Service) -> None:
    from openlineage.client.event_v2 import RunState

    run = run_id()
    gate_id = approved_gate(svc, "export_dag", run)
    start = sql_task("export_dag", run, CUSTOMERS, state=RunState.START)
    complete = sql_task("export_dag", run, CUSTOMERS)
    first = post(svc, start)
    assert first.status_code == 201, first.text
    assert first.json() == {"received": 1, "recorded": 2, "violations": 0}
    assert post(svc, complete).json()["recorded"] == 2
    assert post(svc, complete).json()["recorded"] == 0  # a retried event is stored once
    rows = store_of(svc).run(run, orchestrator="airflow").rows
    assert {(r.dataset, r.operation.value) for r in rows} == {
        (f"{ol.PG}/{CUSTOMERS}", "read"),
        (f"{ol.PG}/{EXPORT}", "export"),  # an output of an export-gated run is an export
    }
    assert {(r.pipeline, r.task_id, r.gate_id, r.approval) for r in rows} == {
        ("export_dag", "export_customers", gate_id, "CONSUMED")
    }
    assert len(rows) == 4  # START and COMPLETE: two observations per dataset, never more
    read = next(r for r in rows if r.operation.value == "read" and r.row_count is not None)
    assert read.row_count == 42 and "pii" in read.tags  # statistics kept; the catalog's detectors classify
    # the existing governance queries see them
    assert {r.gate_id for r in store_of(svc).gate(gate_id).rows} == {gate_id}
    assert store_of(svc).exports("pii").rows[0].dataset == f"{ol.PG}/{EXPORT}"
    assert store_of(svc).violations().rows == []


def test_spark_launched_by_the_airflow_task_joins_through_its_parent_facet(svc: Service) -> None:
    run = run_id()
    gate_id = approved_gate(svc, "spark_dag", run)
    task = ol.airflow_task("spark_dag", run, "submit")
    spark = ol.spark(
        task["run"]["runId"],
        "spark_dag.submit",
        inputs=[ol.table(CUSTOMERS, ("id", "integer"))],
        outputs=[ol.table(EXPORT, ("customer_id", "integer"), rows=7, role="output")],
    )
    response = post(svc, [task, spark], batch=True)
    assert response.status_code == 201, response.text
    rows = store_of(svc).run(run).rows
    assert {(r.dataset, r.task_id, r.gate_id) for r in rows} == {
        (f"{ol.PG}/{CUSTOMERS}", "submit", gate_id),
        (f"{ol.PG}/{EXPORT}", "submit", gate_id),
    }
    # column lineage kept as edges (which field feeds which), nothing about the values
    with svc.gatekeeper.store.engine.connect() as conn:  # type: ignore[attr-defined]
        from sqlalchemy import select

        from lineage._schema import column_edges

        edges = {tuple(r[:4]) for r in conn.execute(select(column_edges))}
    assert (f"{ol.PG}/{EXPORT}", "customer_id", f"{ol.PG}/{CUSTOMERS}", "id") in edges


def test_spark_whose_parent_task_was_posted_earlier_still_joins(svc: Service) -> None:
    run = run_id()
    gate_id = approved_gate(svc, "spark_dag", run)
    task = ol.airflow_task("spark_dag", run, "submit")
    assert post(svc, task).status_code == 201
    spark = ol.spark(
        task["run"]["runId"], "spark_dag.submit", inputs=[ol.table(CUSTOMERS, ("id", "integer"))], outputs=[]
    )
    assert post(svc, spark).json()["recorded"] == 1
    assert [r.gate_id for r in store_of(svc).run(run).rows] == [gate_id]


def test_a_retried_child_event_is_stored_once_even_after_a_gate_opened_in_its_parents_run(
    svc: Service,
) -> None:
    """A parent runId claimed for two runs by the same sender: its child's access is recorded under
    a gated claim if there is one. A gate opening between a Spark event and its retry changed that
    choice, and with it the access's id: the retry was stored a second time."""
    first, second = run_id(), run_id()
    task = ol.airflow_task("spark_dag", first, "submit")
    again = ol.airflow_task("spark_dag", second, "submit")
    again["run"]["runId"] = again["run"]["facets"]["airflow"]["taskUuid"] = task["run"]["runId"]
    assert post(svc, [task, again], batch=True).status_code == 201
    spark = ol.spark(
        task["run"]["runId"], "spark_dag.submit", inputs=[ol.table(CUSTOMERS, ("id", "integer"))], outputs=[]
    )
    assert post(svc, spark).json()["recorded"] == 1
    approved_gate(svc, "spark_dag", second)
    retried = post(svc, spark).json()
    assert retried["recorded"] == 0, retried
    assert retried["violations"] == 0  # still checked against the new gate: customers is approved
    reads = store_of(svc).accessed(f"{ol.PG}/{CUSTOMERS}").rows
    assert len([r for r in reads if r.run_id in (first, second) and r.task_id == "submit"]) == 1


def test_dbt_under_airflow_joins_through_two_parents_and_standalone_dbt_is_its_own_run(svc: Service) -> None:
    run = run_id()
    gate_id = approved_gate(svc, "dbt_dag", run)
    task = ol.airflow_task("dbt_dag", run, "dbt_build")
    dbt_run_id = str(uuid.uuid4())
    events = [
        task,
        ol.dbt_run(task["run"]["runId"], "dbt_dag.dbt_build", dbt_run_id),
        ol.dbt_model(
            dbt_run_id,
            "customers_export",
            inputs=[ol.table(CUSTOMERS, ("id", "integer"))],
            outputs=[ol.table(EXPORT, ("id", "integer"), role="output")],
        ),
    ]
    assert post(svc, events, batch=True).status_code == 201
    rows = store_of(svc).run(run).rows
    assert {(r.orchestrator, r.task_id, r.gate_id) for r in rows} == {("airflow", "dbt_build", gate_id)}
    assert len(rows) == 2

    alone = str(uuid.uuid4())
    model = ol.dbt_model(
        alone, "orders", inputs=[ol.table("test.public.raw_orders", ("id", "integer"))], outputs=[]
    )
    assert post(svc, [ol.dbt_run(None, None, alone), model], batch=True).status_code == 201
    [row] = store_of(svc).run(alone).rows
    assert (row.orchestrator, row.pipeline, row.task_id, row.gate_id) == (
        "openlineage",
        "dbt/dbt-run-jaffle_shop",
        "test.public.orders",
        None,
    )


def test_dataset_and_job_events_are_taken_in(svc: Service) -> None:
    response = post(
        svc,
        [
            ol.dataset_event("test.public.static_ref", ("code", "varchar")),
            ol.job_event(
                "reports.nightly", inputs=[ol.table("test.public.sales", ("id", "integer"))], outputs=[]
            ),
        ],
        batch=True,
    )
    assert response.json() == {"received": 2, "recorded": 2, "violations": 0}
    assert store_of(svc).accessed(f"{ol.PG}/test.public.static_ref").rows[0].operation.value == "read"


def test_bodies_only_the_standard_library_reads_are_taken_as_before(svc: Service) -> None:
    """orjson reads the bodies producers send; what it refuses and ``json.loads`` takes is still
    taken: openlineage-python's ``json.dumps`` writes NaN and Infinity for float metrics in a
    facet. A body in UTF-16, which ``json.loads`` would also read, is refused: JSON between
    systems is UTF-8 (RFC 8259), and the depth count reads UTF-8 bytes."""
    run = run_id()
    with_nan = sql_task("nan_dag", run, CUSTOMERS)
    with_nan["run"]["facets"]["metrics"] = {"mean": float("nan"), "max": float("inf")}
    utf16 = sql_task("utf16_dag", run_id(), PAYMENTS)
    with svc.client("lineage") as client:
        headers = {"Content-Type": "application/json"}
        response = client.post("/api/v1/lineage", content=json.dumps(with_nan).encode(), headers=headers)
        assert response.json() == {"received": 1, "recorded": 2, "violations": 0}, response.text
        refused = client.post("/api/v1/lineage", content=json.dumps(utf16).encode("utf-16"), headers=headers)
        assert refused.status_code == 422 and "not UTF-8" in refused.json()["detail"]
    assert {r.dataset for r in store_of(svc).run(run, orchestrator="airflow").rows} == {
        f"{ol.PG}/{CUSTOMERS}",
        f"{ol.PG}/{EXPORT}",
    }


# ---------------------------------------------------------------- scope check


def audit_of(service: Service, event: str) -> list[dict[str, Any]]:
    with service.client("admin") as client:
        lines = client.get("/v1/audit/export").text.splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


def cli(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GATEHOUSE_HOME": str(service.settings.home),
        "GATEHOUSE_DATABASE_URL": service.settings.database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "gate_core.cli", "lineage", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_a_gated_export_that_also_reads_an_unapproved_pii_table_is_one_violation_everywhere(
    svc: Service, hook: HttpReceiver
) -> None:
    from openlineage.client.event_v2 import RunState

    run = run_id()
    gate_id = approved_gate(svc, "export_dag", run)
    start = sql_task("export_dag", run, CUSTOMERS, PAYMENTS, state=RunState.START)
    complete = sql_task("export_dag", run, CUSTOMERS, PAYMENTS)
    assert post(svc, start).json()["violations"] == 1
    second = post(svc, complete).json()["violations"]
    assert second == 0  # the same finding: not a second one
    assert post(svc, [start, complete], batch=True).json()["violations"] == 0

    # API
    with svc.client("alice") as client:
        found = client.get("/v1/lineage/violations", params={"since": "1h"}).json()["rows"]
    assert [(v["gate_id"], v["kind"], v["dataset"], v["operation"]) for v in found] == [
        (gate_id, "unapproved_dataset", f"{ol.PG}/{PAYMENTS}", "read")
    ]
    assert "pii" in found[0]["tags"] and found[0]["run_id"] == run
    # CLI
    done = cli(svc, "violations", "--since", "1h", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert [v["dataset"] for v in json.loads(done.stdout)["rows"]] == [f"{ol.PG}/{PAYMENTS}"]
    table = cli(svc, "violations", "--since", "1h")
    assert "unapproved_dataset" in table.stdout and "1 out-of-scope finding(s)" in table.stdout
    # console
    with browser(svc) as client:
        sign_in(client, "bob")
        page = client.get("/console/lineage/violations")
        assert page.status_code == 200
        assert f"{ol.PG}/{PAYMENTS}" in page.text and gate_id in page.text
        assert page.text.count("unapproved_dataset") == 1
    # audit: one event, with its control ids
    [entry] = audit_of(svc, "lineage.out_of_scope")
    assert entry["gate"] == gate_id and entry["payload"]["dataset"] == f"{ol.PG}/{PAYMENTS}"
    assert entry["controls"] == {k: list(v) for k, v in control_ids("lineage.out_of_scope").items()}
    assert "CC7.2" in entry["controls"]["soc2"] and "SI-4" in entry["controls"]["nist80053"]
    # the rule's notify target: exactly one signed delivery of the finding
    svc.drain()
    alerts = [
        r for r in hook.requests("/siem") if r.headers.get("X-Gatehouse-Event") == "lineage.out_of_scope"
    ]
    assert len(alerts) == 1
    body = alerts[0].json()
    assert body["gate"]["id"] == gate_id and body["alert"]["dataset"] == f"{ol.PG}/{PAYMENTS}"


def test_a_run_that_stays_in_scope_makes_no_violation(svc: Service, hook: HttpReceiver) -> None:
    run = run_id()
    approved_gate(svc, "export_dag", run)
    assert post(svc, sql_task("export_dag", run, CUSTOMERS)).json()["violations"] == 0
    assert store_of(svc).violations().rows == []
    assert audit_of(svc, "lineage.out_of_scope") == []
    svc.drain()
    assert not [
        r for r in hook.requests("/siem") if r.headers.get("X-Gatehouse-Event") == "lineage.out_of_scope"
    ]


def test_a_write_elsewhere_and_an_access_after_expiry_are_findings(svc: Service) -> None:
    run = run_id()
    gate_id = approved_gate(svc, "export_dag", run)
    elsewhere = sql_task("export_dag", run, CUSTOMERS, writes="test.public.somewhere_else")
    assert post(svc, elsewhere).json()["violations"] == 1
    late = ol.airflow_task(
        "export_dag",
        run,
        "late_task",
        at=datetime.now(UTC) + timedelta(hours=5),
        inputs=[ol.table(CUSTOMERS, ("id", "integer"))],
    )
    assert post(svc, late).json()["violations"] == 1
    kinds = {(v.kind, v.dataset) for v in store_of(svc).violations(gate_id=gate_id).rows}
    assert kinds == {
        ("unapproved_target", f"{ol.PG}/test.public.somewhere_else"),
        ("after_approval", f"{ol.PG}/{CUSTOMERS}"),
    }


def test_a_run_whose_gate_was_rejected_finds_every_output_unapproved(svc: Service) -> None:
    run = run_id()
    request = GateRequest(
        action="export",
        target=f"{ol.PG}/{EXPORT}",
        datasets=(DatasetRef(namespace=ol.PG, name=CUSTOMERS, tags=frozenset({"pii"})),),
        requester="dave",
        run=RunContext(orchestrator="airflow", pipeline="export_dag", run_id=run, task_id="approve_export"),
    )
    gate = svc.gatekeeper.open(request, submitted_by=actor("etl-bot"))
    svc.gatekeeper.reject(gate.id, actor=actor("bob"), reason="no")
    assert post(svc, sql_task("export_dag", run, CUSTOMERS)).json()["violations"] == 2
    assert {v.kind for v in store_of(svc).violations().rows} == {"not_approved"}


def test_a_finding_reaches_the_rules_slack_channel_once_and_escaped(
    service_factory: Callable[..., Service], service_settings: Settings
) -> None:
    """The example rule notifies slack:#data-approvals: the finding is posted there once, and a
    dataset name that tries a Slack mention is shown as text."""
    from gate_core.service.notify._slack import SlackConfig
    from tests.service.slack_standin import SlackStandIn

    with SlackStandIn(token="xoxb-i22", users={}) as slack:
        config = ServiceConfig(
            public_url="http://127.0.0.1",
            slack=SlackConfig(bot_token="xoxb-i22", signing_secret="s" * 32, api_url=slack.api_url),
        )
        svc = service_factory(config)
        svc.tokens["lineage"] = svc.gatekeeper.tokens.create(
            "etl-bot", Scope.LINEAGE, created_by=actor("frank")
        )[1]
        run = run_id()
        approved_gate(svc, "export_dag", run)
        sneaky = "test.public.payments_<!channel>"
        assert post(svc, sql_task("export_dag", run, CUSTOMERS, sneaky)).json()["violations"] == 1
        assert post(svc, sql_task("export_dag", run, CUSTOMERS, sneaky)).json()["violations"] == 0
        call = slack.wait_for("chat.postMessage", lambda c: "Out of scope" in c.text)
        svc.drain()
        assert len([c for c in slack.calls("chat.postMessage") if "Out of scope" in c.text]) == 1
        assert "&lt;!channel&gt;" in call.text and "<!channel>" not in call.text
        assert "unapproved_dataset" in call.text


def test_a_finding_reaches_the_rules_teams_conversation_once(
    service_factory: Callable[..., Service], service_settings: Settings
) -> None:
    """The rule notifies a Teams bot conversation: the finding is one alert card there, sent
    through the Bot Connector (stand-in at the wire), naming the table, the gate and the run."""
    from tests.service.teams_standin import BotConnectorStandIn
    from tests.service.test_teams_bot import APP_ID, APP_PASSWORD, CONVERSATION, TENANT, bot_entry

    policy = service_settings.policy_path
    text = policy.read_text(encoding="utf-8")
    policy.write_text(text.replace('"slack:#data-approvals"', '"teamsbot:governance"', 1), encoding="utf-8")
    with BotConnectorStandIn(
        app_id=APP_ID, app_password=APP_PASSWORD, tenant_id=TENANT, members={}, conversation_id=CONVERSATION
    ) as connector:
        config = ServiceConfig(public_url="http://127.0.0.1", notifiers={"teamsbot": bot_entry(connector)})
        svc = service_factory(config)
        svc.tokens["lineage"] = svc.gatekeeper.tokens.create(
            "etl-bot", Scope.LINEAGE, created_by=actor("frank")
        )[1]
        run = run_id()
        gate_id = approved_gate(svc, "export_dag", run)
        assert post(svc, sql_task("export_dag", run, CUSTOMERS, PAYMENTS)).json()["violations"] == 1
        assert post(svc, sql_task("export_dag", run, CUSTOMERS, PAYMENTS)).json()["violations"] == 0
        call = connector.wait_for("POST", lambda c: "Out of scope" in c.text)
        svc.drain()
        assert len([c for c in connector.calls("POST") if "Out of scope" in c.text]) == 1
        assert call.status == 201 and call.path == f"/smba/amer/v3/conversations/{CONVERSATION}/activities"
        said = {
            f["title"]: f["value"] for b in call.card["body"] if b["type"] == "FactSet" for f in b["facts"]
        }
        assert said["Finding"] == r"unapproved\_dataset" and said["Operation"] == "read"
        assert said["Dataset"] == rf"{ol.PG}/test.public.payments" and "pii" in said["Tags"]
        assert said["Gate"] == f"{gate_id} (CONSUMED)"
        assert r"airflow: export\_dag / " in said["Run"] and said["Run"].endswith(r"export\_customers")
        assert call.card["actions"][0]["url"] == f"http://127.0.0.1/console/gates/{gate_id}"
