"""Attacks through the approval card's inline code, as adversary R runs them: the requester's own
pipeline opens a gate over real HTTP with a target of its choosing, and the card reaches Slack's
Web API (stood in at the wire, tests/service/slack_standin.py). On SQLite and PostgreSQL.

Property 1 (nobody acts as someone else): text the requester wrote must not speak in the
approvers' channel as a line of its own. The card shows the target as inline code; a newline in
it ended the code span, so the rest rendered as mrkdwn on a line of its own — an emoji and a bold
"Approved by security" inside the very card approvers decide from, and in the notification text.
Every code span, the header and the notification text are now one line, still showing the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from tests.service.test_slack import SlackRig, slack, socket_mode, start_rig  # noqa: F401 - fixtures

FORGED = (":white_check_mark: *Approved by security*", "> forged quote", "- item")
TARGET = "s3://exports/customers.csv\n" + "\n".join(FORGED[:2]) + "\r\n" + FORGED[2]


def texts(value: Any) -> Iterator[str]:
    """Every text Slack renders from a chat.postMessage body: ``text`` and each block's."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "text" and isinstance(item, str):
                yield item
            else:
                yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)


def test_a_target_with_newlines_stays_one_line_on_the_card(
    start_rig: Callable[..., SlackRig],  # noqa: F811 - the imported fixture
    report: Callable[..., None],
) -> None:
    rig = start_rig()
    gate_id = rig.open_gate(target=TARGET)["id"]
    rendered = list(texts(rig.card(gate_id).body))
    shown = "`s3://exports/customers.csv :white_check_mark: *Approved by security* &gt; forged quote - item`"
    assert any(shown in text for text in rendered)  # shown, escaped, on one line
    spans = [span for text in rendered for span in re.findall(r"`[^`]*`", text)]
    assert spans
    assert not [span for span in spans if "\n" in span or "\r" in span]
    forged = [
        line
        for text in rendered
        for line in text.splitlines()
        if any(
            line.strip().startswith(start)
            for start in (":white_check_mark:", "&gt; forged", "> forged", "- item")
        )
    ]
    assert not forged, forged
    backend = "SQLite" if rig.service.settings.database_url.startswith("sqlite") else "PostgreSQL"
    report(
        f"Slack card markup (R): a target's forged lines ({backend})",
        f"{len(FORGED)} tried (an emoji and bold verdict, a quote, a list item), "
        f"{len(forged)} on a line of their own",
    )
