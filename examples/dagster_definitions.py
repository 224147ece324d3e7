"""Gatehouse approval gates in Dagster: an example ``Definitions``.

    gatehouse serve --port 8080 &
    export GATEHOUSE_URL=http://127.0.0.1:8080
    export GATEHOUSE_TOKEN=$(gatehouse --as frank token create --principal etl-bot --scope request | tail -1)
    dagster dev -f examples/dagster_definitions.py

What is in it:

- ``customers``: the warehouse table (synthetic here). Its read is recorded as lineage and its
  schema shown in Dagster's standard metadata (``dagster/column_schema`` with classification
  tags on each column, ``dagster/row_count``).
- ``customers_export``: exporting personal data needs data-governance's approval. The asset waits
  in the step (``require_approval``) and shows the decision — gate, approvers, rule, a link to
  the console — on its materialization.
- ``redeploy_churn_model``: an op job; a prod redeploy needs two distinct approvers.
- ``request_customers_export`` + ``customers_export_on_approval``: the long-wait pattern. The job
  opens the gate and ends; the sensor launches ``export_customers`` once the gate is approved,
  and that run's ``require_approval`` consumes the launching gate without waiting.

The launching user (Dagster's ``dagster/user`` run tag, set by the UI and Dagster+) is the
requester; it must be a principal in the Gatehouse directory. Without it the resource's
``requester`` is used (``GATEHOUSE_REQUESTER`` here), else the token's own principal.
"""

# No `from __future__ import annotations`: Dagster reads the resource parameters of ops and assets
# from their annotations at definition time and cannot resolve them as strings.
import os
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from dagster_resources import ApprovalGateResource, approval_sensor

EXPORT_DIR = Path(
    os.environ.get("GATEHOUSE_EXAMPLE_EXPORT_DIR", Path(tempfile.gettempdir()) / "gatehouse-export")
)

# What exporting customers asks for. An approval is bound to exactly this (action, target,
# environment, parameters, datasets), so the request job and the gated asset ask the same.
EXPORT_ACTION = "export"
EXPORT_TARGET = f"file://localhost{EXPORT_DIR.resolve() / 'customers.csv'}"
EXPORT_DATASETS = ("warehouse/customers#pii",)
EXPORT_REASON = "quarterly churn report"


@dg.asset(group_name="gatehouse_example")
def customers(context: dg.AssetExecutionContext, approval_gate: ApprovalGateResource) -> pd.DataFrame:
    """The customers table (synthetic): its read is an access event; its schema shows in the UI."""
    df = pd.DataFrame(
        {
            "customer_id": [101, 102, 103, 104],
            "email": ["ana@example.com", "bo@example.com", "cy@example.com", "di@example.com"],
            "country": ["PT", "SE", "SE", "DE"],
            "churn_score": [0.12, 0.81, 0.44, 0.27],
        }
    )
    context.add_output_metadata(
        approval_gate.track_dataframe(context, df, dataset="warehouse/customers", operation="read")
    )
    return df


@dg.asset(group_name="gatehouse_example")
def customers_export(
    context: dg.AssetExecutionContext, customers: pd.DataFrame, approval_gate: ApprovalGateResource
) -> dg.MaterializeResult[None]:
    """Write the churn export — only after data-governance approves (the step waits)."""
    decision = approval_gate.require_approval(
        context,
        action=EXPORT_ACTION,
        target=EXPORT_TARGET,
        datasets=EXPORT_DATASETS,
        reason=EXPORT_REASON,
    )
    export = customers[["customer_id", "country", "churn_score"]]
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    export.to_csv(EXPORT_DIR / "customers.csv", index=False)
    table = approval_gate.track_dataframe(
        context, export, dataset=EXPORT_TARGET, operation="export", decision=decision
    )
    return dg.MaterializeResult(metadata=table)


@dg.op
def approve_redeploy(context: dg.OpExecutionContext, approval_gate: ApprovalGateResource) -> str:
    """A prod redeploy: two distinct people from data-governance or ml-leads."""
    decision = approval_gate.require_approval(
        context, action="redeploy", target="models/churn", environment="prod", reason="monthly retrain"
    )
    return decision.gate_id


@dg.op
def deploy_model(context: dg.OpExecutionContext, gate_id: str) -> None:
    context.log.info(f"deploying models/churn to prod under gate {gate_id}")


@dg.job
def redeploy_churn_model() -> None:
    deploy_model(approve_redeploy())


@dg.op
def request_export_approval(context: dg.OpExecutionContext, approval_gate: ApprovalGateResource) -> str:
    """Open the export gate and end: the sensor launches the export once it is approved."""
    gate = approval_gate.open_gate(
        context,
        action=EXPORT_ACTION,
        target=EXPORT_TARGET,
        datasets=EXPORT_DATASETS,
        reason=EXPORT_REASON,
        asset_key="customers_export",
    )
    return gate.id


@dg.job
def request_customers_export() -> None:
    request_export_approval()


export_customers = dg.define_asset_job("export_customers", selection=["customers", "customers_export"])

customers_export_on_approval = approval_sensor(
    job=export_customers, asset_key="customers_export", minimum_interval_seconds=30
)

defs = dg.Definitions(
    assets=[customers, customers_export],
    jobs=[redeploy_churn_model, request_customers_export, export_customers],
    sensors=[customers_export_on_approval],
    resources={
        "approval_gate": ApprovalGateResource(
            url=dg.EnvVar("GATEHOUSE_URL"),
            token=dg.EnvVar("GATEHOUSE_TOKEN"),
            requester=os.environ.get("GATEHOUSE_REQUESTER"),
            dagster_url=os.environ.get("DAGSTER_URL"),
        )
    },
)
