"""A real service with SCIM provisioning on (SQLite and PostgreSQL), a Slack stand-in and console
sign-in, whose directory file keeps the service principal, the requester and the admin — and
leaves the approvers (bob, carol) to the IdP, as a deployment that combines both does."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from gate_core import Gatekeeper, Scope, Settings, open_gatekeeper
from gate_core.identity._provisioned import ProvisioningConfig
from gate_core.service import ServiceConfig, create_app
from gate_core.service.notify._slack import SlackConfig
from gate_core.testing import actor
from tests.service.conftest import ThreadServer, free_port, wait_healthy
from tests.service.slack_standin import SlackStandIn

SLACK_TOKEN = "xoxb-0000-gatehouse-scim-test"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SCIM_MEDIA = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

# Service principal, requester and admin stay in the file; the approvers come from the IdP.
FILE_DIRECTORY = """\
principals:
  - id: alice
    email: alice@example.com
    groups: [data-engineering]
  - id: frank
    email: frank@example.com
    groups: [gatehouse-admins]
  - id: etl-bot
    kind: service
"""
SLACK_USERS: dict[str, str | None] = {"U0BOB": "bob@example.com", "U0CAROL": "carol@example.com"}


@dataclass
class ScimRig:
    base_url: str
    gatekeeper: Gatekeeper
    scim_token: str
    slack: SlackStandIn
    settings: Settings
    tokens: dict[str, str] = field(default_factory=dict)

    def scim(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base_url}/scim/v2",
            headers={"Authorization": f"Bearer {token or self.scim_token}", "Content-Type": SCIM_MEDIA},
            timeout=30,
        )

    def api(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.tokens[who]}"}, timeout=30
        )

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        with self.scim() as client:
            return client.request(method, path, content=json.dumps(body) if body is not None else None)

    def create_user(self, user_name: str, email: str, **extra: Any) -> str:
        body = {
            "schemas": [USER_SCHEMA],
            "userName": user_name,
            "name": {"givenName": user_name.title(), "familyName": "Example"},
            "emails": [{"value": email, "type": "work", "primary": True}],
            "active": True,
            **extra,
        }
        response = self.send("POST", "/Users", body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def create_group(self, name: str, members: list[str]) -> str:
        body = {"schemas": [GROUP_SCHEMA], "displayName": name, "members": [{"value": m} for m in members]}
        response = self.send("POST", "/Groups", body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def patch(self, path: str, *operations: dict[str, Any]) -> httpx.Response:
        return self.send("PATCH", path, {"schemas": [PATCH_SCHEMA], "Operations": list(operations)})

    def open_gate(self) -> str:
        request = {
            "action": "export",
            "target": "s3://exports/customers.csv",
            "datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["pii"]}],
            "requester": "alice",
            "reason": "quarterly report",
        }
        with self.api("bot") as bot:
            response = bot.post("/v1/gates", json=request)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def audit(self, event: str | None = None) -> list[dict[str, Any]]:
        entries = [json.loads(e.body) | {"event": e.event} for e in self.gatekeeper.audit.entries()]
        return [e for e in entries if event is None or e["event"] == event]


@pytest.fixture
def scim_rig(service_settings: Settings) -> Iterator[ScimRig]:
    service_settings.directory_path.write_text(FILE_DIRECTORY, encoding="utf-8")
    gatekeeper = open_gatekeeper(service_settings)
    _, scim_token = gatekeeper.tokens.create("frank", Scope.SCIM, created_by=actor("frank"))
    _, bot_token = gatekeeper.tokens.create("etl-bot", Scope.REQUEST, created_by=actor("frank"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with SlackStandIn(token=SLACK_TOKEN, users=SLACK_USERS) as slack:
        config = ServiceConfig(
            public_url=base_url,
            sweep_interval_s=0.2,
            slack=SlackConfig(bot_token=SLACK_TOKEN, signing_secret=SLACK_SECRET, api_url=slack.api_url),
            scim=ProvisioningConfig(),
        )
        app = create_app(gatekeeper, config, local_signin=True)
        with ThreadServer(app, port):
            wait_healthy(base_url)
            yield ScimRig(base_url, gatekeeper, scim_token, slack, service_settings, {"bot": bot_token})
    gatekeeper.store.close()


def person_token(rig: ScimRig, who: str, scope: Scope = Scope.DECIDE) -> str:
    """``who`` creates their own token (as they would after signing in)."""
    _, token = rig.gatekeeper.tokens.create(who, scope, created_by=actor(who))
    rig.tokens[who] = token
    return token


StartRig = Callable[[], ScimRig]
