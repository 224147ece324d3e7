"""Every channel lists everyone involved in a request, each with its source (issue 14): the Slack
card (Block Kit JSON as posted to the Slack stand-in), the Teams card (the Adaptive Card as posted
to the Workflows stand-in), the console's gate page and ``gatehouse show``. An approver reads who
may not decide — and why — wherever they are asked.

One real service on SQLite and PostgreSQL; the pipeline opens the gate with its own token, naming
the run's triggering user as the orchestrator recorded it (bob) and a person its run conf names
(carol); the policy declares dave an owner of the pipeline.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gate_core import Settings
from gate_core.service import ServiceConfig
from gate_core.service.notify._slack import SlackConfig
from tests.service.conftest import Service
from tests.service.http_receiver import HttpReceiver
from tests.service.slack_standin import SlackStandIn

BOT_TOKEN = "xoxb-0000-gatehouse-involved"
SIGNING_SECRET = "0f742231b10e8888abcd99yyyzzz85a5"
TEAMS_PATH = "/workflows/governance"
POLICY = """\
version: 1
pipelines:
  "customer_*":
    owners: [dave]
rules:
  - name: pii-export
    description: Exports of personal data need data-governance.
    match: {action: [export], dataset_tags: [pii]}
    outcome: require
    approvers: {groups: [data-governance], count: 1}
    expiry: 4h
    notify: ["slack:#governance", "teams:governance"]
default:
  outcome: require
  approvers: {groups: [data-governance], count: 1}
  expiry: 24h
"""
REQUEST: dict[str, Any] = {
    "action": "export",
    "target": "s3://exports/customers.csv",
    "requester": "bob",
    "datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["pii"]}],
    "run": {"orchestrator": "airflow", "pipeline": "customer_export", "run_id": "manual__1"},
    "involved": [
        {"principal": "bob", "source": "Airflow triggering user", "recorded_by_orchestrator": True},
        {"principal": "carol", "source": "argument requester= <!channel>"},
    ],
}
EXPECTED = {
    "bob": "requester; Airflow triggering user (recorded by the orchestrator)",
    "carol": "argument requester= <!channel>",
    "etl-bot": "submitted the request (api-token)",
    "dave": "owner of pipelines 'customer_*' (policy)",
}


@pytest.fixture
def teams() -> Iterator[HttpReceiver]:
    with HttpReceiver(status=202) as receiver:
        yield receiver


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=BOT_TOKEN, users={}) as standin:
        yield standin


@pytest.fixture
def gate_id(
    slack: SlackStandIn, teams: HttpReceiver, service_settings: Settings, service_factory: Any
) -> tuple[Service, str]:
    """The service's notifications are delivered (or given up) before the stand-ins stop."""
    service_settings.policy_path.write_text(POLICY, encoding="utf-8")
    config = ServiceConfig.model_validate(
        {
            "public_url": "http://gatehouse.example.test",  # http: the session cookie is not Secure-only
            "sweep_interval_s": 0.2,
            "notifiers": {
                "slack": {
                    "type": "slack",
                    **SlackConfig(
                        bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_url=slack.api_url
                    ).model_dump(mode="json"),
                },
                "teams": {"type": "teams", "webhooks": {"governance": teams.url + TEAMS_PATH}},
            },
        }
    )
    service: Service = service_factory(config, local_signin=True)
    with service.client("bot") as bot:
        opened = bot.post("/v1/gates", json=REQUEST)
    assert opened.status_code == 200, opened.text
    return service, str(opened.json()["id"])


def test_the_slack_card_lists_everyone_involved_with_the_source(
    gate_id: tuple[Service, str], slack: SlackStandIn
) -> None:
    _, gid = gate_id
    card = slack.wait_for("chat.postMessage", lambda c: f'"value": "{gid}"' in c.text)
    blocks = card.body["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    [section] = [
        b for b in blocks if b["type"] == "section" and "Involved" in b.get("text", {}).get("text", "")
    ]
    text = section["text"]["text"]
    assert text.startswith("*Involved — none of them may decide*\n")
    for who, said in EXPECTED.items():
        escaped = said.replace("<", "&lt;").replace(">", "&gt;")  # a named source cannot ping @channel
        assert f"• `{who}` — {escaped}" in text, text
    assert "<!channel>" not in text


def test_the_teams_card_lists_everyone_involved_with_the_source(
    gate_id: tuple[Service, str], teams: HttpReceiver
) -> None:
    [hit] = teams.wait_for(1, path=TEAMS_PATH)
    [card_attachment] = hit.json()["attachments"]
    [fact_set] = [e for e in card_attachment["content"]["body"] if e["type"] == "FactSet"]
    facts = {f["title"]: f["value"] for f in fact_set["facts"]}
    involved = facts["Involved"]
    for who, said in EXPECTED.items():
        # Markdown-escaped for Teams: the characters a source could format with are backslashed
        assert f"{who} (" in involved.replace("\\", "") and said in involved.replace("\\", ""), involved
    assert involved.endswith("none of them may decide")


def test_the_console_gate_page_and_gatehouse_show_list_everyone_involved(
    gate_id: tuple[Service, str], service_settings: Settings
) -> None:
    service, gid = gate_id
    with httpx.Client(base_url=service.base_url, timeout=30) as client:
        login = client.get("/console/login").text
        csrf = html.unescape(re.search(r'name="csrf_token" value="([^"]+)"', login).group(1))  # type: ignore[union-attr]
        signed = client.post("/console/login/local", data={"csrf_token": csrf, "principal": "erin"})
        assert signed.status_code == 303, signed.text
        answer = client.get(f"/console/gates/{gid}")
        assert answer.status_code == 200, answer.text
        page = answer.text
    listed = re.search(r'<ul class="involved"[^>]*>(.*?)</ul>', page, re.S)
    assert listed, page
    items = [
        html.unescape(re.sub(r"<[^>]+>", "", li)).split(" — ", 1)
        for li in re.findall(r"<li>(.*?)</li>", listed.group(1), re.S)
    ]
    assert {who.strip(): said.strip() for who, said in items} == EXPECTED
    assert "<!channel>" not in page  # escaped like every caller-supplied string
    shown = subprocess.run(
        [sys.executable, "-m", "gate_core.cli", "show", gid],
        env={
            **os.environ,
            "GATEHOUSE_HOME": str(service_settings.home),
            "GATEHOUSE_DATABASE_URL": service_settings.database_url,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    for who, said in EXPECTED.items():
        assert f"  involved    {who} ({said}; may not decide)" in shown.stdout, shown.stdout
