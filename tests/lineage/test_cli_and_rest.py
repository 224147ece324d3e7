"""The governance queries from the `gatehouse lineage` CLI (a real subprocess) give the same
answers as the REST API (a real server), on a seeded database, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from gate_core import SqlStore
from lineage import LineageStore
from tests.gate_core.test_cli import without_sandbox_banner
from tests.lineage.seed import Seeded, seed
from tests.service.conftest import Service

GATEHOUSE = [sys.executable, "-m", "gate_core.cli"]


@dataclass
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@dataclass
class World:
    service: Service
    seeded: Seeded
    gatehouse: Run


@pytest.fixture
def world(service: Service, database_url: str) -> World:
    assert isinstance(service.gatekeeper.store, SqlStore)
    seeded = seed(service.gatekeeper, LineageStore.for_gate_store(service.gatekeeper.store))

    def run(*args: str, user: str = "carol", env: dict[str, str] | None = None) -> Result:
        environ = {
            **os.environ,
            "GATEHOUSE_HOME": str(service.settings.home),
            "GATEHOUSE_DATABASE_URL": database_url,
            **(env or {}),
        }
        proc = subprocess.run(  # the example home is a sandbox: --as chooses the person
            [*GATEHOUSE, "--as", user, *args], capture_output=True, text=True, env=environ, timeout=120
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, without_sandbox_banner(proc.stderr, args))

    return World(service, seeded, run)


def _cli_json(world: World, *args: str) -> object:
    result = world.gatehouse("lineage", *args, "--format", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def _rest(world: World, path: str, **params: object) -> object:
    with world.service.client("bob") as bob:
        response = bob.get(f"/v1/lineage/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_four_queries_match_between_cli_and_rest(world: World) -> None:
    g1 = world.seeded.g1
    pairs = [
        (("accessed", "warehouse/customers"), ("accessed", {"dataset": "warehouse/customers"})),
        (("accessed", "warehouse/customers", "--since", "30d"),
         ("accessed", {"dataset": "warehouse/customers", "since": "30d"})),
        (("run", "manual__1"), ("runs/manual__1", {})),
        (("run", "b7c1", "--orchestrator", "prefect"), ("runs/b7c1", {"orchestrator": "prefect"})),
        (("gate", g1), (f"gates/{g1}", {})),
        (("exports", "--tag", "pii"), ("exports", {"tag": "pii"})),
        (("exports", "--tag", "pii", "--since", "30d"), ("exports", {"tag": "pii", "since": "30d"})),
        (("graph", "warehouse/customers", "--downstream", "--depth", "5"),
         ("graph", {"dataset": "warehouse/customers", "direction": "downstream", "depth": 5})),
        (("graph", "s3://partner/report.csv", "--upstream"),
         ("graph", {"dataset": "s3://partner/report.csv", "direction": "upstream"})),
        (("graph", "warehouse/report_daily"), ("graph", {"dataset": "warehouse/report_daily"})),
    ]  # fmt: skip
    for cli_args, (path, params) in pairs:
        assert _cli_json(world, *cli_args) == _rest(world, path, **params), cli_args

    exported = _rest(world, "exports", tag="pii", since="30d")
    assert isinstance(exported, dict)
    [row] = exported["rows"]
    assert (row["dataset"], row["gate_id"], row["approval"], row["decided_by"]) == (
        "s3://exports/customers.csv",
        g1,
        "APPROVED",
        ["bob"],
    )


def test_table_and_csv_formats(world: World) -> None:
    table = world.gatehouse("lineage", "accessed", "warehouse/customers", "--since", "30d")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split()[:4] == ["at", "(UTC)", "op", "dataset"]
    assert "airflow:customer_export/manual__1/extract" in table.out
    assert "prefect:orders_report/b7c1/build" in table.out and "2 access(es)" in table.out

    gate = world.gatehouse("lineage", "gate", world.seeded.g1)
    assert f"{world.seeded.g1} APPROVED by bob" in gate.out

    as_csv = world.gatehouse("lineage", "exports", "--tag", "pii", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.out)))
    assert [r["dataset"] for r in rows] == ["s3://exports/customers.csv", "s3://exports/customers-old.csv"]
    assert rows[0]["tags"] == "email;pii" and rows[0]["decided_by"] == "bob"

    graph = world.gatehouse("lineage", "graph", "warehouse/customers", "--downstream", "--depth", "2")
    assert re.search(r"1\s+warehouse/customers\s+→\s+warehouse/customers_clean\s", graph.out)
    assert "warehouse/customers: 0 upstream, 5 downstream within 2 hop(s)" in graph.out
    edges = world.gatehouse("lineage", "graph", "warehouse/customers", "--format", "csv")
    assert edges.out.splitlines()[0] == "depth,upstream,downstream,first_seen_at,last_seen_at"


def test_usage_and_refusals_exit_like_the_core(world: World) -> None:
    bad_dataset = world.gatehouse("lineage", "accessed", "customers")
    assert bad_dataset.code == 2 and "is not NAMESPACE/NAME" in bad_dataset.err
    bad_since = world.gatehouse("lineage", "exports", "--tag", "pii", "--since", "last tuesday")
    assert bad_since.code == 2 and "'last tuesday' is not a duration" in bad_since.err
    bad_op = world.gatehouse("lineage", "record", "a/b", "--operation", "copy")
    assert bad_op.code == 2 and "'copy' is not one of" in bad_op.err
    bad_depth = world.gatehouse("lineage", "graph", "a/b", "--depth", "50")
    assert bad_depth.code == 2
    nothing = world.gatehouse("lineage", "gate", "gNOSUCH")
    assert nothing.code == 0 and "0 access(es)" in nothing.out

    (world.service.settings.home / "catalog.yaml").write_text("datasets: [oops\n", encoding="utf-8")
    broken = world.gatehouse("lineage", "record", "a/b", "--operation", "read", user="alice")
    assert broken.code == 1
    assert broken.err.startswith(f"gatehouse: {world.service.settings.home / 'catalog.yaml'}: line 2")
    assert len(broken.err.strip().splitlines()) == 1


def test_record_from_a_shell_script_as_the_os_user(world: World) -> None:
    recorded = world.gatehouse(
        "lineage", "record", "warehouse/customers", "-o", "read", "--column", "email:str", "--run-id", "sh-1",
        user="alice",
    )  # fmt: skip
    assert recorded.code == 0, recorded.err
    assert recorded.out.startswith("recorded read of warehouse/customers by alice (email,pii)")
    rows = _rest(world, "runs/sh-1")
    assert isinstance(rows, dict) and [r["actor"] for r in rows["rows"]] == ["alice"]


def test_purge_applies_retention_and_audits(world: World) -> None:
    missing = world.gatehouse("lineage", "purge")
    assert missing.code == 2 and "no retention set" in missing.err
    stranger = world.gatehouse("lineage", "purge", "--older-than", "30d", user="mallory")
    assert stranger.code == 1 and "'mallory' is not a principal" in stranger.err
    purged = world.gatehouse("lineage", "purge", env={"GATEHOUSE_LINEAGE_RETENTION": "30d"})
    assert purged.code == 0, purged.err
    assert purged.out.startswith("purged 2 access event(s) older than") and "(retention 30d)" in purged.out
    export = world.gatehouse("audit", "export")
    entries = [json.loads(line) for line in export.out.splitlines()]
    assert [e["payload"]["count"] for e in entries if e["event"] == "lineage.retention_purged"] == [2]
    assert world.gatehouse("audit", "verify").code == 0
    remaining = _rest(world, "accessed", dataset="warehouse/customers")
    assert isinstance(remaining, dict) and len(remaining["rows"]) == 2
