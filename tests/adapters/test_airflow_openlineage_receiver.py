"""Acceptance of issue 22 on real Airflow 3: a DAG whose SQL task runs against the local
PostgreSQL, with **Airflow's own OpenLineage provider** configured only by ``OPENLINEAGE_URL`` and
``OPENLINEAGE_API_KEY`` (a ``lineage`` token of the pipeline's service principal) to post to a
real ``gatehouse serve``. The SQL task makes no Gatehouse call: its input and output tables reach
Gatehouse through the provider's SQL lineage, and are linked to the gate of the same DAG run. A
second run that also reads a pii table the approval did not name gives exactly one violation.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gate_core import Scope, Settings, open_gatekeeper
from gate_core.testing import actor
from lineage import LineageStore
from tests.adapters.contract import Live, unique
from tests.adapters.test_airflow import (  # noqa: F401 - fixtures
    AirflowHome,
    AirflowRunner,
    airflow_home,
    start_runner,
)

pytestmark = pytest.mark.slow
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
NAMESPACE = "postgres://127.0.0.1:5432"

DAG_FILE = """
from datetime import datetime

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import DAG

from airflow_provider import GateOperator

with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         default_args={{"owner": "alice"}}) as dag:
    approve = GateOperator(
        task_id="approve_export",
        action="export",
        target={target!r},
        datasets=[{approved!r}],
        reason="monthly export",
    )
    export = SQLExecuteQueryOperator(
        task_id="export_customers",
        conn_id="pg_issue22",
        sql={sql!r},
    )
    approve >> export
"""


@pytest.fixture(scope="module")
def schema() -> Iterator[str]:
    """Tables of our own in the shared test database (a unique schema: parallel helpers share it)."""
    name = f"i22_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
        conn.execute(f"CREATE TABLE {name}.customers (id integer, email text, region text)")
        conn.execute(f"CREATE TABLE {name}.payments (customer_id integer, card_number text, amount numeric)")
        conn.execute(f"CREATE TABLE {name}.customers_export (id integer, region text)")
        conn.execute(
            f"INSERT INTO {name}.customers VALUES (1, 'a@example.com', 'emea'), (2, 'b@example.com', 'apac')"
        )
        conn.execute(f"INSERT INTO {name}.payments VALUES (1, '4111111111111111', 10)")
    yield name
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture(scope="module")
def ol_runner(
    airflow_home: AirflowHome,  # noqa: F811 - the fixture imported above
    live: Live,
    live_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AirflowRunner]:
    gatekeeper = open_gatekeeper(live_settings)
    _, lineage_token = gatekeeper.tokens.create("etl-bot", Scope.LINEAGE, created_by=actor("frank"))
    gatekeeper.store.close()
    runner = start_runner(
        airflow_home,
        live,
        tmp_path_factory.mktemp("ol-receiver-runs"),
        "ol-receiver",
        AIRFLOW__OPENLINEAGE__DISABLED="False",
        OPENLINEAGE_URL=live.base_url,
        OPENLINEAGE_API_KEY=lineage_token,
        AIRFLOW_CONN_PG_ISSUE22=POSTGRES,
    )
    yield runner
    runner.close()


def write_dag(home: AirflowHome, dag_id: str, schema: str, sql: str) -> str:
    source = DAG_FILE.format(
        dag_id=dag_id,
        target=f"{NAMESPACE}/test.{schema}.customers_export",
        approved=f"{NAMESPACE}/test.{schema}.customers#pii",
        sql=sql,
    )
    path: Path = home.dags / f"{dag_id}.py"
    path.write_text(source, encoding="utf-8")
    return path.name


def wait_for_rows(settings: Settings, run_id: str, want: int, timeout: float = 120.0) -> list[object]:
    store = LineageStore.open(settings.database_url, migrate=False)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = store.run(run_id, orchestrator="airflow").rows
            if len({(r.dataset, r.operation) for r in rows}) >= want or time.monotonic() > deadline:
                return list(rows)
            time.sleep(0.5)
    finally:
        store.close()


def run_gated_sql(
    runner: AirflowRunner, home: AirflowHome, live: Live, schema: str, sql: str
) -> tuple[str, dict[str, object], str]:
    dag_id = unique("ol_sql").replace("-", "_")
    dag_file = write_dag(home, dag_id, schema, sql)
    run = runner.submit({"run_key": dag_id, "kind": "file"}, dag_file=dag_file, dag_id=dag_id)
    gate = live.gate_for(dag_id)
    assert live.decide("bob", gate["id"], "approve", "ok").status_code == 200
    report = run.report()
    assert report.states == {"approve_export": "success", "export_customers": "success"}, runner.log_tail()
    return dag_id, gate, gate["request"]["run"]["run_id"]


def test_the_sql_tasks_tables_reach_gatehouse_through_airflows_openlineage_provider(
    ol_runner: AirflowRunner,
    airflow_home: AirflowHome,  # noqa: F811
    live: Live,
    live_settings: Settings,
    schema: str,
) -> None:
    sql = f"INSERT INTO {schema}.customers_export SELECT id, region FROM {schema}.customers"
    dag_id, gate, run_id = run_gated_sql(ol_runner, airflow_home, live, schema, sql)
    rows = wait_for_rows(live_settings, run_id, want=2)
    sql_rows = [r for r in rows if r.task_id == "export_customers"]  # type: ignore[attr-defined]
    assert {(r.dataset, r.operation.value) for r in sql_rows} == {  # type: ignore[attr-defined]
        (f"{NAMESPACE}/test.{schema}.customers", "read"),
        (f"{NAMESPACE}/test.{schema}.customers_export", "export"),
    }, ol_runner.log_tail()
    assert {(r.pipeline, r.gate_id, r.actor) for r in sql_rows} == {(dag_id, gate["id"], "etl-bot")}  # type: ignore[attr-defined]
    read = next(r for r in sql_rows if r.operation.value == "read")  # type: ignore[attr-defined]
    assert "pii" in read.tags  # the email column, classified by the server's detectors
    with live.client("alice") as client:
        found = client.get("/v1/lineage/violations", params={"gate": gate["id"]}).json()["rows"]
    assert found == []  # it stayed in scope


def test_the_same_dag_reading_an_unapproved_pii_table_is_one_violation(
    ol_runner: AirflowRunner,
    airflow_home: AirflowHome,  # noqa: F811
    live: Live,
    live_settings: Settings,
    schema: str,
) -> None:
    sql = (
        f"INSERT INTO {schema}.customers_export SELECT c.id, c.region FROM {schema}.customers c "
        f"JOIN {schema}.payments p ON p.customer_id = c.id"
    )
    _, gate, run_id = run_gated_sql(ol_runner, airflow_home, live, schema, sql)
    wait_for_rows(live_settings, run_id, want=3)
    deadline = time.monotonic() + 60
    with live.client("alice") as client:
        while True:
            found = client.get("/v1/lineage/violations", params={"gate": gate["id"]}).json()["rows"]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert [(v["kind"], v["dataset"]) for v in found] == [
        ("unapproved_dataset", f"{NAMESPACE}/test.{schema}.payments")
    ], json.dumps(found)
