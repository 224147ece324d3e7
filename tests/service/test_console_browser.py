"""Acceptance: the console in real headless Chromium (Debian's, driven by Playwright).

A pipeline opens a gate and long-polls for it; bob signs in, sees it in the pending list, approves
it with a comment, and the pipeline's wait returns APPROVED at once. Then alice, who requested
another gate, signs in and tries to approve it: the page shows the core's refusal and the gate
stays PENDING.

Chromium comes from the system package (``.ci/bootstrap.sh`` installs it); this test fails — it
never skips — when it is missing, and never downloads a browser.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.service.conftest import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / ".gatehouse-dev" / "artifacts"
PII_EXPORT = {
    "action": "export",
    "target": "s3://exports/customers.csv",
    "datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["pii"]}],
    "requester": "alice",
    "reason": "quarterly report",
    "run": {"orchestrator": "airflow", "pipeline": "customer_exports", "run_id": "manual__2026-11-21"},
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the console acceptance test needs Debian's Chromium. "
            "Install it with `apt-get install -y chromium` (.ci/bootstrap.sh does this when run as root); "
            "never `playwright install`.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def open_gate(service: Service) -> str:
    with service.client("bot") as bot:
        response = bot.post("/v1/gates", json=PII_EXPORT)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


class Waiter(threading.Thread):
    """The pipeline side: one long-poll on the gate, timing when it came back."""

    def __init__(self, service: Service, gate_id: str) -> None:
        super().__init__(daemon=True)
        self.service, self.gate_id = service, gate_id
        self.result: dict[str, Any] = {}
        self.returned_at = 0.0

    def run(self) -> None:
        with self.service.client("bot") as bot:
            response = bot.get(f"/v1/gates/{self.gate_id}/wait", params={"timeout": 30})
        self.returned_at = time.monotonic()
        self.result = response.json()


def wait_until_waiting(service: Service, count: int) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{service.base_url}/healthz").json()["waiting_gates"] < count:
        assert time.monotonic() < deadline, "the waiting client never subscribed"
        time.sleep(0.02)


def sign_in(page: Page, service: Service, label: str) -> None:
    page.goto(f"{service.base_url}/console/")
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    page.get_by_role("button", name=label).click()
    expect(page.get_by_text("Signed in as")).to_be_visible()


def test_approve_in_chromium_wakes_the_pipeline_and_the_requester_is_refused(
    service_factory: Callable[..., Service], browser: Browser, tmp_path: Path
) -> None:
    service = service_factory(local_signin=True)
    gate_id = open_gate(service)
    waiter = Waiter(service, gate_id)
    waiter.start()
    wait_until_waiting(service, 1)

    context = browser.new_context(viewport={"width": 1360, "height": 820})
    page = context.new_page()
    sign_in(page, service, "Bob (data governance)")
    expect(page.get_by_role("heading", name="Pending gates")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=gate_id)
    expect(row).to_contain_text("pii")
    expect(row).to_contain_text("pii-export")
    expect(row).to_contain_text("0/1")
    shot = tmp_path / "console-pending.png"
    page.screenshot(path=str(shot), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "console-pending.png")

    row.get_by_role("link", name=gate_id).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("export")
    page.get_by_label("Comment").fill("checked the recipient list")
    clicked = time.monotonic()
    page.get_by_role("button", name="Approve").click()
    waiter.join(timeout=10)

    assert not waiter.is_alive(), "the waiting client did not return"
    assert waiter.result["status"] == "APPROVED"
    assert waiter.returned_at - clicked < 2.0, (
        f"waiter returned {waiter.returned_at - clicked:.2f}s after the click"
    )
    expect(page.get_by_role("status")).to_contain_text("the gate is now APPROVED")
    expect(page.get_by_role("cell", name="checked the recipient list")).to_be_visible()
    assert waiter.result["decisions"][0]["via"] == "console-local"

    # The requester of another gate signs in and tries to approve it: the core refuses.
    other = open_gate(service)
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, service, "Alice (data engineer, requests exports)")
    page.goto(f"{service.base_url}/console/gates/{other}")
    expect(page.get_by_role("note")).to_contain_text("you requested this gate; someone else must decide it")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Refused: alice: you requested this gate; someone else must decide it"
    )
    with service.client("bob") as bob:
        assert bob.get(f"/v1/gates/{other}").json()["status"] == "PENDING"
    context.close()


def test_tokens_page_in_chromium_creates_shows_once_and_revokes(
    service_factory: Callable[..., Service], browser: Browser, tmp_path: Path
) -> None:
    """In a sandbox home every page says so; alice creates her own token (the secret shown once, on
    the answer to the form), it works over the API, she revokes it; frank, an admin, also issues
    a pipeline-limited service token."""
    service = service_factory(local_signin=True, sandbox=True)
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    sign_in(page, service, "Alice (data engineer, requests exports)")
    sandbox = page.get_by_role("region", name="Sandbox warning")
    expect(sandbox).to_contain_text("SANDBOX")
    expect(sandbox).to_contain_text("identities here are unverified")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tokens").click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    expect(page.get_by_role("heading", name="Service tokens")).to_have_count(0)  # not an admin
    expect(sandbox).to_be_visible()
    page.get_by_label("Scope").select_option("decide")
    page.get_by_label("Description").fill("laptop scripts")
    page.get_by_role("button", name="Create my token").click()
    secret = page.locator("#new-token").inner_text()
    assert secret.startswith("gh_")
    expect(page.get_by_text("it is shown this once")).to_be_visible()
    page.screenshot(path=str(tmp_path / "console-tokens.png"), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp_path / "console-tokens.png", ARTIFACTS / "console-tokens.png")
    with httpx.Client(base_url=service.base_url, headers={"Authorization": f"Bearer {secret}"}) as api:
        assert api.get("/v1/gates").status_code == 200

        page.goto(f"{service.base_url}/console/tokens")
        expect(page.locator("#new-token")).to_have_count(0)  # never shown again
        token_id = secret.split("_")[1]
        row = page.get_by_role("row").filter(has_text=token_id)
        expect(row).to_contain_text("laptop scripts")
        expect(row).to_contain_text("by alice via console-local")
        row.get_by_role("button", name=f"Revoke token {token_id}").click()
        expect(page.get_by_role("status")).to_contain_text(f"Token {token_id} is revoked")
        assert api.get("/v1/gates").status_code == 401

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, service, "Frank (platform admin; manages service tokens, approves nothing)")
    page.goto(f"{service.base_url}/console/tokens")
    page.get_by_label("Service principal").select_option("etl-bot")
    page.get_by_label("Pipelines").fill("customer_*")
    page.get_by_role("button", name="Create service token").click()
    expect(page.get_by_role("heading", name="created for etl-bot")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="pipelines customer_*")).to_have_count(1)
    context.close()
