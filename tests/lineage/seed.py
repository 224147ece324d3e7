"""A small, realistic lineage history on top of real gates, shared by the query, CLI and REST tests.

airflow customer_export manual__1 (2 h ago)
  extract: read warehouse/customers (id, email, full_name, balance) → write warehouse/customers_clean
  export:  read warehouse/customers_clean → export s3://exports/customers.csv
           under gate G1 (APPROVED by bob)
prefect orders_report b7c1 (10 days ago)
  build:   read warehouse/orders, read warehouse/customers → write warehouse/report_daily
dagster partner_feed d-42 (3 h ago), as etl-bot
  ship:    read warehouse/report_daily → export s3://partner/report.csv
           under gate G2 (REJECTED by carol)
airflow customer_export manual__0 (40 days ago)
  export:  read warehouse/customers → export s3://exports/customers-old.csv (no gate)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gate_core import DatasetRef, Gatekeeper, GateRequest, RunContext
from gate_core.testing import actor
from lineage import AccessEvent, Catalog, ColumnInfo, LineageStore, Operation

CUSTOMERS = (("id", "int64"), ("email", "str"), ("full_name", "str"), ("balance", "float64"))
CLEAN = (("id", "int64"), ("email", "str"))
ORDERS = (("order_id", "int64"), ("amount", "float64"))
REPORT = (("region", "str"), ("total", "float64"))


@dataclass(frozen=True)
class Seeded:
    g1: str  # approved pii export
    g2: str  # rejected partner export
    now: datetime
    events: tuple[AccessEvent, ...]


def _event(
    dataset: str,
    operation: Operation,
    columns: tuple[tuple[str, str], ...],
    run: RunContext,
    at: datetime,
    *,
    who: str = "alice",
    gate: str | None = None,
    rows: int = 1200,
) -> AccessEvent:
    classified = Catalog().classify(
        DatasetRef.parse(dataset), [ColumnInfo(name=n, type=t) for n, t in columns]
    )
    return AccessEvent(
        at=at,
        dataset=classified.dataset,
        operation=operation,
        columns=classified.columns,
        row_count=rows,
        bytes=rows * 8 * len(columns),
        run=run,
        actor=who,
        gate_id=gate,
    )


def seed(gatekeeper: Gatekeeper, store: LineageStore, now: datetime | None = None) -> Seeded:
    now = now or datetime.now(UTC)
    g1 = gatekeeper.open(
        GateRequest(
            action="export",
            target="s3://exports/customers.csv",
            datasets=(DatasetRef.parse("warehouse/customers_clean#pii"),),
            requester="alice",
            reason="quarterly report",
        ),
        submitted_by=actor("alice"),
    )
    gatekeeper.approve(g1.id, actor=actor("bob"))
    g2 = gatekeeper.open(
        GateRequest(action="export", target="s3://partner/report.csv", requester="alice"),
        submitted_by=actor("etl-bot"),
    )
    gatekeeper.reject(g2.id, actor=actor("carol"), reason="partner contract expired")

    def run(orchestrator: str, pipeline: str, run_id: str, task: str) -> RunContext:
        return RunContext(orchestrator=orchestrator, pipeline=pipeline, run_id=run_id, task_id=task)

    extract = run("airflow", "customer_export", "manual__1", "extract")
    export = run("airflow", "customer_export", "manual__1", "export")
    build = run("prefect", "orders_report", "b7c1", "build")
    ship = run("dagster", "partner_feed", "d-42", "ship")
    old = run("airflow", "customer_export", "manual__0", "export")
    h2, d10, h3, d40 = (
        now - timedelta(hours=2),
        now - timedelta(days=10),
        now - timedelta(hours=3),
        now - timedelta(days=40),
    )
    second = timedelta(seconds=1)
    events = (
        _event("warehouse/customers", Operation.READ, CUSTOMERS, extract, h2),
        _event("warehouse/customers_clean", Operation.WRITE, CLEAN, extract, h2 + second),
        _event("warehouse/customers_clean", Operation.READ, CLEAN, export, h2 + 2 * second, gate=g1.id),
        _event("s3://exports/customers.csv", Operation.EXPORT, CLEAN, export, h2 + 3 * second, gate=g1.id),
        _event("warehouse/orders", Operation.READ, ORDERS, build, d10),
        _event("warehouse/customers", Operation.READ, CLEAN, build, d10 + second),
        _event("warehouse/report_daily", Operation.WRITE, REPORT, build, d10 + 2 * second),
        _event("warehouse/report_daily", Operation.READ, REPORT, ship, h3, who="etl-bot"),
        _event("s3://partner/report.csv", Operation.EXPORT, REPORT, ship, h3 + second, who="etl-bot",
               gate=g2.id),
        _event("warehouse/customers", Operation.READ, CUSTOMERS, old, d40),
        _event("s3://exports/customers-old.csv", Operation.EXPORT, CUSTOMERS, old, d40 + second),
    )  # fmt: skip
    store.record_many(events)
    return Seeded(g1.id, g2.id, now, events)
