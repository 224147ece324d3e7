"""Slack approvals end to end: a real service, slack_sdk's real clients, a local Slack stand-in.

The service posts cards to the stand-in (``SlackConfig.api_url``); the tests click as Slack does,
with correctly and incorrectly signed interaction requests, and read back what the service sent
to Slack, what changed in the store and what the audit trail says. Background deliveries are
awaited on the stand-in's own events (``wait_for``), never with blind sleeps; the two short polls
(a card's stored reference, a long-poll having subscribed) wait on a condition and say why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gate_core import AuthMethod, Gate, GateStatus, Settings, Verdict
from gate_core._audit import Event
from gate_core.service import ServiceConfig
from gate_core.service._slack import (
    ACTION_APPROVE,
    ACTION_REJECT,
    REASON_ACTION,
    REASON_BLOCK,
    REJECT_CALLBACK,
)
from gate_core.service.notify._slack import SlackConfig
from tests.conftest import Report
from tests.service.conftest import Service
from tests.service.slack_socket_standin import SocketAnswer, SocketModeStandIn
from tests.service.slack_standin import (
    SlackCall,
    SlackStandIn,
    block_actions,
    signed_headers,
    signed_interaction,
    view_submission,
)

BOT_TOKEN = "xoxb-0000-gatehouse-test"
APP_TOKEN = "xapp-1-A0GATEHOUSE-0000-socketmodetest"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PUBLIC_URL = "https://gatehouse.example.test"
INTERACTIONS = "/v1/slack/interactions"
SLACK_USERS: dict[str, str | None] = {
    "U0ALICE": "alice@example.com",
    "U0BOB": "Bob@Example.com",  # Slack keeps the case people typed; the directory match ignores it
    "U0CAROL": "carol@example.com",
    "U0DAVE": "dave@example.com",
    "U0ERIN": "erin@example.com",
    "U0MALLORY": "mallory@elsewhere.example",  # a real Slack user the directory does not know
    "U0NOMAIL": None,  # a profile without an e-mail (app lacks users:read.email, or a bot user)
}
PII_EXPORT: dict[str, Any] = {
    "action": "export",
    "target": "s3://exports/customers.csv",
    "datasets": [
        {"namespace": "warehouse", "name": "customers", "tags": ["pii"]},
        {"namespace": "warehouse", "name": "regions", "tags": []},
    ],
    "requester": "alice",
    "reason": "quarterly report <!channel>",
    "run": {
        "orchestrator": "airflow",
        "pipeline": "exports_dag",
        "run_id": "scheduled__2026-01-05",
        "task_id": "export_customers",
        "url": "https://airflow.example.test/dags/exports_dag/runs/1",
    },
}
PROD_REDEPLOY: dict[str, Any] = {
    "action": "redeploy",
    "target": "models/churn",
    "environment": "prod",
    "requester": "alice",
    "parameters": {"version": "2.4.1"},
}


@dataclass
class SlackRig:
    """A running service wired to the stand-in, and the clicks a Slack workspace would send."""

    service: Service
    slack: SlackStandIn
    socket: SocketModeStandIn | None = None  # set: clicks arrive over Socket Mode, not the Request URL

    def open_gate(self, **request: Any) -> dict[str, Any]:
        with self.service.client("bot") as bot:
            response = bot.post("/v1/gates", json={**PII_EXPORT, **request})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def card(self, gate_id: str, channel: str | None = None) -> SlackCall:
        """The card posted for the gate, once the service has also stored its reference (which
        is what later updates and threaded reminders are addressed by)."""
        card = self.slack.wait_for(
            "chat.postMessage",
            lambda c: f'"value": "{gate_id}"' in c.text and (channel is None or c.body["channel"] == channel),
        )
        store = self.service.gatekeeper.store
        # the hub stores the reference just after Slack answers; the store has no event to await
        deadline = time.monotonic() + 10
        while not any(r.message_ref == card.answer["ts"] for r in store.notifications_for(gate_id)):
            assert time.monotonic() < deadline, f"the reference to {card.answer} was never stored"
            time.sleep(0.01)
        return card

    def send(
        self,
        payload: dict[str, Any] | str,
        *,
        secret: str = SIGNING_SECRET,
        timestamp: int | None = None,
        drop: tuple[str, ...] = (),
    ) -> httpx.Response | SocketAnswer:
        if self.socket is not None:  # no signature in Socket Mode: the connection is the proof
            assert isinstance(payload, dict) and timestamp is None and not drop and secret == SIGNING_SECRET
            return self.socket.deliver(payload)
        body, headers = signed_interaction(payload, secret, timestamp=timestamp)
        return self.post(body, {k: v for k, v in headers.items() if k not in drop})

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.service.base_url}{INTERACTIONS}", content=body, headers=headers, timeout=30)

    def click(self, user: str, action_id: str, gate_id: str, **signing: Any) -> httpx.Response | SocketAnswer:
        payload = block_actions(
            user=user, action_id=action_id, value=gate_id, response_url=self.slack.response_url()
        )
        return self.send(payload, **signing)

    def gate(self, gate_id: str) -> Gate:
        return self.service.gatekeeper.get(gate_id)

    def audit_size(self) -> int:
        return self.service.gatekeeper.store.audit_head()[0]


@pytest.fixture
def socket_mode() -> Iterator[SocketModeStandIn]:
    with SocketModeStandIn(app_token=APP_TOKEN) as standin:
        yield standin


@pytest.fixture
def slack(socket_mode: SocketModeStandIn) -> Iterator[SlackStandIn]:
    with SlackStandIn(token=BOT_TOKEN, users=SLACK_USERS, socket=socket_mode) as standin:
        yield standin


def slack_config(slack: SlackStandIn, transport: str = "http") -> ServiceConfig:
    """The Request URL app (signing secret), or a Socket Mode app (app token, no signing secret)."""
    if transport == "socket":
        app = SlackConfig(bot_token=BOT_TOKEN, app_token=APP_TOKEN, api_url=slack.api_url)
    else:
        app = SlackConfig(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_url=slack.api_url)
    return ServiceConfig(public_url=PUBLIC_URL, sweep_interval_s=0.2, slack=app)


@pytest.fixture
def start_rig(
    service_factory: Callable[..., Service],
    service_settings: Settings,
    slack: SlackStandIn,
    socket_mode: SocketModeStandIn,
) -> Callable[..., SlackRig]:
    """Start the service with Slack configured; ``policy`` (YAML) replaces the example policy first;
    ``over="socket"`` receives the clicks over Socket Mode instead of the Request URL."""

    def start(policy: str | None = None, *, over: str = "http") -> SlackRig:
        if policy is not None:
            service_settings.policy_path.write_text(policy, encoding="utf-8")
        rig = SlackRig(service_factory(slack_config(slack, over)), slack)
        if over == "socket":
            socket_mode.wait_connected()
            rig.socket = socket_mode
        return rig

    return start


@pytest.fixture(params=["http", "socket"])
def rig(request: pytest.FixtureRequest, start_rig: Callable[..., SlackRig]) -> SlackRig:
    """The same clicks over both transports: the Request URL and Socket Mode."""
    return start_rig(over=request.param)


@pytest.fixture
def http_rig(start_rig: Callable[..., SlackRig]) -> SlackRig:
    """The Request URL only: what is about signatures."""
    return start_rig()


def _wait_until_waiting(service: Service, timeout: float = 10.0) -> None:
    """Until the long-poll has subscribed (healthz counts waited-on gates); there is no event to
    await from outside the server, so this polls — it only orders the test, it asserts nothing."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{service.base_url}/healthz").json()["waiting_gates"] < 1:
        assert time.monotonic() < deadline, "the waiter never subscribed"
        time.sleep(0.01)


# ---------------------------------------------------------------- the acceptance


def test_acceptance_card_click_refusals_update_and_prompt_resume(rig: SlackRig) -> None:
    gate_id = rig.open_gate()["id"]

    # the card reaches #data-approvals with the context an approver needs
    card = rig.card(gate_id)
    assert card.body["channel"] == "#data-approvals"
    assert card.body["text"].startswith("Approval needed: alice asks to export s3://exports/customers.csv")
    content = card.text
    for expected in (
        "Alice (data engineer, requests exports) (`alice`)",
        "submitted by `etl-bot`",
        "`export`",
        "`s3://exports/customers.csv`",
        "`warehouse/customers` — *pii*",
        "`warehouse/regions` — no tags",
        "*Rule* `pii-export`",
        "dataset tag pii on warehouse/customers",
        "quarterly report &lt;!channel&gt;",  # a requester cannot ping the channel through the card
        "Run: airflow",
        "pipeline `exports_dag`",
        "task `export_customers`",
        "<https://airflow.example.test/dags/exports_dag/runs/1|open run>",
        f"<{PUBLIC_URL}/console/gates/{gate_id}|Open in Gatehouse console>",
        "never reviewed before",
        "0/1 approvals from data-governance",
        "*Expires*",
    ):
        assert expected in content, expected
    assert "<!channel>" not in content
    [buttons] = [b for b in card.body["blocks"] if b["type"] == "actions"]
    assert [(e["action_id"], e["style"], e["value"]) for e in buttons["elements"]] == [
        (ACTION_APPROVE, "primary", gate_id),
        (ACTION_REJECT, "danger", gate_id),
    ]
    [ref] = rig.service.gatekeeper.store.notifications_for(gate_id)
    assert (ref.kind, ref.target, ref.channel, ref.message_ref) == (
        "slack",
        "slack:#data-approvals",
        rig.slack.channel_id("#data-approvals"),
        card.answer["ts"],
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

    # alice asked for it: her click is refused to her alone, and changes nothing
    assert rig.click("U0ALICE", ACTION_APPROVE, gate_id).status_code == 200
    [ephemeral] = rig.slack.wait_for_ephemeral(1)
    assert ephemeral["response_type"] == "ephemeral"
    assert ephemeral["replace_original"] is False
    assert "alice: you requested this gate; someone else must decide it" in ephemeral["text"]
    assert rig.gate(gate_id).status is GateStatus.PENDING
    assert rig.gate(gate_id).decisions == ()

    assert len(rig.slack.calls("users.info")) == 1  # alice's lookup
    assert waiter.is_alive()

    # bob's genuine click approves it, inside Slack's 3 seconds, and the waiter resumes at once
    clicked = time.monotonic()
    answer = rig.click("U0BOB", ACTION_APPROVE, gate_id)
    answered = time.monotonic()
    assert answer.status_code == 200
    assert answered - clicked < 3.0
    waiter.join(timeout=10)
    assert waited["status"] == 200
    assert waited["gate"]["status"] == "APPROVED"
    assert waited["at"] - answered < 1.0

    gate = rig.gate(gate_id)
    assert gate.status is GateStatus.APPROVED
    [decision] = gate.decisions
    assert (decision.principal_id, decision.verdict, decision.via) == (
        "bob",
        Verdict.APPROVE,
        AuthMethod.SLACK,
    )

    # the card now shows the outcome, by whom, and no buttons
    update = rig.slack.wait_for("chat.update", lambda c: "APPROVED by bob" in c.text)
    assert (update.body["channel"], update.body["ts"]) == (ref.channel, ref.message_ref)
    assert update.answer["ok"] is True
    assert "*Approved* by Bob (data governance) (`bob`) via slack" in update.text
    assert update.body["text"].startswith("✅ Approved: alice asks to export")
    assert ACTION_APPROVE not in update.text
    assert all(b["type"] != "actions" for b in update.body["blocks"])
    assert len(rig.slack.calls("chat.update")) == 1  # the refusal updated nothing
    assert len(rig.slack.ephemerals) == 1

    # the trail says who decided through Slack, and who was refused
    entries = [e.decoded() for e in rig.service.gatekeeper.store.audit_entries() if e.gate_id == gate_id]
    events = [(e["event"], e["actor"]["principal_id"], e["actor"]["via"]) for e in entries]
    assert (Event.DECISION_REFUSED, "alice", "slack") in events
    assert (Event.DECISION_RECORDED, "bob", "slack") in events
    with rig.service.client("admin") as admin:
        verify = admin.get("/v1/audit/verify")
    assert verify.status_code == 200
    assert verify.json()["ok"] is True


# ---------------------------------------------------------------- signatures


def test_forged_click_is_refused_before_anything_is_looked_at(http_rig: SlackRig) -> None:
    rig = http_rig
    gate_id = rig.open_gate()["id"]
    audit_before = rig.audit_size()
    forged = rig.click("U0BOB", ACTION_APPROVE, gate_id, secret="not-the-signing-secret")
    assert forged.status_code == 401
    assert isinstance(forged, httpx.Response)
    assert forged.headers["content-type"] == "application/problem+json"
    assert forged.json()["code"] == "slack_signature_invalid"
    assert rig.gate(gate_id).status is GateStatus.PENDING
    assert rig.audit_size() == audit_before
    assert rig.slack.calls("users.info") == []  # the forgery got no further than its signature
    assert rig.slack.calls("chat.update") == []


def test_stale_or_future_timestamp_is_refused(http_rig: SlackRig) -> None:
    rig = http_rig
    gate_id = rig.open_gate()["id"]
    audit_before = rig.audit_size()
    # a stale stamp only grows staler on the way; a future one just past the window needs slack for
    # the request's own time under load (at +301 s a request taking 1 s arrives inside it)
    for skew in (-301, -3600, 330, 3600):
        response = rig.click("U0BOB", ACTION_APPROVE, gate_id, timestamp=int(time.time()) + skew)
        assert response.status_code == 401, skew
        assert "5-minute window" in response.json()["detail"]
    assert rig.gate(gate_id).status is GateStatus.PENDING
    assert rig.audit_size() == audit_before
    assert rig.slack.calls("users.info") == []


def test_missing_signature_headers_are_refused(http_rig: SlackRig) -> None:
    rig = http_rig
    gate_id = rig.open_gate()["id"]
    for drop in (
        ("X-Slack-Signature",),
        ("X-Slack-Request-Timestamp",),
        ("X-Slack-Signature", "X-Slack-Request-Timestamp"),
    ):
        response = rig.click("U0BOB", ACTION_APPROVE, gate_id, drop=drop)
        assert response.status_code == 401, drop
        assert response.headers["content-type"] == "application/problem+json"
        assert "are required" in response.json()["detail"]
    assert rig.gate(gate_id).status is GateStatus.PENDING
    assert rig.slack.calls("users.info") == []


def test_malformed_timestamp_and_tampered_body_are_refused(http_rig: SlackRig) -> None:
    rig = http_rig
    gate_id = rig.open_gate()["id"]
    payload = block_actions(
        user="U0BOB", action_id=ACTION_APPROVE, value=gate_id, response_url=rig.slack.response_url()
    )
    body, headers = signed_interaction(payload, SIGNING_SECRET)
    assert rig.post(body, {**headers, "X-Slack-Request-Timestamp": "12e9"}).status_code == 401
    assert rig.post(body.replace(b"U0BOB", b"U0DAVE"), headers).status_code == 401  # signed for bob
    assert rig.gate(gate_id).status is GateStatus.PENDING


def test_exact_replay_is_refused(http_rig: SlackRig) -> None:
    rig = http_rig
    gate_id = rig.open_gate()["id"]
    payload = block_actions(
        user="U0BOB", action_id=ACTION_APPROVE, value=gate_id, response_url=rig.slack.response_url()
    )
    body, headers = signed_interaction(payload, SIGNING_SECRET)
    assert rig.post(body, headers).status_code == 200
    audit_after_first = rig.audit_size()
    replay = rig.post(body, headers)
    assert replay.status_code == 401
    assert "replay" in replay.json()["detail"]
    assert rig.audit_size() == audit_after_first
    assert len(rig.gate(gate_id).decisions) == 1


def test_slack_not_configured_answers_404(service: Service) -> None:
    body, headers = signed_interaction({"type": "block_actions"}, SIGNING_SECRET)
    response = httpx.post(f"{service.base_url}{INTERACTIONS}", content=body, headers=headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "slack is not configured"


# ---------------------------------------------------------------- payloads


def test_malformed_payloads_are_400_and_change_nothing(http_rig: SlackRig) -> None:
    rig = http_rig
    gate_id = rig.open_gate()["id"]
    audit_before = rig.audit_size()
    click = block_actions(
        user="U0BOB", action_id=ACTION_APPROVE, value=gate_id, response_url=rig.slack.response_url()
    )
    no_user = {k: v for k, v in click.items() if k != "user"}
    bad_gate = {**click, "actions": [{**click["actions"][0], "value": "../../etc"}]}
    for payload in ("not json", "[1, 2]", '{"no": "type"}', no_user, bad_gate):
        response = rig.send(payload)
        assert response.status_code == 400, payload
        assert response.json()["code"] == "slack_payload_malformed"
    for body in (b"other=1", b"payload=1&payload=2", b""):
        response = rig.post(body, signed_headers(body, SIGNING_SECRET))
        assert response.status_code == 400, body
    assert rig.gate(gate_id).status is GateStatus.PENDING
    assert rig.audit_size() == audit_before


def test_unknown_payload_kinds_and_foreign_buttons_are_ignored(rig: SlackRig) -> None:
    gate_id = rig.open_gate()["id"]
    shortcut = {"type": "shortcut", "callback_id": "whatever", "user": {"id": "U0BOB"}}
    assert rig.send(shortcut).status_code == 200
    foreign = rig.click("U0BOB", "someone_elses_button", gate_id)
    assert (foreign.status_code, foreign.content) == (200, b"")
    other_modal = view_submission(
        user="U0BOB", view={"callback_id": "other", "private_metadata": ""}, values={}
    )
    assert rig.send(other_modal).status_code == 200
    assert rig.gate(gate_id).status is GateStatus.PENDING
    assert rig.slack.calls("users.info") == []


# ---------------------------------------------------------------- identity


def test_unknown_slack_users_are_refused_ephemerally(rig: SlackRig) -> None:
    gate_id = rig.open_gate()["id"]
    audit_before = rig.audit_size()
    refusals = {
        "U0MALLORY": "Your Slack e-mail mallory@elsewhere.example is not in the Gatehouse directory",
        "U0NOMAIL": "Your Slack profile has no e-mail address",
        "U0GHOST": "Slack could not tell Gatehouse who you are (user_not_found)",
    }
    for count, (user, says) in enumerate(refusals.items(), start=1):
        assert rig.click(user, ACTION_APPROVE, gate_id).status_code == 200
        ephemeral = rig.slack.wait_for_ephemeral(count)[-1]
        assert says in ephemeral["text"], user
        assert ephemeral["response_type"] == "ephemeral"
    assert rig.gate(gate_id).status is GateStatus.PENDING
    assert rig.audit_size() == audit_before  # no principal, so no decision to audit


def test_duplicate_click_answers_already_approved_and_identity_is_cached(rig: SlackRig) -> None:
    gate_id = rig.open_gate()["id"]
    rig.card(gate_id)
    assert rig.click("U0BOB", ACTION_APPROVE, gate_id).status_code == 200
    rig.slack.wait_for("chat.update", lambda c: "APPROVED by bob" in c.text)
    assert rig.click("U0CAROL", ACTION_APPROVE, gate_id).status_code == 200
    assert rig.click("U0BOB", ACTION_APPROVE, gate_id).status_code == 200
    ephemerals = rig.slack.wait_for_ephemeral(2)
    assert all("already approved by bob at " in e["text"] for e in ephemerals)
    assert [d.principal_id for d in rig.gate(gate_id).decisions] == ["bob"]
    looked_up = [c.body["user"] for c in rig.slack.calls("users.info")]
    assert sorted(looked_up) == ["U0BOB", "U0CAROL"]  # bob's second click used the cache


# ---------------------------------------------------------------- reject with a reason


def test_reject_opens_a_modal_and_its_submission_rejects_with_the_reason(rig: SlackRig) -> None:
    gate_id = rig.open_gate()["id"]
    card = rig.card(gate_id)
    click = block_actions(
        user="U0CAROL", action_id=ACTION_REJECT, value=gate_id, response_url=rig.slack.response_url()
    )
    assert rig.send(click).status_code == 200

    opened = rig.slack.wait_for("views.open")
    assert opened.body["trigger_id"] == click["trigger_id"]
    view = opened.body["view"]
    assert (view["type"], view["callback_id"], view["private_metadata"]) == (
        "modal",
        REJECT_CALLBACK,
        gate_id,
    )
    [reason_input] = [b for b in view["blocks"] if b["type"] == "input"]
    assert reason_input["block_id"] == REASON_BLOCK
    assert reason_input["element"]["type"] == "plain_text_input"
    assert reason_input["element"]["multiline"] is True
    assert reason_input.get("optional") in (None, False)
    assert rig.gate(gate_id).status is GateStatus.PENDING  # opening the dialog decides nothing

    # a blank reason is sent back to the dialog, not recorded
    blank = rig.send(view_submission(user="U0CAROL", view=view, values={REASON_BLOCK: {REASON_ACTION: "  "}}))
    assert blank.status_code == 200
    assert blank.json()["response_action"] == "errors"
    assert "reason is required" in blank.json()["errors"][REASON_BLOCK]

    # the requester cannot reject through a crafted submission either: the core refuses, in the dialog
    own = rig.send(view_submission(user="U0ALICE", view=view, values={REASON_BLOCK: {REASON_ACTION: "mine"}}))
    assert own.json() == {
        "response_action": "errors",
        "errors": {
            REASON_BLOCK: f"alice: you requested this gate; someone else must decide it "
            f"(gate {gate_id}; nothing changed)"
        },
    }

    reason = "customers table still has raw e-mails; mask them first"
    done = rig.send(
        view_submission(user="U0CAROL", view=view, values={REASON_BLOCK: {REASON_ACTION: reason}})
    )
    assert (done.status_code, done.content) == (200, b"")  # empty answer: Slack closes the dialog
    gate = rig.gate(gate_id)
    assert gate.status is GateStatus.REJECTED
    [decision] = gate.decisions
    assert (decision.principal_id, decision.verdict, decision.comment, decision.via) == (
        "carol",
        Verdict.REJECT,
        reason,
        AuthMethod.SLACK,
    )
    update = rig.slack.wait_for("chat.update", lambda c: "REJECTED by carol" in c.text)
    assert reason in update.text
    assert all(b["type"] != "actions" for b in update.body["blocks"])
    assert update.body["ts"] == card.answer["ts"]


def test_requester_clicking_reject_gets_no_dialog(rig: SlackRig) -> None:
    gate_id = rig.open_gate()["id"]
    assert rig.click("U0ALICE", ACTION_REJECT, gate_id).status_code == 200
    [ephemeral] = rig.slack.wait_for_ephemeral(1)
    assert "you requested this gate; someone else must decide it" in ephemeral["text"]
    assert rig.slack.calls("views.open") == []
    assert rig.gate(gate_id).status is GateStatus.PENDING


# ---------------------------------------------------------------- quorum and break-glass


def test_partial_approval_updates_the_card_and_keeps_the_buttons(rig: SlackRig) -> None:
    gate_id = rig.open_gate(**{**PROD_REDEPLOY, "datasets": [], "reason": "", "run": {}})["id"]
    card = rig.card(gate_id)
    assert card.body["channel"] == "#ml-releases"
    assert "0/2 approvals from data-governance or ml-leads (break-glass: sre-oncall)" in card.text

    assert rig.click("U0BOB", ACTION_APPROVE, gate_id).status_code == 200
    partial = rig.slack.wait_for("chat.update", lambda c: "Still pending: 1/2 approvals" in c.text)
    assert "*Approved* by Bob (data governance) (`bob`)" in partial.text
    assert any(b["type"] == "actions" for b in partial.body["blocks"])  # still open: still clickable
    assert rig.gate(gate_id).status is GateStatus.PENDING

    assert rig.click("U0DAVE", ACTION_APPROVE, gate_id).status_code == 200
    done = rig.slack.wait_for("chat.update", lambda c: "APPROVED by bob, dave" in c.text)
    assert "2/2 approvals" in done.text
    assert all(b["type"] != "actions" for b in done.body["blocks"])
    assert rig.gate(gate_id).status is GateStatus.APPROVED


def test_break_glass_approval_is_flagged_on_the_card(rig: SlackRig) -> None:
    gate_id = rig.open_gate(**{**PROD_REDEPLOY, "datasets": [], "reason": "", "run": {}})["id"]
    rig.card(gate_id)
    assert rig.click("U0ERIN", ACTION_APPROVE, gate_id).status_code == 200
    update = rig.slack.wait_for("chat.update", lambda c: "APPROVED by erin" in c.text)
    assert "BREAK-GLASS" in update.text
    assert rig.gate(gate_id).decisions[0].break_glass is True


# ---------------------------------------------------------------- reminders


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
    notify: ["slack:#data-approvals", "slack:@U0CAROL"]
default:
  outcome: require
  approvers: {groups: [data-governance], count: 1}
  expiry: 1h
"""


def _in_thread_of(card: SlackCall) -> Callable[[SlackCall], bool]:
    return lambda call: call.body.get("thread_ts") == card.answer["ts"]


def _updated_to(card: SlackCall, text: str) -> Callable[[SlackCall], bool]:
    return lambda call: call.body["ts"] == card.answer["ts"] and text in call.text


def test_reminder_is_one_reply_in_each_cards_thread(start_rig: Callable[..., SlackRig]) -> None:
    rig = start_rig(REMINDING_POLICY)
    gate_id = rig.open_gate()["id"]
    channel_card = rig.card(gate_id, "#data-approvals")
    dm_card = rig.card(gate_id, "U0CAROL")
    assert dm_card.answer["channel"] == "D0CAROL"  # a user target lands in the bot's DM with them

    for card in (channel_card, dm_card):
        reminder = rig.slack.wait_for("chat.postMessage", _in_thread_of(card))
        assert reminder.body["channel"] == card.answer["channel"]
        assert reminder.answer["ok"] is True
        assert "still needs 1 approval (0/1 approvals from data-governance)" in reminder.body["text"]
        assert "it expires at <!date^" in reminder.body["text"]

    # expiry (3 s) comes ~10 sweeps after the reminder (1 s): by the time both cards say EXPIRED,
    # any second reminder would have been sent
    for card in (channel_card, dm_card):
        rig.slack.wait_for("chat.update", _updated_to(card, "*EXPIRED at"))
    replies = [c for c in rig.slack.calls("chat.postMessage") if c.body.get("thread_ts")]
    assert sorted(c.body["channel"] for c in replies) == sorted(
        [channel_card.answer["channel"], dm_card.answer["channel"]]
    )
    assert rig.gate(gate_id).status is GateStatus.EXPIRED


def test_hostile_signatures_are_never_accepted(http_rig: SlackRig, report: Report) -> None:
    rig = http_rig
    """Every way a Slack request can be forged or replayed, counted: 0 accepted, 0 changes."""
    gate_id = rig.open_gate()["id"]
    payload = block_actions(
        user="U0BOB", action_id=ACTION_APPROVE, value=gate_id, response_url=rig.slack.response_url()
    )
    body, headers = signed_interaction(payload, SIGNING_SECRET)
    forged_body, forged_headers = signed_interaction(payload, "not-the-signing-secret")
    stale_body, stale_headers = signed_interaction(payload, SIGNING_SECRET, timestamp=int(time.time()) - 301)
    attempts = [
        (forged_body, forged_headers),
        (body.replace(b"U0BOB", b"U0DAVE"), headers),
        (stale_body, stale_headers),
        (body, {**headers, "X-Slack-Request-Timestamp": "12e9"}),
        (body, {k: v for k, v in headers.items() if k != "X-Slack-Signature"}),
        (body, {k: v for k, v in headers.items() if k != "X-Slack-Request-Timestamp"}),
        (body, {**headers, "X-Slack-Signature": "v0=" + "0" * 64}),
    ]
    audit_before = rig.audit_size()
    accepted = sum(rig.post(b, h).status_code != 401 for b, h in attempts)
    assert rig.post(body, headers).status_code == 200  # the genuine click
    accepted += rig.post(body, headers).status_code != 401  # ...and its exact replay
    assert accepted == 0
    assert len(rig.gate(gate_id).decisions) == 1
    assert rig.audit_size() > audit_before  # only the genuine click was recorded
    report(
        "Hostile input: forged, tampered, stale, unsigned or replayed Slack requests accepted (8 kinds)",
        accepted,
        "accepted",
        "0",
    )
