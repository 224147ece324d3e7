"""Acceptance (issue 19): decisions signed with the approver's passkey, in real headless Chromium.

Debian's Chromium, driven by Playwright, with the DevTools virtual authenticator (CTAP2, internal
transport, resident keys, user verification on) reached through a CDP session. The console is
served at http://localhost:PORT — a secure context for WebAuthn — and that origin is the relying
party (``public_url``).

1. bob registers a passkey in the console, approves a prod redeploy whose rule requires signed
   decisions, and the real ``gatehouse audit verify`` reports the signed decision verified.
2. An attacker holding bob's session cookie but not his authenticator cannot complete a decision:
   the browser has no key to sign with, a form posted without a signature is refused, bob's
   signature of another gate replayed here is refused; bob's API token and the CLI are refused
   with a link to the console.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, expect

from gate_core import Gatekeeper, Settings, open_gatekeeper
from gate_core.service import ServiceConfig, create_app
from tests.service.card_render import picture_path
from tests.service.conftest import Service, ThreadServer, free_port, make_tokens, wait_healthy
from tests.service.test_console_browser import browser, sign_in  # noqa: F401 - shared fixture

PROD_REDEPLOY = {
    "action": "redeploy",
    "target": "models/churn",
    "environment": "prod",
    "parameters": {"version": "2.4.1"},
    "requester": "alice",
    "reason": "retrained on November data",
    "run": {"orchestrator": "airflow", "pipeline": "churn_release", "run_id": "manual__2026-12-05"},
}


def require_signatures(settings: Settings) -> None:
    """The example policy with its prod-redeploy rule requiring passkey-signed decisions."""
    text = settings.policy_path.read_text(encoding="utf-8")
    marker = "    break_glass_groups: [sre-oncall]\n"
    assert marker in text
    settings.policy_path.write_text(
        text.replace(marker, marker + "    signature: passkey\n"), encoding="utf-8"
    )


@pytest.fixture
def localhost_service(service_settings: Settings) -> Iterator[Service]:
    """The service with local sign-in, its public URL (the relying party) on localhost."""
    require_signatures(service_settings)
    gatekeeper: Gatekeeper = open_gatekeeper(service_settings)
    port = free_port()
    base_url = f"http://localhost:{port}"
    app = create_app(gatekeeper, ServiceConfig(public_url=base_url, sweep_interval_s=0.2), local_signin=True)
    server = ThreadServer(app, port).__enter__()
    wait_healthy(base_url)
    yield Service(base_url, service_settings, gatekeeper, make_tokens(gatekeeper), app)
    server.__exit__()
    gatekeeper.store.close()


def open_redeploy(service: Service) -> str:
    with service.client("bot") as bot:
        response = bot.post("/v1/gates", json=PROD_REDEPLOY)
    assert response.status_code == 200, response.text
    assert response.json()["signature"] == "passkey"
    return str(response.json()["id"])


def virtual_authenticator(context: BrowserContext, page: Page) -> tuple[CDPSession, str]:
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    made = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, str(made["authenticatorId"])


def register_passkey(page: Page, service: Service, name: str) -> None:
    page.goto(f"{service.base_url}/console/passkeys")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Add passkey").click()
    expect(page.get_by_role("status").first).to_contain_text(f"Passkey {name!r} registered")
    expect(page.get_by_role("button", name=f"Remove {name}")).to_be_visible()


def gatehouse(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GATEHOUSE_HOME": str(settings.home),
        "GATEHOUSE_DATABASE_URL": settings.database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "gate_core.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def audit_bodies(service: Service, event: str) -> list[dict[str, Any]]:
    return [e.decoded() for e in service.gatekeeper.audit.entries() if e.event == event]


def test_bob_signs_a_prod_redeploy_with_his_passkey_and_verify_checks_it(
    localhost_service: Service,
    browser: Browser,  # noqa: F811 - the shared fixture
) -> None:
    service = localhost_service
    gate_id = open_redeploy(service)
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    cdp, authenticator = virtual_authenticator(context, page)
    sign_in(page, service, "Bob (data governance)")
    row = page.get_by_role("row").filter(has_text=gate_id)
    expect(row).to_contain_text("signed decisions")  # the pending list says so too
    register_passkey(page, service, "bob's laptop")

    page.goto(f"{service.base_url}/console/gates/{gate_id}")
    expect(page.get_by_text("Signed decisions required")).to_be_visible()
    page.get_by_label("Comment").fill("canary metrics look good")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Your approval is recorded (signed with your passkey); 1 more needed"
    )
    expect(page.get_by_role("cell", name="canary metrics look good")).to_be_visible()
    expect(page.get_by_role("cell", name=re.compile("signed with passkey"))).to_be_visible()
    page.screenshot(path=str(picture_path("passkey-approve.png")), full_page=True)

    # The authenticator really holds the key the log registered, and signed once.
    [held] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    [registered] = audit_bodies(service, "passkey.registered")
    assert registered["payload"]["principal"] == "bob"
    assert registered["payload"]["rp_id"] == "localhost"
    assert registered["payload"]["origin"] == service.base_url
    assert held["signCount"] >= 1
    [decision] = [b for b in audit_bodies(service, "decision.recorded") if b["gate"] == gate_id]
    signed = decision["payload"]["passkey"]
    assert signed["credential_id"] == registered["payload"]["credential_id"]
    assert set(signed) >= {"authenticator_data", "client_data_json", "signature", "sign_count"}
    with service.client("bob") as api:
        [recorded] = api.get(f"/v1/gates/{gate_id}").json()["decisions"]
    assert recorded["passkey"] == signed["credential_id"]

    verified = gatehouse(service.settings, "audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] is True and report["signed_decisions"] == 1
    human = gatehouse(service.settings, "audit", "verify")
    assert "1 passkey-signed decision(s) verified" in human.stdout
    context.close()


def test_a_stolen_session_cookie_without_the_authenticator_cannot_decide(
    localhost_service: Service,
    browser: Browser,  # noqa: F811 - the shared fixture
) -> None:
    service = localhost_service
    first, target = open_redeploy(service), open_redeploy(service)

    # bob, on his own device, registers a passkey and signs a decision on the first gate.
    bobs = browser.new_context()
    page = bobs.new_page()
    virtual_authenticator(bobs, page)
    sign_in(page, service, "Bob (data governance)")
    register_passkey(page, service, "bob's laptop")
    page.goto(f"{service.base_url}/console/gates/{first}")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status").first).to_contain_text("signed with your passkey")

    # The attacker copies bob's session cookie into a browser with an authenticator of their own.
    stolen = browser.new_context()
    stolen.add_cookies(bobs.cookies())  # type: ignore[arg-type]  # a Cookie is a valid SetCookieParam
    thief = stolen.new_page()
    virtual_authenticator(stolen, thief)
    thief.goto(f"{service.base_url}/console/gates/{target}")
    expect(thief.get_by_text("Signed in as")).to_contain_text("Bob")  # the cookie works…
    thief.get_by_role("button", name="Approve").click()
    expect(thief.locator("#sign-status")).to_contain_text("Not signed, nothing recorded", timeout=90_000)

    # …and the form posted by hand, without a signature or with bob's signature of the other gate.
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', thief.content())
    assert csrf is not None
    cookies = {c["name"]: c["value"] for c in stolen.cookies()}
    [bobs_decision] = [b for b in audit_bodies(service, "decision.recorded") if b["gate"] == first]
    replayed = {**bobs_decision["payload"]["passkey"]}
    replayed.pop("sign_count")
    attempts = {
        "no signature": {"verdict": "approve", "comment": ""},
        "bob's signature of another gate": {
            "verdict": "approve",
            "comment": "",
            "assertion": json.dumps(replayed),
        },
    }
    for what, form in attempts.items():
        posted = httpx.post(
            f"{service.base_url}/console/gates/{target}/decide",
            data={"csrf_token": csrf[1], **form},
            cookies=cookies,
        )
        assert posted.status_code == 303, what
        # the session (with the flash) comes back in Set-Cookie; the next page shows the refusal
        cookies["gatehouse_console"] = posted.cookies["gatehouse_console"]
        shown = httpx.get(f"{service.base_url}/console/gates/{target}", cookies=cookies).text
        flashes = re.findall(r"role=\"alert\">(Refused: [^<]*)<", shown)
        flash = flashes[-1]
        expected = "this channel cannot sign it" if what == "no signature" else "does not verify"
        assert expected in flash, (what, flash)

    # bob's own API token and the CLI cannot complete it either: the refusal links the console.
    with service.client("bob") as api:
        refused = api.post(f"/v1/gates/{target}/decisions", json={"decision": "approve"})
    assert (refused.status_code, refused.json()["code"]) == (403, "signature_required")
    assert f"{service.base_url}/console/gates/{target}" in refused.json()["detail"]

    with service.client("bob") as api:
        gate = api.get(f"/v1/gates/{target}").json()
    assert gate["status"] == "PENDING" and gate["decisions"] == []
    refusals = [b for b in audit_bodies(service, "decision.refused") if b["gate"] == target]
    assert {r["payload"]["reason"] for r in refusals} == {"signature_required", "signature_invalid"}
    bobs.close()
    stolen.close()
