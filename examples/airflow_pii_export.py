"""Airflow: export a dataset tagged pii only after someone in data-governance approved it.

The DAG (drop this file in your dags folder; set GATEHOUSE_URL/GATEHOUSE_TOKEN or a `gatehouse`
connection):

    approve_export (GateOperator)  ──►  export_customers (@task, writes the CSV)

``approve_export`` opens a gate as the DAG's owner (alice) through the pipeline's token
(etl-bot), then defers: no worker slot is held while bob or carol decide in Slack, the console or
the API. Approved → ``export_customers`` runs with the decision (who, when, comments) from XCom.
Rejected → the run stops with the reason; the export never runs.

Run it for real, end to end (the gate service, Airflow's metadata DB and the DAG run are all
created under .gatehouse-dev/airflow; about a minute, most of it Airflow starting):

    python -m examples.airflow_pii_export            # bob approves after you see it waiting
    python -m examples.airflow_pii_export --wait     # you approve (prints the command), or reject
"""

from __future__ import annotations

import os
from pathlib import Path

DEMO_HOME = Path(__file__).resolve().parent.parent / ".gatehouse-dev" / "airflow"
if __name__ == "__main__":  # the demo chooses its Airflow home before Airflow is imported (it writes there)
    os.environ.setdefault("AIRFLOW_HOME", str(DEMO_HOME / "airflow"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from datetime import datetime  # noqa: E402  (after choosing AIRFLOW_HOME, above)
from typing import Any  # noqa: E402

from airflow.sdk import DAG, Asset, task  # noqa: E402

from airflow_provider import GateOperator  # noqa: E402

EXPORT = Asset(uri="s3://exports/customers.csv")

with DAG(
    dag_id="gatehouse_pii_export",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"owner": "alice"},  # the requester, when no person triggered the run
    tags=["gatehouse", "pii"],
    doc_md=__doc__,
) as dag:
    approve_export = GateOperator(
        task_id="approve_export",
        action="export",
        target=EXPORT.uri,
        datasets=["warehouse/customers#pii"],
        reason="Quarterly churn report for {{ ds }}: aggregates by region",
    )

    @task(outlets=[EXPORT])
    def export_customers(decision: dict[str, Any]) -> str:
        """The privileged step: runs only after the gate passed, with the decision in hand."""
        out = Path(os.environ.get("GATEHOUSE_DEMO_EXPORT_DIR", ".")) / "customers.csv"
        out.write_text("region,customers\nemea,1204\namer,2210\napac,877\n", encoding="utf-8")
        approvers = ", ".join(decision["approvers"]) or f"policy rule {decision['rule']}"
        print(f"exported {out} under gate {decision['gate_id']}, approved by {approvers}")
        return str(out)

    approve_export >> export_customers(approve_export.output)


if __name__ == "__main__":
    from examples._airflow_demo import main

    main(Path(__file__), DEMO_HOME)
