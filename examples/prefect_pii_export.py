r"""A PII export behind a Gatehouse approval gate, on Prefect.

The flow loads customers (synthetic rows standing in for a warehouse query), stops at a gate
until someone in data-governance other than the requester approves the export, then writes an
aggregate CSV. Meanwhile the run shows as Paused in Prefect (``mode="pause"``), or Suspended with
its process gone (``mode="suspend"``, run from a deployment by a worker, resumed by
``python -m prefect_blocks watch``). The DataFrames it reads and exports are recorded as lineage
tied to the flow run and the gate.

Try it against a local gate service and Prefect server:

    gatehouse init --example && gatehouse serve --port 8080 &
    export GATEHOUSE_URL=http://127.0.0.1:8080
    export GATEHOUSE_TOKEN=$(gatehouse --as frank token create --principal etl-bot --scope request | tail -1)
    python examples/prefect_pii_export.py --requester alice      # saves the block, runs the flow

then approve as bob in the console (http://127.0.0.1:8080/console), or with a decide token of bob's:

    curl -X POST -H "Authorization: Bearer $BOB" -H "Content-Type: application/json" \
         -d '{"decision": "approve"}' $GATEHOUSE_URL/v1/gates/<gate id>/decisions
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from prefect import flow, task
from pydantic import SecretStr

import lineage
from prefect_blocks import ApprovalGate

CUSTOMERS = "warehouse/customers"
EXPORT = "exports/customers_by_region.csv"


@task
def load_customers() -> pd.DataFrame:
    """Synthetic customers (the e-mail column is why the dataset is tagged pii)."""
    ids = range(1, 201)
    return pd.DataFrame(
        {
            "customer_id": list(ids),
            "email": [f"customer{i}@example.com" for i in ids],
            "region": [("north", "south", "east", "west")[i % 4] for i in ids],
            "churn_risk": [(i * 37 % 100) / 100 for i in ids],
        }
    )


@task
def export_by_region(customers: pd.DataFrame, out_dir: str) -> dict[str, Any]:
    """Aggregates only — no e-mail leaves — written as CSV; both DataFrames go into lineage."""
    lineage.track_dataframe(customers, dataset=CUSTOMERS, operation="read")
    by_region = customers.groupby("region", as_index=False).agg(
        customers=("customer_id", "count"), churn_risk=("churn_risk", "mean")
    )
    path = Path(out_dir) / "customers_by_region.csv"
    by_region.to_csv(path, index=False)
    lineage.track_dataframe(by_region, dataset=EXPORT, operation="export")
    return {"path": str(path), "rows": len(by_region)}


@flow(name="pii-export")
def pii_export(
    requester: str = "alice",
    mode: Literal["pause", "suspend"] = "pause",
    block_name: str = "gatehouse",
    out_dir: str = "",
) -> dict[str, Any]:
    """Export customer aggregates once data-governance approves. ``requester`` is found by the
    block as this run's parameter (Prefect Cloud's triggering user would take precedence)."""
    gate = ApprovalGate.load(block_name)
    customers = load_customers()
    with gate.approved(
        action="export",
        target=EXPORT,
        datasets=[f"{CUSTOMERS}#pii"],
        reason="quarterly churn report",
        mode=mode,
    ) as decision:
        exported = export_by_region(customers, out_dir or tempfile.gettempdir())
    return {
        "gate": decision.gate_id,
        "approved_by": decision.approvers,
        "comment": decision.comment,
        **exported,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requester", default="alice")
    parser.add_argument("--block", default="gatehouse", help="name of the saved ApprovalGate block")
    args = parser.parse_args()
    url, token = os.environ.get("GATEHOUSE_URL"), os.environ.get("GATEHOUSE_TOKEN")
    if url and token:
        ApprovalGate(url=url, token=SecretStr(token)).save(args.block, overwrite=True)
    print(pii_export(requester=args.requester, block_name=args.block))


if __name__ == "__main__":
    main()
