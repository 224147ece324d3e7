"""Adversary R declares the tags. Property 4: what the catalog and lineage know about a dataset
counts whether or not the caller declared it; a caller's tags can add, never remove; each tag on
a gate says where it came from.

Run against the code before issue 16: ``export --env dev --dataset warehouse/customers`` (no
``#pii``) was allowed by ``dev-export`` with no human at all, although the catalog marks that
dataset's columns as pii — the service never consulted the catalog.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gate_core import DatasetRef, Gate, RunContext
from gate_core.service._slack_card import card_blocks
from gate_core.service.notify._teams import request_card
from lineage import AccessEvent, ColumnInfo, Operation
from tests.conftest import Report
from tests.service.conftest import Service
from tests.service.test_console import browser, sign_in

CATALOG = """
version: 1
datasets:
  warehouse/customers:
    columns:
      notes: [pii]
"""


@pytest.fixture
def classified(
    service_factory: Callable[..., Service], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Service:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    monkeypatch.setenv("GATEHOUSE_LINEAGE_CATALOG", str(catalog))
    return service_factory(local_signin=True)


def _export(service: Service, dataset: dict[str, object], environment: str = "dev") -> dict[str, object]:
    with service.client("bot") as bot:
        response = bot.post(
            "/v1/gates",
            json={
                "action": "export",
                "environment": environment,
                "requester": "alice",
                "datasets": [dataset],
            },
        )
    assert response.status_code == 200, response.text
    gate: dict[str, object] = response.json()
    return gate


def test_the_catalog_classifies_what_the_caller_left_out(classified: Service, report: Report) -> None:
    gate = _export(classified, {"namespace": "warehouse", "name": "customers"})
    report(
        "Server-side tags (R): untagged pii exports allowed without a person",
        int(gate["status"] == "APPROVED"),
        "",
        "0",
    )
    assert gate["status"] == "PENDING" and gate["rule"] == "pii-export", gate["explanation"]
    assert gate["tag_sources"] == {"warehouse/customers": {"pii": ["catalog"]}}
    shown = classified.client("bot").get(f"/v1/gates/{gate['id']}")
    assert shown.json()["tag_sources"] == gate["tag_sources"]  # stored, and read back by every reader
    # every channel shows where the tag came from: Slack, Teams, the console, the CLI
    stored = Gate.model_validate_json(shown.text)
    card = json.dumps([b.to_dict() for b in card_blocks(stored, console_url="http://x", requester=None)])
    assert "*pii* (catalog)" in card
    assert "pii (catalog)" in json.dumps(request_card(stored, "http://x"))
    env = {
        **os.environ,
        "GATEHOUSE_HOME": str(classified.settings.home),
        "GATEHOUSE_DATABASE_URL": classified.settings.database_url,
    }
    cli = subprocess.run(
        [sys.executable, "-m", "gate_core.cli", "show", str(gate["id"])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "tags from   pii (catalog)" in cli.stdout, cli.stdout + cli.stderr
    with browser(classified) as console:  # and the console, on the gate's page and in the list
        sign_in(console, "bob")
        page = console.get(f"/console/gates/{gate['id']}").text
        listed = console.get("/console/").text
    for html in (page, listed):
        assert 'title="known from catalog">pii (catalog)</span>' in html


def test_caller_tags_add_and_never_remove(classified: Service) -> None:
    gate = _export(classified, {"namespace": "warehouse", "name": "customers", "tags": ["finance", "PII"]})
    assert gate["rule"] == "pii-export"
    assert gate["tag_sources"] == {
        "warehouse/customers": {"finance": ["caller"], "pii": ["caller", "catalog"]}
    }


def test_what_lineage_recorded_about_columns_counts(classified: Service) -> None:
    lineage_store = classified.app.state.gatehouse_lineage
    lineage_store.record(
        AccessEvent(
            dataset=DatasetRef.parse("warehouse/orders"),
            operation=Operation.READ,
            columns=(ColumnInfo(name="buyer_email", tags=frozenset({"pii"})),),
            run=RunContext(orchestrator="airflow", pipeline="p", run_id="r1", task_id="t"),
            actor="alice",
        )
    )
    gate = _export(classified, {"namespace": "warehouse", "name": "orders"})
    assert gate["rule"] == "pii-export", gate["explanation"]
    assert gate["tag_sources"]["warehouse/orders"]["pii"] == ["lineage"]  # type: ignore[index]


def test_an_unknown_dataset_still_follows_its_declared_tags(classified: Service) -> None:
    gate = _export(classified, {"namespace": "warehouse", "name": "weather"})
    assert gate["rule"] == "dev-export" and gate["status"] == "APPROVED"
    assert gate["tag_sources"] == {"warehouse/weather": {}}


def test_the_local_cli_classifies_too(
    home_for: Callable[..., object], tmp_path: Path, report: Report
) -> None:
    """The issue's own attack, through the local CLI (no service): `gatehouse request --action export
    --env dev --dataset warehouse/customers` with no `#pii`. Before, only the service classified, so
    this was allowed by dev-export with no human; lineage's `gatehouse.classifiers` entry point now
    classifies every gatekeeper `open_gatekeeper` builds."""
    home: Any = home_for(kernel_is="alice", sandbox=False)
    (home.settings.home / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    done = home.run("request", "--action", "export", "--env", "dev", "--dataset", "warehouse/customers")
    assert done.code == 0, done.err
    shown = home.run("show", done.last_line, "--json")
    gate = json.loads(shown.out)
    report(
        "Server-side tags (R): untagged pii exports allowed without a person, local CLI",
        int(gate["status"] == "APPROVED"),
        "",
        "0",
    )
    assert (gate["status"], gate["rule"]) == ("PENDING", "pii-export"), gate["explanation"]
    assert gate["tag_sources"] == {"warehouse/customers": {"pii": ["catalog"]}}


def test_a_broken_classifier_stops_opening_gates_rather_than_skipping_it(
    home_for: Callable[..., object],
) -> None:
    home: Any = home_for(kernel_is="alice", sandbox=False)
    (home.settings.home / "catalog.yaml").write_text(
        "version: 1\ndatasets: [not, a, mapping]\n", encoding="utf-8"
    )
    done = home.run("request", "--action", "export", "--env", "dev", "--dataset", "warehouse/customers")
    assert done.code == 1
    assert "dataset classifier 'lineage'" in done.err
