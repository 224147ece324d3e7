"""The README's pictures of the Teams and Slack cards, made from the payloads the service really sent.

A real service posts a card for a real gate to the Bot Connector and Slack stand-ins; the Adaptive
Card JSON and the Block Kit blocks they received are rendered to HTML (tests/service/card_render.py)
and photographed in Debian's headless Chromium: teams-card.png, teams-card-approved.png and
slack-card.png, into .gatehouse-dev/artifacts/ (docs/ with GATEHOUSE_REFRESH_PICTURES=1). They are
renderings of the real payloads, not screenshots of Teams or Slack. The test also checks that what
is drawn is what an approver needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, sync_playwright

from tests.service.card_render import adaptive_card_html, picture_path, slack_blocks_html
from tests.service.slack_standin import SlackStandIn
from tests.service.test_console_browser import CHROMIUM, CHROMIUM_ARGS
from tests.service.test_slack import PII_EXPORT as SLACK_EXPORT
from tests.service.test_slack import SlackRig, slack, socket_mode, start_rig
from tests.service.test_teams_bot import TeamsRig, connector, invoke_card, start_teams

__all__ = ["connector", "slack", "socket_mode", "start_rig", "start_teams"]  # fixtures used here

NOTE = "Rendered by Gatehouse's test suite from the exact {what} the service sent; not a screenshot of {app}."
REQUEST: dict[str, Any] = {
    "action": "export",
    "target": "s3://exports/customers.csv",
    "datasets": [
        {"namespace": "warehouse", "name": "customers", "tags": ["pii"]},
        {"namespace": "warehouse", "name": "regions", "tags": []},
    ],
    "requester": "alice",
    "reason": "Quarterly churn report for the board",
    "run": {
        "orchestrator": "airflow",
        "pipeline": "exports_dag",
        "run_id": "scheduled__2026-01-05",
        "task_id": "export_customers",
        "url": "https://airflow.example.test/dags/exports_dag/runs/1",
    },
}


@pytest.fixture
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One picture is enough: SQLite only (the cards do not depend on the store)."""
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'gatehouse.db'}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (never `playwright install`)", pytrace=False
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def photograph(browser: Browser, page_html: str, name: str, must_show: list[str]) -> Path:
    page = browser.new_page(viewport={"width": 820, "height": 600}, device_scale_factor=1)
    try:
        page.set_content(page_html)
        shown = page.inner_text("body")
        for text in must_show:
            assert text in shown, text
        assert "unsupported" not in page.content().split("</style>", 1)[1]  # every element was drawn
        target = picture_path(name)
        page.locator("body").screenshot(path=str(target))
    finally:
        page.close()
    with Image.open(target) as image:
        assert image.width >= 700 and image.height >= 250, image.size
    return target


def test_teams_card_pictures(start_teams: Callable[..., TeamsRig], browser: Browser) -> None:
    rig = start_teams()
    gate_id = rig.open_gate(**REQUEST)
    posted = rig.card(gate_id).card
    photograph(
        browser,
        adaptive_card_html(posted, NOTE.format(what="Adaptive Card JSON", app="Microsoft Teams")),
        "teams-card.png",
        [
            "Approval needed",
            "export on s3://exports/customers.csv",
            "pii-export",
            "Approve",
            "Reject…",
            "Review in Gatehouse",
            "Quarterly churn report for the board",
        ],
    )
    invoke_card(rig.click("29:1bob", "approve", gate_id))
    updated = rig.connector.wait_for("PUT", lambda c: "APPROVED" in c.text).card
    photograph(
        browser,
        adaptive_card_html(
            updated,
            NOTE.format(what="Adaptive Card JSON (the update after bob's click)", app="Microsoft Teams"),
        ),
        "teams-card-approved.png",
        ["Approved", "Bob (data governance) (bob)", "via teams"],
    )


def test_slack_card_picture(
    start_rig: Callable[..., SlackRig], slack: SlackStandIn, browser: Browser
) -> None:
    rig = start_rig()
    gate_id = rig.open_gate(**{**SLACK_EXPORT, **REQUEST})["id"]
    card = rig.card(gate_id)
    photograph(
        browser,
        slack_blocks_html(list(card.body["blocks"]), NOTE.format(what="Block Kit blocks", app="Slack")),
        "slack-card.png",
        [
            "export",
            "s3://exports/customers.csv",
            "pii-export",
            "Approve",
            "Reject",
            "Open in Gatehouse console",
        ],
    )
