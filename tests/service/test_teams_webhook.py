"""Teams cards and signed webhooks, end to end: the real service posts to real local HTTP receivers.

Service tests run on SQLite and PostgreSQL (the ``database_url`` fixture); the notifier-only
tests at the bottom need no database and run once.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gate_core import ConfigError, DatasetRef, Gate, GateRequest, Settings
from gate_core.service import ServiceConfig, verify_webhook_signature
from gate_core.service._app import build_notifiers
from gate_core.service.notify import NotifyTarget
from gate_core.service.notify._teams import TeamsDeliveryFailed, TeamsNotifier, message, plain, request_card
from gate_core.service.notify._webhook import WebhookDeliveryFailed, WebhookNotifier, WebhookTarget
from gate_core.testing import actor, example_gatekeeper
from tests.service.conftest import Service, free_port
from tests.service.http_receiver import HttpReceiver, Recorded

PUBLIC_URL = "https://gatehouse.example.test"
SECRET = "whsec-test-5f2c9a"
TEAMS_PATH = "/workflows/governance"
HOOK_PATH = "/hooks/siem"

POLICY = """\
version: 1
rules:
  - name: pii-export
    description: Exports of personal data need data-governance.
    match: {action: [export], dataset_tags: [pii]}
    outcome: require
    approvers: {groups: [data-governance], count: 1}
    expiry: 4h
    notify: ["teams:governance", "webhook:siem"]
  - name: prod-redeploy
    description: Prod redeploys need two reviewers and nag them quickly.
    match: {action: [redeploy], environment: [prod]}
    outcome: require
    approvers: {groups: [data-governance, ml-leads], count: 2}
    expiry: 1h
    reminder: 1s
    notify: ["teams:governance", "webhook:siem"]
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
    "datasets": [{"namespace": "warehouse", "name": "customer_orders", "tags": ["pii", "finance"]}],
    "parameters": {"format": "csv", "api_token": "tok-should-never-leave"},
    "reason": "quarterly report, see [the ticket](https://evil.example/phish)",
    "run": {
        "orchestrator": "airflow",
        "pipeline": "exports",
        "run_id": "manual__2026",
        "task_id": "export_customers",
        "url": "https://airflow.example.test/dags/exports/runs/manual__2026",
    },
}
REDEPLOY: dict[str, Any] = {"action": "redeploy", "target": "models/churn", "environment": "prod"}
# The default rule notifies nobody: a first request that pays the service's warm-up costs.
WARM_UP: dict[str, Any] = {"action": "inspect", "requester": "alice"}

StartService = Callable[..., Service]


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def teams_receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver(status=202) as receiver:  # Workflows answers 202 Accepted with no body
        yield receiver


@pytest.fixture
def hook_receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver(status=204) as receiver:
        yield receiver


@pytest.fixture
def start(service_settings: Settings, service_factory: StartService) -> StartService:
    """Start the service with our policy, its Teams and webhook targets pointing at ``teams_url``
    and ``hook_url``. The policy is written first: the service loads it when it starts."""
    service_settings.policy_path.write_text(POLICY, encoding="utf-8")

    def start_with(teams_url: str, hook_url: str) -> Service:
        config = ServiceConfig.model_validate(
            {
                "public_url": PUBLIC_URL,
                "sweep_interval_s": 0.2,
                "teams": {"governance": teams_url},
                "webhooks": {"siem": {"url": hook_url, "secret": SECRET}},
            }
        )
        return service_factory(config)

    return start_with


@pytest.fixture
def service(start: StartService, teams_receiver: HttpReceiver, hook_receiver: HttpReceiver) -> Service:
    return start(teams_receiver.url + TEAMS_PATH, hook_receiver.url + HOOK_PATH)


def open_gate(service: Service, body: dict[str, Any]) -> dict[str, Any]:
    with service.client("bot") as bot:
        response = bot.post("/v1/gates", json=body)
    assert response.status_code == 200, response.text
    gate: dict[str, Any] = response.json()
    return gate


def decide(service: Service, who: str, gate_id: str, comment: str = "") -> dict[str, Any]:
    with service.client(who) as client:
        response = client.post(
            f"/v1/gates/{gate_id}/decisions", json={"decision": "approve", "comment": comment}
        )
    assert response.status_code == 200, response.text
    gate: dict[str, Any] = response.json()
    return gate


def card_of(hit: Recorded) -> dict[str, Any]:
    """The Adaptive Card in a recorded Teams message, after checking the message envelope."""
    message = hit.json()
    assert message["type"] == "message"
    [attachment] = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card: dict[str, Any] = attachment["content"]
    assert_valid_card(card)
    return card


def assert_valid_card(card: dict[str, Any]) -> None:
    """The parts of the Adaptive Card 1.5 schema the cards use: required keys and value types."""
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.5"
    assert card["body"], "a card needs a body"
    for element in card["body"]:
        kind = element["type"]
        if kind == "TextBlock":
            assert isinstance(element["text"], str) and element["text"]
        elif kind == "FactSet":
            assert element["facts"]
            for fact in element["facts"]:
                assert set(fact) == {"title", "value"}
                assert all(isinstance(v, str) and v for v in fact.values())
        elif kind == "RichTextBlock":
            assert all(
                run["type"] == "TextRun" and isinstance(run["text"], str) for run in element["inlines"]
            )
        else:
            raise AssertionError(f"unexpected card element {kind}")
    for action in card["actions"]:
        assert action["type"] == "Action.OpenUrl"
        assert action["title"] and action["url"].startswith(("https://", "http://"))


def facts_of(card: dict[str, Any]) -> dict[str, str]:
    [fact_set] = [e for e in card["body"] if e["type"] == "FactSet"]
    return {f["title"]: f["value"] for f in fact_set["facts"]}


def texts_of(card: dict[str, Any]) -> list[str]:
    return [e["text"] for e in card["body"] if e["type"] == "TextBlock"]


def verbatim_of(card: dict[str, Any]) -> list[str]:
    return [run["text"] for e in card["body"] if e["type"] == "RichTextBlock" for run in e["inlines"]]


def actions_of(card: dict[str, Any]) -> dict[str, str]:
    return {a["title"]: a["url"] for a in card["actions"]}


# ---------------------------------------------------------------- Teams


def test_opening_a_gate_posts_an_adaptive_card_with_the_whole_context(
    service: Service, teams_receiver: HttpReceiver
) -> None:
    gate = open_gate(service, EXPORT)

    [hit] = teams_receiver.wait_for(1, path=TEAMS_PATH)
    assert hit.headers["Content-Type"] == "application/json"
    card = card_of(hit)
    assert texts_of(card)[0] == "Approval needed"
    facts = facts_of(card)
    assert facts["Requester"] == "alice (submitted by etl-bot)"
    assert facts["Action"] == "export"
    assert facts["Target"] == "s3://exports/customers.csv"
    assert facts["Environment"] == "prod"
    assert facts["Datasets"] == r"warehouse/customer\_orders#finance,pii"
    assert facts["Tags"] == "finance, pii"
    assert facts["Rule"] == "pii-export"
    assert facts["Why"] == plain(gate["explanation"])
    assert facts["Run"] == r"airflow: exports / manual\_\_2026 / export\_customers"
    assert facts["Last reviewed"] == "never"
    assert facts["Expires"].endswith(" UTC")
    assert facts["Expires"].replace(" ", "T").removesuffix("TUTC") == gate["expires_at"][:19]
    assert facts["Approvals"] == "0 of 1 from data-governance"
    assert facts["Gate"] == gate["id"]
    # The reason is the requester's free text: shown exactly, in a TextRun Teams never renders as Markdown.
    assert verbatim_of(card) == [EXPORT["reason"]]
    assert not any("evil.example" in t for t in texts_of(card))
    assert actions_of(card) == {
        "Review in Gatehouse": f"{PUBLIC_URL}/console/gates/{gate['id']}",
        "Open the run": EXPORT["run"]["url"],
    }


def test_approving_posts_an_outcome_card_naming_the_approver(
    service: Service, teams_receiver: HttpReceiver
) -> None:
    gate = open_gate(service, EXPORT)
    teams_receiver.wait_for(1, path=TEAMS_PATH)

    decided = decide(service, "bob", gate["id"], comment="ok for Q3, *not* Q4")

    _, outcome_hit = teams_receiver.wait_for(2, path=TEAMS_PATH)
    outcome = card_of(outcome_hit)
    assert texts_of(outcome)[0] == "Approved"
    facts = facts_of(outcome)
    assert facts["Status"] == "APPROVED"
    assert facts["Decided by"] == "Bob (data governance) (bob)"
    assert facts["When"].endswith(" UTC")
    assert facts["Approvals"] == "1 of 1 from data-governance"
    assert any(
        t.startswith("approved by Bob (data governance) (bob) via api-token at ") for t in texts_of(outcome)
    )
    assert verbatim_of(outcome) == ["ok for Q3, *not* Q4"]
    assert actions_of(outcome)["View in Gatehouse"] == f"{PUBLIC_URL}/console/gates/{gate['id']}"

    # The next request for the same action and target tells its approver who reviewed it last.
    second = open_gate(service, {**EXPORT, "reason": "again"})
    third_hit = teams_receiver.wait_for(3, path=TEAMS_PATH)[2]
    assert facts_of(card_of(third_hit))["Gate"] == second["id"]
    assert facts_of(card_of(third_hit))["Last reviewed"].startswith(
        f"approved by bob at {decided['decided_at'][:10]}"
    )


def test_partial_approvals_and_reminders_are_posted(
    service: Service, teams_receiver: HttpReceiver, hook_receiver: HttpReceiver
) -> None:
    gate = open_gate(service, REDEPLOY)  # two approvals needed, reminder after 1 s

    reminders = [
        card_of(h)
        for h in teams_receiver.wait_for(2, path=TEAMS_PATH)
        if texts_of(card_of(h))[0] == "Reminder: approval still needed"
    ]
    assert len(reminders) == 1
    assert facts_of(reminders[0])["Gate"] == gate["id"]
    hook_receiver.wait_for(2, path=HOOK_PATH)
    assert sorted(h.headers["X-Gatehouse-Event"] for h in hook_receiver.successes()) == [
        "gate.opened",
        "gate.reminder",
    ]

    decide(service, "bob", gate["id"])

    progress = card_of(teams_receiver.wait_for(3, path=TEAMS_PATH)[2])
    assert texts_of(progress)[0] == "Decision recorded, more approvals needed"
    assert facts_of(progress)["Status"] == "PENDING"
    assert facts_of(progress)["Decided by"] == "Bob (data governance) (bob)"
    assert facts_of(progress)["Approvals"] == "1 of 2 from data-governance or ml-leads"
    decided = hook_receiver.wait_for(3, path=HOOK_PATH)[2].json()
    assert (decided["event"], decided["gate"]["status"]) == ("gate.decided", "PENDING")


# ---------------------------------------------------------------- webhooks


def test_webhook_deliveries_are_signed_and_carry_the_gate(
    service: Service, hook_receiver: HttpReceiver
) -> None:
    gate = open_gate(service, EXPORT)
    hook_receiver.wait_for(1, path=HOOK_PATH)
    decide(service, "bob", gate["id"])

    opened, decided = hook_receiver.wait_for(2, path=HOOK_PATH)
    for hit, event, status in ((opened, "gate.opened", "PENDING"), (decided, "gate.decided", "APPROVED")):
        assert verify_webhook_signature(SECRET, hit.body, hit.headers)
        payload = hit.json()
        assert hit.headers["X-Gatehouse-Event"] == payload["event"] == event
        assert hit.headers["X-Gatehouse-Delivery"] == payload["delivery"]
        assert payload["console_url"] == f"{PUBLIC_URL}/console/gates/{gate['id']}"
        assert Gate.model_validate(payload["gate"]).status.value == status
        assert payload["gate"]["id"] == gate["id"]
        # Credentials never leave in a webhook, exactly as in the audit trail.
        assert payload["gate"]["request"]["parameters"] == {"format": "csv", "api_token": "[redacted]"}
        assert b"tok-should-never-leave" not in hit.body
    assert opened.headers["X-Gatehouse-Delivery"] != decided.headers["X-Gatehouse-Delivery"]
    assert Gate.model_validate(decided.json()["gate"]).decided_by == ("bob",)


# ---------------------------------------------------------------- failing receivers


def test_a_receiver_that_fails_twice_still_gets_the_delivery(
    service: Service, teams_receiver: HttpReceiver, hook_receiver: HttpReceiver
) -> None:
    teams_receiver.fail_next(2)
    hook_receiver.fail_next(2, status=503)

    gate = open_gate(service, EXPORT)

    [card_hit] = teams_receiver.wait_for(1, path=TEAMS_PATH)
    [hook_hit] = hook_receiver.wait_for(1, path=HOOK_PATH)
    assert [r.answered for r in teams_receiver.requests()] == [500, 500, 202]
    assert [r.answered for r in hook_receiver.requests()] == [503, 503, 204]
    assert facts_of(card_of(card_hit))["Gate"] == gate["id"]
    # Every attempt is freshly signed and keeps its delivery id, so a receiver can deduplicate.
    assert {r.headers["X-Gatehouse-Delivery"] for r in hook_receiver.requests()} == {
        hook_hit.headers["X-Gatehouse-Delivery"]
    }
    assert verify_webhook_signature(SECRET, hook_hit.body, hook_hit.headers)

    # The reference stored by the successful retry routes the outcome to the same webhooks.
    decide(service, "bob", gate["id"])
    assert card_of(teams_receiver.wait_for(2, path=TEAMS_PATH)[1])["body"][0]["text"] == "Approved"
    assert hook_receiver.wait_for(2, path=HOOK_PATH)[1].json()["event"] == "gate.decided"


def timed(call: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def test_a_down_receiver_never_fails_or_delays_the_api(start: StartService) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # a port nothing listens on: connection refused
    service = start(nobody + TEAMS_PATH, nobody + HOOK_PATH)
    open_gate(service, WARM_UP)

    gate, open_s = timed(lambda: open_gate(service, EXPORT))
    decided, decide_s = timed(lambda: decide(service, "bob", gate["id"]))

    assert decided["status"] == "APPROVED"
    assert open_s < 1.0, open_s
    assert decide_s < 1.0, decide_s


def test_a_slow_receiver_does_not_delay_the_api(
    service: Service, teams_receiver: HttpReceiver, hook_receiver: HttpReceiver
) -> None:
    open_gate(service, WARM_UP)
    hold_s = teams_receiver.hold_s = hook_receiver.hold_s = 2.5

    gate, open_s = timed(lambda: open_gate(service, EXPORT))

    assert open_s < hold_s / 2, open_s
    # The deliveries arrive (and are held by the receiver) after the API has answered.
    [hit] = teams_receiver.wait_for(1, path=TEAMS_PATH)
    assert facts_of(card_of(hit))["Gate"] == gate["id"]
    hook_receiver.wait_for(1, path=HOOK_PATH)


# ---------------------------------------------------------------- notifiers without the service


@pytest.fixture
def example_gate() -> Gate:
    gatekeeper = example_gatekeeper()
    request = GateRequest.model_validate({**EXPORT, "parameters": {"format": "csv"}})
    gate = gatekeeper.open(request, submitted_by=actor("etl-bot"))
    gatekeeper.store.close()
    return gate


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


def signed_delivery(receiver: HttpReceiver, gate: Gate) -> Recorded:
    notifier = WebhookNotifier(
        {"siem": WebhookTarget.model_validate({"url": receiver.url, "secret": SECRET})}, public_url=PUBLIC_URL
    )
    assert notifier.post_request(gate, NotifyTarget.parse("webhook:siem")) is not None
    [hit] = receiver.wait_for(1)
    return hit


def test_verify_rejects_tampered_stale_and_malformed_deliveries(
    receiver: HttpReceiver, example_gate: Gate
) -> None:
    hit = signed_delivery(receiver, example_gate)
    body, headers = hit.body, dict(hit.headers)
    sent_at = int(headers["X-Gatehouse-Timestamp"])

    assert verify_webhook_signature(SECRET, body, headers)
    assert verify_webhook_signature(SECRET, body, {k.upper(): v for k, v in headers.items()})
    assert verify_webhook_signature(SECRET, body, headers, now=sent_at + 299)

    tampered_body = body.replace(b'"status":"PENDING"', b'"status":"APPROVED"')
    assert tampered_body != body
    assert not verify_webhook_signature(SECRET, tampered_body, headers)
    assert not verify_webhook_signature(SECRET, body + b" ", headers)
    assert not verify_webhook_signature("another-secret", body, headers)
    assert not verify_webhook_signature(SECRET, body, {**headers, "X-Gatehouse-Timestamp": str(sent_at + 1)})
    assert not verify_webhook_signature(SECRET, body, headers, now=sent_at + 301)  # stale: a replay
    assert not verify_webhook_signature(SECRET, body, headers, now=sent_at - 301)  # from the future
    assert not verify_webhook_signature(SECRET, body, headers, tolerance_s=10, now=sent_at + 11)

    signature = headers["X-Gatehouse-Signature"]
    for broken in (
        {k: v for k, v in headers.items() if k != "X-Gatehouse-Signature"},
        {k: v for k, v in headers.items() if k != "X-Gatehouse-Timestamp"},
        {**headers, "X-Gatehouse-Signature": signature.removeprefix("v1=")},
        {**headers, "X-Gatehouse-Signature": "v0=" + signature.removeprefix("v1=")},
        {**headers, "X-Gatehouse-Signature": signature.upper()},
        {**headers, "X-Gatehouse-Signature": "v1=é" + signature[4:]},
        {**headers, "X-Gatehouse-Signature": ""},
        {**headers, "X-Gatehouse-Timestamp": "12a"},
        {**headers, "X-Gatehouse-Timestamp": "١٧٦٣٧٣٤١٨٥"},  # Arabic-Indic digits pass str.isdigit()
        {**headers, "X-Gatehouse-Timestamp": "9" * 40},
        {**headers, "X-Gatehouse-Timestamp": f"{sent_at}.5"},
        {},
    ):
        assert not verify_webhook_signature(SECRET, body, broken), broken


def test_webhook_errors_name_the_target_never_the_url(receiver: HttpReceiver, example_gate: Gate) -> None:
    receiver.status = 400
    url = receiver.url + "/hooks/with-token-in-path-s3cr3t"
    notifier = WebhookNotifier(
        {"siem": WebhookTarget.model_validate({"url": url, "secret": SECRET})}, public_url=PUBLIC_URL
    )
    with pytest.raises(WebhookDeliveryFailed, match=r"^webhook:siem: HTTP 400") as raised:
        notifier.post_request(example_gate, NotifyTarget.parse("webhook:siem"))
    assert "s3cr3t" not in str(raised.value)


def test_a_legacy_connector_error_hidden_in_a_200_is_a_failure(
    receiver: HttpReceiver, example_gate: Gate
) -> None:
    # Office 365 connectors answer 200 and report the real error in the body.
    receiver.reply = (
        b"Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 413"
    )
    notifier = TeamsNotifier({"governance": receiver.url + "/webhookb2/s3cr3t"}, public_url=PUBLIC_URL)
    with pytest.raises(
        TeamsDeliveryFailed, match=r"^teams:governance: HTTP 200: Webhook message delivery failed"
    ) as raised:
        notifier.post_request(example_gate, NotifyTarget.parse("teams:governance"))
    assert "s3cr3t" not in str(raised.value)

    receiver.reply = b"1"  # what a legacy connector says on success
    ref = notifier.post_request(example_gate, NotifyTarget.parse("teams:governance"))
    assert ref is not None
    assert (ref.kind, ref.channel, ref.target, ref.gate_id) == (
        "teams",
        "governance",
        "teams:governance",
        example_gate.id,
    )


def test_unconfigured_names_are_skipped_without_a_request(receiver: HttpReceiver, example_gate: Gate) -> None:
    teams = TeamsNotifier({"governance": receiver.url}, public_url=PUBLIC_URL)
    hooks = WebhookNotifier({}, public_url=PUBLIC_URL)
    assert teams.post_request(example_gate, NotifyTarget.parse("teams:elsewhere")) is None
    assert hooks.post_request(example_gate, NotifyTarget.parse("webhook:elsewhere")) is None
    assert receiver.requests() == []


def test_untrusted_text_cannot_add_markdown_or_links(example_gate: Gate) -> None:
    hostile = example_gate.model_copy(
        update={
            "request": example_gate.request.model_copy(
                update={
                    "target": "[approve here](https://evil.example)\n- **urgent**",
                    "run": example_gate.request.run.model_copy(update={"url": "javascript:alert(1)"}),
                }
            )
        }
    )
    card = request_card(hostile, PUBLIC_URL)
    target = facts_of(dict(card))["Target"]
    assert target == r"\[approve here\](https://evil.example) - \*\*urgent\*\*"
    assert plain("- item") == r"\- item"
    assert plain("1. first") == r"1\. first"
    assert list(actions_of(dict(card))) == ["Review in Gatehouse"]  # no javascript: link


def test_cards_stay_small_whatever_the_request_carries(example_gate: Gate) -> None:
    datasets = tuple(
        DatasetRef(namespace="lake", name=f"t{i:03}_" + "x" * 200, tags={"pii"}) for i in range(200)
    )
    huge = example_gate.model_copy(
        update={
            "request": example_gate.request.model_copy(
                update={"datasets": datasets, "reason": "r" * 4000, "target": "t" * 1000}
            )
        }
    )
    card = request_card(huge, PUBLIC_URL)
    assert len(json.dumps(message(card)).encode()) < 20_000  # Teams' limit is about 28 KB
    facts = facts_of(dict(card))
    assert facts["Datasets"].endswith(" and 190 more in Gatehouse")
    assert len(facts["Target"]) == 600
    assert facts["Target"].endswith("…")
    [reason] = verbatim_of(dict(card))
    assert len(reason) == 1500


def test_notifiers_are_registered_only_when_configured() -> None:
    gatekeeper = example_gatekeeper()
    assert build_notifiers(ServiceConfig(), gatekeeper) == {}
    notifiers = build_notifiers(
        ServiceConfig.model_validate(
            {
                "teams": {"governance": "https://x.test/w"},
                "webhooks": {"siem": {"url": "https://x.test/h", "secret": "s"}},
            }
        ),
        gatekeeper,
    )
    assert {kind: type(n) for kind, n in notifiers.items()} == {
        "teams": TeamsNotifier,
        "webhook": WebhookNotifier,
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"teams": {"governance": "ftp://x.test/s3cr3t"}}, "teams.governance: not an http(s) webhook URL"),
        ({"teams": {"governance": "not a url s3cr3t"}}, "teams.governance: not an http(s) webhook URL"),
        (
            {"webhooks": {"siem": {"url": "file:///s3cr3t", "secret": "s"}}},
            "webhooks.siem.url: not an http(s) URL",
        ),
        (
            {"webhooks": {"siem": {"url": "https://x.test/", "secret": ""}}},
            "webhooks.siem.secret: must not be empty",
        ),
    ],
)
def test_malformed_targets_fail_at_start_without_echoing_secrets(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        build_notifiers(ServiceConfig.model_validate(config), example_gatekeeper())
    assert "s3cr3t" not in str(raised.value)


def test_a_lineage_finding_is_a_card_of_its_own_on_the_webhook(
    receiver: HttpReceiver, example_gate: Gate
) -> None:
    """The webhook-only type cannot reply under the gate's card: the finding is a card of its own,
    naming what was touched, the gate and the run, escaped, with a link to the gate."""
    teams = TeamsNotifier({"governance": receiver.url + "/hook"}, public_url=PUBLIC_URL)
    target = NotifyTarget.parse("teams:governance")
    details = {
        "id": "v" + "0" * 32,
        "kind": "unapproved_target",
        "dataset": "postgres://db:5432/x.public.elsewhere_**now**",
        "operation": "write",
        "tags": [],
        "orchestrator": "airflow",
        "pipeline": "exports_dag",
        "run_id": "manual__1",
        "task_id": "export_customers",
        "accessed_at": "2026-01-05T10:00:03+00:00",
        "detail": "write to postgres://db:5432/x.public.elsewhere_**now**, which no approval names",
    }
    teams.post_alert(example_gate, target, "lineage.out_of_scope", details)
    teams.post_alert(example_gate, target, "gate.other", details)  # not a finding: nothing sent
    teams.post_alert(example_gate, NotifyTarget.parse("teams:elsewhere"), "lineage.out_of_scope", details)
    [posted] = receiver.requests("/hook")
    [attachment] = posted.json()["attachments"]
    card = attachment["content"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    said = facts_of(card)
    assert said["Dataset"] == r"postgres://db:5432/x.public.elsewhere\_\*\*now\*\*"
    assert said["Finding"] == r"unapproved\_target" and said["Operation"] == "write"
    assert said["Tags"] == "none" and said["Gate"] == f"{example_gate.id} (PENDING)"
    assert said["Run"] == r"airflow: exports\_dag / manual\_\_1 / export\_customers"
    assert texts_of(card)[0] == "Out of scope: a run touched more than its approval covers"
    assert card["actions"][0]["url"] == f"{PUBLIC_URL}/console/gates/{example_gate.id}"

    receiver.status = 500  # refused: raised, so the hub retries and counts it
    with pytest.raises(TeamsDeliveryFailed, match=r"^teams:governance: HTTP 500"):
        teams.post_alert(example_gate, target, "lineage.out_of_scope", details)
