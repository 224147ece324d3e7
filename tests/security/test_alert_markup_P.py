"""Attacks through the alerts of the approval-scope check, as adversary P runs them: a pipeline's
``lineage`` token posts OpenLineage events for its own gated run, over real HTTP to the service,
with Slack's Web API, a Teams incoming webhook, the Bot Connector and a SIEM webhook stood in at
the wire (tests/service/slack_standin.py, teams_standin.py, http_receiver.py). On SQLite and
PostgreSQL.

P controls every name in its events: dataset namespace and name, job, run ids, facets.

Markup (property 1: nobody acts as someone else — a name must not speak in the approvers'
    channel as a link, a mention or a broadcast). A dataset name carrying Slack mrkdwn (links,
    ``<!channel>``, ``<@U…>``, ``*bold*``, a backtick to leave a code span), Teams/Adaptive Card
    Markdown (``[click](…)``, ``<at>…</at>``), HTML, newlines (a forged second line or quote) and
    a name as long as the store accepts reaches each channel escaped: the bytes each endpoint
    receives hold no live link but the gate's own, no mention, no broadcast and no line of the
    name's own, and still show the name. The generic webhook gets the name as a plain JSON value.
Flood (property 6: no input breaks the service for others — here, the approvers' channels).
    1,000 distinct out-of-scope reads in one batch are 1,000 stored, audited and counted findings,
    all listed by ``gatehouse lineage violations --gate``; the channels get one alert per (gate,
    target) and, once the interval has passed, one summary of the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from gate_core import Settings
from gate_core.service import ServiceConfig
from tests.lineage import ol_shapes as ol
from tests.lineage.test_openlineage_receiver import approved_gate, cli, post, run_id, store_of
from tests.service.conftest import Service
from tests.service.http_receiver import HttpReceiver
from tests.service.slack_standin import SlackStandIn
from tests.service.teams_standin import BotConnectorStandIn, ConnectorCall
from tests.service.test_teams_bot import CONVERSATION, bot_entry, connector  # noqa: F401 - fixture

PUBLIC_URL = "https://gatehouse.example.test"
SLACK_TOKEN = "xoxb-gatehouse-test"
TARGETS = ["slack:#data-approvals", "teams:governance", "teamsbot:governance", "webhook:siem"]
OUT_OF_SCOPE = "lineage.out_of_scope"

# Every trick at once, then padding to the longest name the receiver accepts.
TRICKS = (
    "<https://evil.example/login|click here>",  # Slack link with a label of P's choosing
    "<!channel>",  # Slack broadcasts
    "<!here>",
    "<!everyone>",
    "<@U0ADMIN>",  # a Slack mention
    "<!subteam^S0SEC>",  # a user-group mention
    "*bold*",  # formatting
    "_it_",
    "~strike~",
    "`tick`",  # a backtick: leaves the code span a name is shown in
    "[click](https://evil.example/md)",  # Markdown link (Teams)
    "<at>bob</at>",  # Teams mention
    "<b>html</b>",
    "<a href='https://evil.example/a'>a</a>",
    "&amp;",  # an entity
    "https://evil.example/bare",  # a bare URL, linked by the client
    "\n> forged quote",  # newlines: a quote, a forged line, a list item of the name's own
    "\n:white_check_mark: Approved by security",
    "\r\n- item",
)
MARKUP = "pay" + " ".join(TRICKS)
HOSTILE = MARKUP + " " + "x" * (999 - len(MARKUP))  # the receiver takes names up to 1,000


@dataclass
class Channels:
    service: Service
    slack: SlackStandIn
    teams: HttpReceiver  # a Teams incoming webhook (Workflows)
    bot: BotConnectorStandIn
    siem: HttpReceiver

    def slack_alerts(self) -> list[Any]:
        return [c for c in self.slack.calls("chat.postMessage") if "Out of scope" in c.text]

    def teams_alerts(self) -> list[Any]:
        return [r for r in self.teams.requests("/governance") if b"Out of scope" in r.body]

    def bot_alerts(self) -> list[ConnectorCall]:
        return [c for c in self.bot.calls("POST") if "Out of scope" in c.text]

    def siem_alerts(self) -> list[Any]:
        return [r for r in self.siem.requests("/siem") if r.headers.get("X-Gatehouse-Event") == OUT_OF_SCOPE]

    def counts(self) -> dict[str, int]:
        return {
            "slack": len(self.slack_alerts()),
            "teams": len(self.teams_alerts()),
            "teamsbot": len(self.bot_alerts()),
            "webhook": len(self.siem_alerts()),
        }


@pytest.fixture
def channels(
    service_factory: Callable[..., Service],
    service_settings: Settings,
    connector: BotConnectorStandIn,  # noqa: F811 - the fixture imported above
) -> Iterator[Channels]:
    policy = service_settings.policy_path
    policy.write_text(
        policy.read_text(encoding="utf-8").replace(
            'notify: ["slack:#data-approvals"]', f"notify: {json.dumps(TARGETS)}", 1
        ),
        encoding="utf-8",
    )
    with (
        SlackStandIn(token=SLACK_TOKEN, users={}) as slack,
        HttpReceiver() as teams,
        HttpReceiver() as siem,
    ):
        config = ServiceConfig(
            public_url=PUBLIC_URL,
            sweep_interval_s=0.2,
            notifiers={
                "slack": {
                    "type": "slack",
                    "bot_token": SLACK_TOKEN,
                    "signing_secret": "s" * 32,
                    "api_url": slack.api_url,
                },
                "teams": {"type": "teams", "webhooks": {"governance": f"{teams.url}/governance"}},
                "teamsbot": bot_entry(connector),
                "webhook": {
                    "type": "webhook",
                    "endpoints": {"siem": {"url": f"{siem.url}/siem", "secret": "s3"}},
                },
            },
        )
        service = service_factory(config, local_signin=True)
        from gate_core import Scope
        from gate_core.testing import actor

        service.tokens["lineage"] = service.gatekeeper.tokens.create(
            "etl-bot", Scope.LINEAGE, created_by=actor("frank")
        )[1]
        yield Channels(service, slack, teams, connector, siem)


def read_of(dag: str, run: str, *names: str, per_event: int = 500) -> list[dict[str, Any]]:
    """The events an Airflow task reading ``names`` sends (at most 500 datasets an event)."""
    return [
        ol.airflow_task(
            dag,
            run,
            "load",
            inputs=[ol.table(n, ("id", "integer"), ("email", "varchar")) for n in names[i : i + per_event]],
        )
        for i in range(0, len(names), per_event)
    ]


def backend(service: Service) -> str:
    return "SQLite" if service.settings.database_url.startswith("sqlite") else "PostgreSQL"


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the alerts never arrived"
        time.sleep(0.05)


# ---------------------------------------------------------------- markup


def _outside_code(mrkdwn: str) -> str:
    return re.sub(r"`[^`\n]*`", "``", mrkdwn)


def _markdown_texts(card: dict[str, Any]) -> list[str]:
    """Every string of an Adaptive Card that Teams renders as Markdown (TextBlocks, facts)."""
    texts = []
    for block in card["body"]:
        if block["type"] == "TextBlock":
            texts.append(block["text"])
        elif block["type"] == "FactSet":
            texts += [f"{f['title']}: {f['value']}" for f in block["facts"]]
    return texts


def _assert_card_is_inert(card: dict[str, Any], gate_id: str) -> None:
    text = json.dumps(card, ensure_ascii=False)
    assert "[click](" not in text and "<at>" not in text and "<b>" not in text
    assert "entities" not in card.get("msteams", {})  # a mention needs one: none is made
    for shown in _markdown_texts(card):
        assert "\n" not in shown and "\r" not in shown, shown  # no line of the name's own
        # every Markdown character of the name is escaped (CommonMark backslash escapes)
        assert not re.search(r"(?<!\\)[\[\]<>*_`|~]", shown), shown
    # the only things to click: the gate in the console
    assert [a["url"] for a in card["actions"]] == [f"{PUBLIC_URL}/console/gates/{gate_id}"]
    # readable: the name is there, escaped, cut to fit
    facts = {f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]}
    assert facts["Dataset"].startswith(
        ol.PG.replace("_", "\\_") + "/pay\\<https://evil.example/login\\|click here\\> \\<!channel\\>"
    )
    assert "\\[click\\](https://evil.example/md) \\<at\\>bob\\</at\\>" in facts["Dataset"]
    assert len(facts["Dataset"]) <= 700


def test_markup_in_a_dataset_name_reaches_no_channel_alive(channels: Channels, report: Any) -> None:
    svc = channels.service
    run = run_id()
    gate_id = approved_gate(svc, "export_dag", run)
    response = post(svc, read_of("export_dag", run, HOSTILE), batch=True)
    assert response.status_code == 201, response.text
    assert response.json()["violations"] == 1
    [stored] = store_of(svc).violations(gate_id=gate_id).rows
    assert stored.dataset == f"{ol.PG}/{HOSTILE}"  # stored as sent: escaping is the channel's job
    wait_until(lambda: all(n == 1 for n in channels.counts().values()))
    svc.drain()
    assert channels.counts() == {"slack": 1, "teams": 1, "teamsbot": 1, "webhook": 1}

    # Slack: the exact JSON chat.postMessage received
    [call] = channels.slack_alerts()
    body = json.loads(call.raw)
    text = body["text"]
    console = f"{PUBLIC_URL}/console/gates/{gate_id}"
    # the one link, mention or broadcast in the message is the gate's own console link
    assert re.findall(r"<[^>]*>", text) == [f"<{console}|Open the gate>"]
    assert "<!" not in text and "<@" not in text and "<http" not in text.replace(f"<{console}|", "")
    # outside code spans (where Slack links bare URLs and renders *bold*) nothing of the name is left
    assert "evil.example" not in _outside_code(text) and "*bold*" not in _outside_code(text)
    assert "forged quote" not in _outside_code(text)
    assert not any(line.startswith((">", ":white_check_mark:", "- ")) for line in text.splitlines())
    assert text.count("\n") == 3  # the message's own lines only
    assert body.get("unfurl_links") is False and body.get("unfurl_media") is False
    # readable: escaped as Slack documents (&lt; &gt; &amp;), in a code span, cut to fit
    assert "pay&lt;https://evil.example/login|click here&gt; &lt;!channel&gt; &lt;!here&gt;" in text
    assert "'tick'" in text and "&amp;amp;" in text
    assert len(text) < 2500

    # Teams incoming webhook: the exact message the webhook received
    [hit] = channels.teams_alerts()
    message = json.loads(hit.body)
    [attachment] = message["attachments"]
    _assert_card_is_inert(attachment["content"], gate_id)

    # Teams bot: the activity the Bot Connector received, card and notification text
    [activity] = channels.bot_alerts()
    sent = json.loads(activity.raw)
    _assert_card_is_inert(sent["attachments"][0]["content"], gate_id)
    assert "\n" not in sent["summary"] and len(sent["summary"]) <= 250
    assert "text" not in sent or "<at>" not in sent["text"]

    # the generic webhook: plain JSON values, exactly as the pipeline sent them (the SIEM escapes)
    [delivery] = channels.siem_alerts()
    alert = json.loads(delivery.body)["alert"]
    assert alert["dataset"] == f"{ol.PG}/{HOSTILE}" and alert["gate_id"] == gate_id
    report(
        f"Alert markup (P): tricks in one dataset name ({backend(svc)})",
        f"{len(TRICKS) + 1} tried (links, mentions, broadcasts, formatting, HTML, newlines, "
        f"{len(HOSTILE):,} characters) x 3 chat channels, 0 alive",
    )


# ---------------------------------------------------------------- flood

FLOOD = 1000


def test_a_thousand_findings_are_all_kept_and_one_alert_per_target(channels: Channels, report: Any) -> None:
    svc = channels.service
    hub = svc.app.state.gatehouse.hub
    now = [1_000_000.0]
    hub.clock = lambda: now[0]  # the coalescing window's clock, moved by hand
    run = run_id()
    gate_id = approved_gate(svc, "export_dag", run)
    names = [f"test.public.pii_{i:04d}" for i in range(FLOOD)]
    response = post(svc, read_of("export_dag", run, *names), batch=True)
    assert response.status_code == 201, response.text
    assert response.json()["violations"] == FLOOD
    wait_until(lambda: all(n >= 1 for n in channels.counts().values()))
    svc.drain()

    # none lost: stored, audited, counted, listed
    assert len(store_of(svc).violations(gate_id=gate_id, limit=5000).rows) == FLOOD
    audited = svc.gatekeeper.store.engine  # type: ignore[attr-defined]
    from sqlalchemy import text as sql

    with audited.connect() as conn:
        entries = conn.execute(
            sql("SELECT count(*) FROM gh_audit_log WHERE event = :e AND gate_id = :g"),
            {"e": OUT_OF_SCOPE, "g": gate_id},
        ).scalar_one()
    assert entries == FLOOD
    listed = cli(svc, "violations", "--gate", gate_id, "--limit", "5000", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["rows"]) == FLOOD
    first = channels.counts()
    assert first == {"slack": 1, "teams": 1, "teamsbot": 1, "webhook": 1}, first

    # the interval passes: one summary of the other 999 per target (the newest, "and 998 more"),
    # naming where they all are
    now[0] += hub.alert_interval_s
    wait_until(lambda: all(n == 2 for n in channels.counts().values()))
    svc.drain()
    assert channels.counts() == {"slack": 2, "teams": 2, "teamsbot": 2, "webhook": 2}
    command = f"gatehouse lineage violations --gate {gate_id}"
    summary = channels.slack_alerts()[-1].body["text"]
    assert f"{FLOOD - 2} more findings" in summary.replace(",", "") and command in summary
    teams_card = json.loads(channels.teams_alerts()[-1].body)["attachments"][0]["content"]
    assert f"{FLOOD - 2} more findings" in json.dumps(teams_card).replace(",", "")
    assert json.loads(channels.siem_alerts()[-1].body)["alert"]["more_findings"] == FLOOD - 2
    # nothing more to tell: another interval sends nothing
    now[0] += hub.alert_interval_s
    hub.flush_alerts()
    svc.drain()
    assert sum(channels.counts().values()) == 8
    report(
        f"Alert flood (P): posts for {FLOOD:,} findings of one gate, per target ({backend(svc)})",
        "2 (one alert, one summary after the interval); before: 1,000",
    )
