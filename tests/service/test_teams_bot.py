"""Teams approvals end to end: a real service over a socket, the Bot Connector stand-in at the wire.

The service posts Adaptive Cards through the stand-in's conversations API (with the bot's
client-credentials token); the tests click as Teams does — an ``adaptiveCard/action`` invoke
activity carrying a Bot Connector JWT signed with the stand-in's published key — and read back the
invoke response, what the service sent to the Bot Connector, the store and the audit trail. On
SQLite and PostgreSQL (``database_url``). The attacks on the token are in
tests/security/test_teams_N.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gate_core import AuthMethod, Gate, GateRequest, GateStatus, Settings, Verdict
from gate_core._audit import Event
from gate_core._errors import ConfigError
from gate_core.service import ServiceConfig
from gate_core.testing import actor
from tests.service.conftest import Service
from tests.service.teams_standin import BotConnectorStandIn, ConnectorCall, invoke, member

APP_ID = "5c0a2e3e-8f1d-4c6b-9a57-0b7a1e2f9d11"
APP_PASSWORD = "gatehouse~test~client~secret"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CONVERSATION = "19:0a1b2c3d4e5f@thread.tacv2"
PUBLIC_URL = "https://gatehouse.example.test"
MESSAGES = "/v1/teams/messages"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"

# Teams user id → (display name, mailbox, user principal name, Entra object id)
PEOPLE: dict[str, tuple[str, str | None, str | None, str]] = {
    "29:1alice": ("Alice Liddell", "alice@example.com", "alice@example.com", "aad-alice"),
    "29:1bob": ("Bob Builder", "Bob@Example.com", "bob@example.onmicrosoft.com", "aad-bob"),
    "29:1carol": ("Carol Danvers", "carol@example.com", "carol@example.com", "aad-carol"),
    "29:1dave": ("Dave Lister", "dave@example.com", "dave@example.com", "aad-dave"),
    "29:1erin": ("Erin Brockovich", None, "erin@example.com", "aad-erin"),  # no mailbox: the UPN names her
    "29:1mallory": ("Mallory Malicious", "mallory@elsewhere.example", "mallory@elsewhere.example", "aad-mal"),
    "29:1nomail": ("Guest User", None, None, "aad-guest"),
    # alice's second mailbox spelling (case, sub-address) under another sign-in name: still alice
    "29:1alias": ("Alice Again", "Alice+Teams@EXAMPLE.com", "a.liddell@example.onmicrosoft.com", "aad-alias"),
    # a mailbox that is bob's and a sign-in name that is carol's: which one clicked?
    "29:1split": ("Split Person", "bob@example.com", "carol@example.com", "aad-split"),
}
PII_EXPORT: dict[str, Any] = {
    "action": "export",
    "target": "s3://exports/customers.csv",
    "datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["pii"]}],
    "requester": "alice",
    "reason": "quarterly report [click](https://evil.example)",
    "run": {"orchestrator": "airflow", "pipeline": "exports_dag", "run_id": "scheduled__2026-01-05"},
}
PROD_REDEPLOY: dict[str, Any] = {
    "action": "redeploy",
    "target": "models/churn",
    "environment": "prod",
    "requester": "alice",
}


@pytest.fixture
def connector() -> Iterator[BotConnectorStandIn]:
    members = {uid: member(uid, n, e, u, aad, TENANT) for uid, (n, e, u, aad) in PEOPLE.items()}
    with BotConnectorStandIn(
        app_id=APP_ID,
        app_password=APP_PASSWORD,
        tenant_id=TENANT,
        members=members,
        conversation_id=CONVERSATION,
    ) as standin:
        yield standin


def bot_entry(connector: BotConnectorStandIn, **overrides: Any) -> dict[str, Any]:
    """The ``notifiers.teamsbot`` entry of service.yaml, pointed at the stand-in."""
    return {
        "type": "teams-bot",
        "app_id": APP_ID,
        "app_password": APP_PASSWORD,
        "tenant_id": TENANT,
        "conversations": {
            "governance": {"service_url": connector.service_url, "conversation_id": CONVERSATION}
        },
        "token_url": connector.token_url,
        "openid_metadata_url": connector.metadata_url,
        **overrides,
    }


def teams_policy(settings: Settings) -> None:
    """The example policy, with its cards sent to the Teams conversation instead of Slack."""
    text = settings.policy_path.read_text(encoding="utf-8")
    text = text.replace('"slack:#data-approvals"', '"teamsbot:governance"')
    text = text.replace('"slack:#ml-releases"', '"teamsbot:governance"')
    settings.policy_path.write_text(text, encoding="utf-8")


@dataclass
class TeamsRig:
    service: Service
    connector: BotConnectorStandIn

    def open_gate(self, **request: Any) -> str:
        with self.service.client("bot") as bot:
            response = bot.post("/v1/gates", json={**PII_EXPORT, **request})
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def card(self, gate_id: str) -> ConnectorCall:
        """The card posted for the gate, once the service has stored its reference."""
        posted = self.connector.wait_for(
            "POST", lambda c: c.path.endswith("/activities") and f'"gate": "{gate_id}"' in c.text
        )
        store = self.service.gatekeeper.store
        deadline = time.monotonic() + 10  # the hub stores the reference just after the answer
        while not any(r.message_ref == posted.answer["id"] for r in store.notifications_for(gate_id)):
            assert time.monotonic() < deadline, "the card's reference was never stored"
            time.sleep(0.01)
        return posted

    def activity(self, user: str, verb: str, gate_id: str, reply_to: str, **data: Any) -> dict[str, Any]:
        return invoke(
            service_url=self.connector.service_url,
            conversation_id=CONVERSATION,
            reply_to_id=reply_to,
            user_id=user,
            aad_object_id=PEOPLE[user][3] if user in PEOPLE else "aad-unknown",
            tenant_id=TENANT,
            app_id=APP_ID,
            verb=verb,
            data={"gate": gate_id, **data},
        )

    def post(self, activity: dict[str, Any], token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.connector.connector_token()}"}
        return httpx.post(f"{self.service.base_url}{MESSAGES}", json=activity, headers=headers, timeout=30)

    def click(self, user: str, verb: str, gate_id: str, **data: Any) -> httpx.Response:
        card = self.card(gate_id)
        return self.post(self.activity(user, verb, gate_id, str(card.answer["id"]), **data))

    def gate(self, gate_id: str) -> Gate:
        return self.service.gatekeeper.get(gate_id)

    def audit_size(self) -> int:
        return self.service.gatekeeper.store.audit_head()[0]


@pytest.fixture
def start_teams(
    service_factory: Callable[..., Service], service_settings: Settings, connector: BotConnectorStandIn
) -> Callable[..., TeamsRig]:
    def start(policy: str | None = None, **entry: Any) -> TeamsRig:
        if policy is None:
            teams_policy(service_settings)
        else:
            service_settings.policy_path.write_text(policy, encoding="utf-8")
        config = ServiceConfig(
            public_url=PUBLIC_URL, sweep_interval_s=0.2, notifiers={"teamsbot": bot_entry(connector, **entry)}
        )
        return TeamsRig(service_factory(config), connector)

    return start


@pytest.fixture
def rig(start_teams: Callable[..., TeamsRig]) -> TeamsRig:
    return start_teams()


def card_text(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


def executes(card: dict[str, Any]) -> list[tuple[str, str]]:
    """(verb, gate) of every Action.Execute on the card, ShowCard forms included."""
    found: list[tuple[str, str]] = []
    for action in card.get("actions", []):
        if action["type"] == "Action.Execute":
            found.append((action["verb"], action["data"]["gate"]))
        if action["type"] == "Action.ShowCard":
            found += executes(action["card"])
    return found


def invoke_card(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["statusCode"], body["type"]) == (200, CARD_TYPE), body
    return dict(body["value"])


def _wait_until_waiting(service: Service, timeout: float = 10.0) -> None:
    """Until the long-poll has subscribed (healthz counts waited-on gates): orders the test only."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{service.base_url}/healthz").json()["waiting_gates"] < 1:
        assert time.monotonic() < deadline, "the waiter never subscribed"
        time.sleep(0.01)


# ---------------------------------------------------------------- the acceptance


def test_acceptance_card_refusal_approval_update_and_prompt_resume(rig: TeamsRig) -> None:
    gate_id = rig.open_gate()

    # the card reaches the conversation, sent with the bot's own client-credentials token
    card_call = rig.card(gate_id)
    assert card_call.path == f"/smba/amer/v3/conversations/{CONVERSATION}/activities"
    [token_call] = rig.connector.calls("POST", "/oauth2/v2.0/token")
    assert token_call.body["grant_type"] == "client_credentials"
    assert card_call.body["type"] == "message"
    card = card_call.card
    assert card["type"] == "AdaptiveCard"
    assert tuple(int(p) for p in card["version"].split(".")) >= (1, 4)
    assert executes(card) == [("approve", gate_id), ("reject", gate_id)]
    [show] = [a for a in card["actions"] if a["type"] == "Action.ShowCard"]
    [reason] = show["card"]["body"]
    assert (reason["type"], reason["id"], reason["isRequired"]) == ("Input.Text", "reason", True)
    assert card["refresh"]["action"] == {
        "type": "Action.Execute",
        "title": "Refresh",
        "verb": "refresh",
        "data": {"gate": gate_id},
    }
    content = card_text(card)
    for expected in ("Approval needed", "s3://exports/customers.csv", "warehouse/customers", "pii-export"):
        assert expected in content, expected
    # the requester's reason is shown as typed, in a TextRun, which Teams never renders as Markdown
    runs = [i for b in card["body"] if b["type"] == "RichTextBlock" for i in b["inlines"]]
    assert runs == [{"type": "TextRun", "text": PII_EXPORT["reason"]}]
    assert content.count("evil.example") == 1
    [ref] = rig.service.gatekeeper.store.notifications_for(gate_id)
    assert (ref.kind, ref.target, ref.channel, ref.message_ref) == (
        "teams-bot",
        "teamsbot:governance",
        "governance",
        card_call.answer["id"],
    )

    # the pipeline waits (long-poll) while people click
    waited: dict[str, Any] = {}

    def wait() -> None:
        with rig.service.client("bot") as bot:
            response = bot.get(f"/v1/gates/{gate_id}/wait", params={"timeout": 20})
        waited.update(at=time.monotonic(), status=response.status_code, gate=response.json())

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    _wait_until_waiting(rig.service)

    # alice asked for it: her click is refused to her alone and changes nothing
    refused = invoke_card(rig.click("29:1alice", "approve", gate_id))
    assert "alice: you requested this gate; someone else must decide it" in card_text(refused)
    assert refused["body"][0]["color"] == "Attention"
    assert refused["refresh"]["userIds"] == ["29:1alice"]  # her private view refreshes for her only
    assert executes(refused) == [("approve", gate_id), ("reject", gate_id)]  # the gate is still open
    assert rig.gate(gate_id).status is GateStatus.PENDING
    assert rig.gate(gate_id).decisions == ()
    rig.service.drain()
    assert rig.connector.calls("PUT") == []  # nobody else's card changed
    assert waiter.is_alive()

    # bob's click approves it; the invoke response shows him the outcome, the waiter resumes at once
    clicked = time.monotonic()
    approved = rig.click("29:1bob", "approve", gate_id)
    answered = time.monotonic()
    outcome = invoke_card(approved)
    assert answered - clicked < 3.0
    waiter.join(timeout=10)
    assert waited["status"] == 200
    assert waited["gate"]["status"] == "APPROVED"
    assert waited["at"] - answered < 1.0
    assert "Approved" in card_text(outcome)
    assert executes(outcome) == []  # decided: no buttons any more
    assert "userIds" not in outcome["refresh"]

    gate = rig.gate(gate_id)
    assert gate.status is GateStatus.APPROVED
    [decision] = gate.decisions
    assert (decision.principal_id, decision.verdict, decision.via) == (
        "bob",
        Verdict.APPROVE,
        AuthMethod.TEAMS,
    )
    assert rig.connector.member_lookups() == ["29:1alice", "29:1bob"]

    # everyone sees the outcome: the posted activity itself is replaced
    update = rig.connector.wait_for("PUT", lambda c: "APPROVED" in c.text)
    assert update.path == f"/smba/amer/v3/conversations/{CONVERSATION}/activities/{card_call.answer['id']}"
    assert update.status == 200
    assert "Bob (data governance) (bob)" in card_text(update.card)
    assert executes(update.card) == []
    rig.service.drain()
    assert len(rig.connector.calls("PUT")) == 1

    # the trail says who decided through Teams, and who was refused
    entries = [e.decoded() for e in rig.service.gatekeeper.store.audit_entries() if e.gate_id == gate_id]
    events = [(e["event"], e["actor"]["principal_id"], e["actor"]["via"]) for e in entries]
    assert (Event.DECISION_REFUSED, "alice", "teams") in events
    assert (Event.DECISION_RECORDED, "bob", "teams") in events
    with rig.service.client("admin") as admin:
        assert admin.get("/v1/audit/verify").json()["ok"] is True


def test_reject_needs_a_reason_and_records_it(rig: TeamsRig) -> None:
    gate_id = rig.open_gate()
    blank = invoke_card(rig.click("29:1carol", "reject", gate_id, reason="   "))
    assert "A reason is required" in card_text(blank)
    assert rig.gate(gate_id).status is GateStatus.PENDING

    why = "customers still has raw e-mails; mask them first"
    rejected = invoke_card(rig.click("29:1carol", "reject", gate_id, reason=why))
    assert "Rejected" in card_text(rejected)
    gate = rig.gate(gate_id)
    assert gate.status is GateStatus.REJECTED
    [decision] = gate.decisions
    assert (decision.principal_id, decision.verdict, decision.comment, decision.via) == (
        "carol",
        Verdict.REJECT,
        why,
        AuthMethod.TEAMS,
    )
    update = rig.connector.wait_for("PUT", lambda c: "REJECTED" in c.text)
    assert why in card_text(update.card)


def test_members_the_directory_does_not_know_decide_nothing(rig: TeamsRig) -> None:
    gate_id = rig.open_gate()
    audit_before = rig.audit_size()
    refusals = {
        "29:1mallory": "Teams member (mallory@elsewhere.example) is not in the directory",
        "29:1nomail": "Teams member (no e-mail or user principal name) is not in the directory",
        "29:1ghost": "Teams could not tell Gatehouse who you are",  # the member lookup answers 404
    }
    for user, says in refusals.items():
        answer = invoke_card(rig.click(user, "approve", gate_id))
        assert says in card_text(answer), user
        assert answer["refresh"]["userIds"] == [user]
    assert rig.gate(gate_id).status is GateStatus.PENDING
    assert rig.audit_size() == audit_before  # no principal, so no decision to audit
    rig.service.drain()
    assert rig.connector.calls("PUT") == []


def test_members_are_matched_on_canonical_identities_and_never_ambiguously(rig: TeamsRig) -> None:
    gate_id = rig.open_gate()
    alias = invoke_card(rig.click("29:1alias", "approve", gate_id))
    assert "alice: you requested this gate; someone else must decide it" in card_text(alias)
    split = invoke_card(rig.click("29:1split", "approve", gate_id))
    assert "user principal name carol@example.com name different principals (bob, carol)" in card_text(split)
    assert rig.gate(gate_id).decisions == ()
    assert rig.gate(gate_id).status is GateStatus.PENDING


def test_user_principal_name_names_a_member_without_a_mailbox(rig: TeamsRig) -> None:
    gate_id = rig.open_gate(**PROD_REDEPLOY)
    invoke_card(rig.click("29:1erin", "approve", gate_id))  # erin: break-glass for prod redeploys
    gate = rig.gate(gate_id)
    assert gate.status is GateStatus.APPROVED
    assert gate.decisions[0].principal_id == "erin"
    assert gate.decisions[0].break_glass is True


def test_partial_approval_keeps_the_buttons_and_a_second_click_is_already_decided(rig: TeamsRig) -> None:
    gate_id = rig.open_gate(**PROD_REDEPLOY)
    partial = invoke_card(rig.click("29:1bob", "approve", gate_id))
    assert executes(partial) == [("approve", gate_id), ("reject", gate_id)]
    rig.connector.wait_for("PUT", lambda c: "more approvals needed" in c.text)
    again = invoke_card(rig.click("29:1bob", "approve", gate_id))
    assert "already" in card_text(again) or "counts once" in card_text(again)
    invoke_card(rig.click("29:1dave", "approve", gate_id))
    assert rig.gate(gate_id).status is GateStatus.APPROVED
    late = invoke_card(rig.click("29:1carol", "approve", gate_id))
    assert "already approved by bob and dave at " in late["body"][0]["text"]
    assert [d.principal_id for d in rig.gate(gate_id).decisions] == ["bob", "dave"]


def test_refresh_returns_the_current_card_and_decides_nothing(rig: TeamsRig) -> None:
    gate_id = rig.open_gate()
    before = rig.audit_size()
    fresh = invoke_card(rig.click("29:1bob", "refresh", gate_id))
    assert executes(fresh) == [("approve", gate_id), ("reject", gate_id)]
    assert rig.gate(gate_id).status is GateStatus.PENDING
    assert rig.audit_size() == before
    assert rig.connector.member_lookups() == []


def test_malformed_activities_and_actions(rig: TeamsRig) -> None:
    gate_id = rig.open_gate()
    reply_to = str(rig.card(gate_id).answer["id"])
    token = rig.connector.connector_token()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    service_url = rig.connector.service_url.encode()
    for body in (
        b"not json",
        b"[1, 2]",
        b'{"no": "type", "channelId": "msteams", "serviceUrl": "' + service_url + b'"}',
    ):
        response = httpx.post(f"{rig.service.base_url}{MESSAGES}", content=body, headers=headers)
        assert response.status_code == 400, body
        assert response.json()["code"] == "teams_activity_malformed"
    good = rig.activity("29:1bob", "approve", gate_id, reply_to)
    for value in ({"action": {"type": "Action.Execute", "verb": "approve", "data": {}}}, {"nothing": 1}):
        answer = rig.post({**good, "value": value}).json()
        assert answer["statusCode"] == 400
        assert answer["type"] == "application/vnd.microsoft.error"
    unknown = rig.post(rig.activity("29:1bob", "delete_everything", gate_id, reply_to)).json()
    assert unknown["statusCode"] == 400
    missing = rig.post(rig.activity("29:1bob", "approve", "gate_does_not_exist", reply_to)).json()
    assert missing["statusCode"] == 404
    message = {**good, "type": "message", "text": f"approve {gate_id}"}
    del message["name"]
    assert rig.post(message).status_code == 200  # a chat message to the bot: acknowledged, ignored
    assert rig.gate(gate_id).status is GateStatus.PENDING


def test_a_click_from_another_tenant_or_conversation_decides_nothing(rig: TeamsRig) -> None:
    gate_id = rig.open_gate()
    reply_to = str(rig.card(gate_id).answer["id"])
    good = rig.activity("29:1bob", "approve", gate_id, reply_to)
    other_tenant = {**good, "channelData": {**good["channelData"], "tenant": {"id": "another-tenant"}}}
    answer = invoke_card(rig.post(other_tenant))
    assert "not the one Gatehouse serves" in card_text(answer)
    elsewhere = {**good, "conversation": {**good["conversation"], "id": "19:other@thread.tacv2;messageid=1"}}
    answer = invoke_card(rig.post(elsewhere))
    assert f"posted no card for gate {gate_id} in this conversation" in card_text(answer)
    assert rig.gate(gate_id).status is GateStatus.PENDING
    assert rig.connector.member_lookups() == []


REMINDING_POLICY = """\
version: 1
rules:
  - name: pii-export
    description: pii exports, with a reminder before a short expiry
    match: {action: [export], dataset_tags: [pii]}
    outcome: require
    approvers: {groups: [data-governance], count: 1}
    expiry: 3s
    reminder: 1s
    notify: ["teamsbot:governance"]
default:
  outcome: require
  approvers: {groups: [data-governance], count: 1}
  expiry: 1h
"""


def test_reminder_is_a_reply_to_the_card_and_expiry_updates_it(start_teams: Callable[..., TeamsRig]) -> None:
    rig = start_teams(REMINDING_POLICY)
    gate_id = rig.open_gate()
    card = rig.card(gate_id)
    card_id = str(card.answer["id"])
    reply = rig.connector.wait_for("POST", lambda c: c.path.endswith(f"/activities/{card_id}"))
    assert reply.body["replyToId"] == card_id
    assert f"Reminder: gate {gate_id} still needs 1 approval" in reply.body["text"]
    assert reply.status == 201
    rig.connector.wait_for("PUT", lambda c: "EXPIRED" in c.text, timeout=15)
    assert rig.gate(gate_id).status is GateStatus.EXPIRED


def test_no_bot_configured_answers_404(service: Service) -> None:
    response = httpx.post(
        f"{service.base_url}{MESSAGES}", json={"type": "invoke"}, headers={"Authorization": "Bearer x"}
    )
    assert response.status_code == 404
    assert response.json()["code"] == "teams_not_configured"


# ---------------------------------------------------------------- configuration


def test_config_checks_the_bot_entry_and_takes_the_secret_from_the_environment(
    tmp_path: Path, connector: BotConnectorStandIn
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    entry = bot_entry(connector)
    del entry["app_password"]
    (home / "service.yaml").write_text(yaml.safe_dump({"notifiers": {"teamsbot": entry}}), encoding="utf-8")
    loaded = ServiceConfig.load(home, {"GATEHOUSE_TEAMS_APP_PASSWORD": "from-the-environment"})
    bot = loaded.teams_bot()
    assert bot is not None and bot.app_password.get_secret_value() == "from-the-environment"
    with pytest.raises(ConfigError, match="app_password"):
        ServiceConfig.load(home, {})
    (home / "service.yaml").write_text(yaml.safe_dump({"notifiers": {}}), encoding="utf-8")
    with pytest.raises(ConfigError, match="no notifier of type teams-bot"):
        ServiceConfig.load(home, {"GATEHOUSE_TEAMS_APP_PASSWORD": "x"})
    two = {"a": bot_entry(connector), "b": bot_entry(connector)}
    (home / "service.yaml").write_text(yaml.safe_dump({"notifiers": two}), encoding="utf-8")
    with pytest.raises(ConfigError, match="one bot receives the card clicks"):
        ServiceConfig.load(home, {})
    bad = {"teamsbot": {**bot_entry(connector), "conversations": {"g": {"service_url": "ftp://x"}}}}
    (home / "service.yaml").write_text(yaml.safe_dump({"notifiers": bad}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"notifiers\.teamsbot\.conversations\.g"):
        ServiceConfig.load(home, {})


def test_a_refused_bot_secret_is_reported_and_the_service_keeps_serving(
    start_teams: Callable[..., TeamsRig], caplog: pytest.LogCaptureFixture
) -> None:
    rig = start_teams(app_password="not-the-secret")
    failures: list[str] = []
    rig.service.app.state.gatehouse.hub.on_failure = lambda what, exc: failures.append(f"{what}: {exc}")
    rig.service.app.state.gatehouse.hub.backoff_s = 0.01
    gate_id = rig.open_gate()
    rig.service.drain()
    assert any("token endpoint refused the bot's credentials: HTTP 401" in f for f in failures), failures
    assert all("not-the-secret" not in f for f in failures)
    assert rig.gate(gate_id).status is GateStatus.PENDING
    assert httpx.get(f"{rig.service.base_url}/healthz").status_code == 200


def test_the_sdk_is_needed_only_where_a_bot_is_configured(tmp_path: Path) -> None:
    """``microsoft-agents-activity`` is the ``teams`` extra: a service without it imports and runs;
    configuring a teams-bot without it stops start-up saying what to install."""
    script = """
import sys
sys.modules["microsoft_agents"] = None  # as if the teams extra were not installed
sys.modules["microsoft_agents.activity"] = None
from gate_core.service import ServiceConfig, create_app
from gate_core.testing import example_gatekeeper
create_app(example_gatekeeper(), ServiceConfig())
try:
    ServiceConfig(notifiers={"teamsbot": {"type": "teams-bot", "app_id": "a", "app_password": "p",
                                          "tenant_id": "t", "conversations": {}}})
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ConfigError" in done.stdout
    assert "pip install 'gatehouse-approvals[teams]'" in done.stdout


# ---------------------------------------------------------------- after-the-fact findings (lineage)

FINDING_DATASET = "postgres://127.0.0.1:5432/test.public.payments_[click](https://evil.example)"


def finding(gate: Gate, kind: str = "unapproved_dataset") -> dict[str, Any]:
    """What lineage's scope check hands ``context.alert`` for one finding (lineage/_ol_ingest.py)."""
    run = gate.request.run
    return {
        "id": "v0123456789abcdef0123456789abcdef",
        "gate_id": gate.id,
        "kind": kind,
        "dataset": FINDING_DATASET,
        "operation": "read",
        "tags": ["pii"],
        "orchestrator": run.orchestrator,
        "pipeline": run.pipeline,
        "run_id": run.run_id,
        "task_id": "export_customers",
        "accessed_at": "2026-01-05T10:00:03+00:00",
        "detail": f"{FINDING_DATASET} is tagged pii; no approval of the run names it",
    }


def facts(card: dict[str, Any]) -> dict[str, str]:
    return {f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]}


def deliveries(service: Service, outcome: str) -> float:
    wanted = {"type": "teams-bot", "notifier": "teamsbot", "outcome": outcome}
    for family in text_string_to_metric_families(httpx.get(f"{service.base_url}/metrics").text):
        for sample in family.samples:
            if sample.name == "gatehouse_notifier_deliveries_total" and sample.labels == wanted:
                return float(sample.value)
    return 0.0


def test_a_finding_is_an_alert_card_in_the_thread_of_the_gates_card(rig: TeamsRig) -> None:
    gate_id = rig.open_gate()
    card_id = str(rig.card(gate_id).answer["id"])
    gate = rig.gate(gate_id)
    rig.service.app.state.gatehouse.alert(gate, "lineage.out_of_scope", finding(gate))
    reply = rig.connector.wait_for("POST", lambda c: c.path.endswith(f"/activities/{card_id}"))
    rig.service.drain()

    # a proactive reply under the gate's card, with the bot's token, that Teams accepted
    assert reply.path == f"/smba/amer/v3/conversations/{CONVERSATION}/activities/{card_id}"
    assert reply.status == 201 and reply.body["replyToId"] == card_id
    assert reply.body["type"] == "message"
    assert reply.body["summary"].startswith(f"Out of scope on gate {gate_id}: read of ")
    card = reply.card
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.5")
    said = facts(card)
    # what was touched, how, and why it is a finding; the gate and what it approved; the run
    assert said["Finding"] == "unapproved\\_dataset" and said["Operation"] == "read"
    assert said["Tags"] == "pii" and said["Accessed"] == "2026-01-05 10:00:03 UTC"
    assert said["Run"] == "airflow: exports\\_dag / scheduled\\_\\_2026-01-05 / export\\_customers"
    assert said["Gate"] == f"{gate_id} (PENDING)" and said["Rule"] == "pii-export"
    assert "export on s3://exports/customers.csv" in said["Approved"]
    # the dataset name is the pipeline's text: escaped, so it cannot become a link
    assert (
        said["Dataset"]
        == "postgres://127.0.0.1:5432/test.public.payments\\_\\[click\\](https://evil.example)"
    )
    assert "[click](" not in card_text(card)
    # a link to the gate, and nothing to click that decides anything
    assert card["actions"] == [
        {
            "type": "Action.OpenUrl",
            "title": "Open the gate in Gatehouse",
            "url": f"{PUBLIC_URL}/console/gates/{gate_id}",
        }
    ]
    assert executes(card) == [] and "refresh" not in card
    # one alert, counted like every delivery; the gate's card itself is untouched
    assert len(rig.connector.calls("POST", f"/activities/{card_id}")) == 1
    assert rig.connector.calls("PUT") == []
    assert deliveries(rig.service, "delivered") == 2  # the card, then the alert


ALERTING_POLICY = """\
version: 1
rules:
  - name: pii-export
    match: {action: [export], dataset_tags: [pii]}
    outcome: require
    approvers: {groups: [data-governance], count: 1}
    expiry: 1h
    notify: ["teamsbot:governance", "teamsbot:departed"]
default:
  outcome: require
  approvers: {groups: [data-governance], count: 1}
  expiry: 1h
"""


def test_a_finding_without_a_card_is_a_new_message_and_a_refusal_is_retried_then_counted(
    start_teams: Callable[..., TeamsRig], connector: BotConnectorStandIn
) -> None:
    conversations = {
        "governance": {"service_url": connector.service_url, "conversation_id": CONVERSATION},
        # the bot was removed from this channel: the Bot Connector answers 404 ConversationNotFound
        "departed": {"service_url": connector.service_url, "conversation_id": "19:gone@thread.tacv2"},
    }
    rig = start_teams(ALERTING_POLICY, conversations=conversations)
    hub = rig.service.app.state.gatehouse.hub
    hub.backoff_s = 0.01
    failures: list[str] = []
    hub.on_failure = lambda what, exc: failures.append(f"{what}: {exc}")
    # a gate opened by the core, not the API: no card was posted anywhere
    request = GateRequest.model_validate(PII_EXPORT)
    gate = rig.service.gatekeeper.open(request, submitted_by=actor("etl-bot"))
    assert rig.service.gatekeeper.store.notifications_for(gate.id) == []

    rig.service.app.state.gatehouse.alert(gate, "lineage.out_of_scope", finding(gate, "unapproved_target"))
    rig.service.drain()

    # governance: one new message in the conversation (no card to reply under)
    sent = [c for c in connector.calls("POST", "/activities") if "Out of scope" in c.text]
    [message] = [c for c in sent if c.status == 201]
    assert message.path == f"/smba/amer/v3/conversations/{CONVERSATION}/activities"
    assert "replyToId" not in message.body
    assert facts(message.card)["Finding"] == "unapproved\\_target"
    # departed: refused each time, retried by the hub, then given up and counted
    refused = [c for c in sent if c.status == 404]
    assert len(refused) == hub.attempts == 3
    assert all(c.answer["error"]["code"] == "ConversationNotFound" for c in refused)
    assert [f for f in failures if "teamsbot:departed" in f and "HTTP 404" in f]
    assert deliveries(rig.service, "delivered") == 1
    assert deliveries(rig.service, "retried") == 2
    assert deliveries(rig.service, "failed") == 1
    assert len(sent) == 4
