"""Acceptance: a notifier shipped by a separate distribution receives gate events from a real
`gatehouse serve`, with no edit to Gatehouse's code.

The plugin (tests/service/notifier_plugin.py) is written to a temporary directory as an installed
distribution and put on the server's PYTHONPATH; service.yaml names instances of its types and a
policy rule notifies them. A second instance whose type raises in post_request shows a broken
plugin never breaks the API call, and one with a misspelt setting stops start-up with the file,
the field path and the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gate_core import Settings, open_gatekeeper
from tests.service.conftest import ServerProcess, free_port, make_tokens
from tests.service.http_receiver import HttpReceiver
from tests.service.notifier_plugin import install_plugin

POLICY = """\
version: 1
rules:
  - name: pii-export
    match: {action: [export], dataset_tags: [pii]}
    outcome: require
    approvers: {groups: [data-governance], count: 1}
    expiry: 4h
    notify: ["fire:now", "pager:oncall-data"]
default:
  outcome: require
  approvers: {groups: [data-governance], count: 1}
  expiry: 24h
"""

EXPORT: dict[str, Any] = {
    "action": "export",
    "target": "s3://exports/customers.csv",
    "requester": "alice",
    "environment": "prod",
    "datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["pii"]}],
    "reason": "quarterly report",
}


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


def plugin_env(tmp_path: Path) -> dict[str, str]:
    site = install_plugin(tmp_path / "site")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def write_service_yaml(settings: Settings, text: str) -> None:
    (settings.home / "service.yaml").write_text(text, encoding="utf-8")


def test_a_plugin_notifier_receives_opened_and_decided_events(
    start_server: Callable[..., ServerProcess],
    service_settings: Settings,
    receiver: HttpReceiver,
    tmp_path: Path,
) -> None:
    service_settings.policy_path.write_text(POLICY, encoding="utf-8")
    write_service_yaml(
        service_settings,
        f"""\
notifiers:
  pager: {{type: pager, url: "{receiver.url}/page", severity: 2}}
  fire: {{type: broken-pager, url: "{receiver.url}/fire"}}
""",
    )
    gatekeeper = open_gatekeeper(service_settings)
    tokens = make_tokens(gatekeeper)
    gatekeeper.store.close()
    server = start_server(plugin_env(tmp_path))

    bot = {"Authorization": f"Bearer {tokens['bot']}"}
    opened = httpx.post(f"{server.base_url}/v1/gates", json=EXPORT, headers=bot, timeout=10)
    assert opened.status_code == 200, opened.text  # the broken plugin did not break the call
    gate_id = opened.json()["id"]

    [page] = receiver.wait_for(1, path="/page")
    assert page.json() == {
        "event": "opened",
        "instance": "pager",
        "address": "oncall-data",
        "gate": gate_id,
        "status": "PENDING",
        "severity": 2,
        "console": f"http://127.0.0.1:8080/console/gates/{gate_id}",
    }

    bob = {"Authorization": f"Bearer {tokens['bob']}"}
    decided = httpx.post(
        f"{server.base_url}/v1/gates/{gate_id}/decisions",
        json={"decision": "approve"},
        headers=bob,
        timeout=10,
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "APPROVED"

    _, outcome = receiver.wait_for(2, path="/page")
    assert (outcome.json()["event"], outcome.json()["gate"]) == ("decided", gate_id)
    assert outcome.json()["status"] == "APPROVED"
    assert receiver.requests(path="/fire") == []  # it raised before sending anything

    deadline = time.monotonic() + 15
    failure = f"notify fire:now of {gate_id} failed after 3 attempts: the pager is on fire"
    while failure not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("instance", "message"),
    [
        (
            '{type: pager, url: "http://127.0.0.1:9/page", colour: red}',
            "service.yaml: notifiers.pager.colour: Extra inputs are not permitted",
        ),
        ("{type: pager}", "service.yaml: notifiers.pager.url: Field required"),
        (
            '{type: pager, url: "http://127.0.0.1:9/page", severity: loud}',
            "service.yaml: notifiers.pager.severity: Input should be a valid integer",
        ),
        (
            "{type: pagr}",
            "service.yaml: notifiers.pager.type: unknown notifier type 'pagr'; installed types: "
            "broken-pager, pager, slack, teams, teams-bot, webhook",
        ),
    ],
    ids=["unknown-key", "missing-key", "wrong-type", "unknown-type"],
)
def test_an_invalid_plugin_config_stops_start_up_with_the_field_path(
    service_settings: Settings, tmp_path: Path, instance: str, message: str
) -> None:
    write_service_yaml(service_settings, f"notifiers:\n  pager: {instance}\n")
    env = {
        **os.environ,
        "GATEHOUSE_HOME": str(service_settings.home),
        "GATEHOUSE_DATABASE_URL": service_settings.database_url,
        **plugin_env(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "gate_core.cli", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert message in done.stderr, done.stderr
    assert "serving on" not in done.stdout
