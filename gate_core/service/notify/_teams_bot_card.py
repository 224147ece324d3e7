"""The Teams bot's approval card: the webhook card's content plus Universal Actions.

    ┌ Approval needed ─────────────────────────────────┐   body: as the webhook card (context facts,
    │ export on s3://exports/customers.csv             │   the reason verbatim) — or, once someone
    │ Requester … Datasets … Rule … Expires … Gate …   │   decided, the outcome and who decided
    │ [Approve]  [Reject…]  [Review in Gatehouse]      │   Action.Execute verb "approve"
    └──────────────────────────────────────────────────┘   Action.ShowCard → Input.Text "reason" +
                                                            Action.Execute verb "reject"
    refresh: Action.Execute verb "refresh"                  Teams asks for the current card

Every Action.Execute carries ``{"gate": "<id>"}`` as its data; Teams sends it back in the invoke
activity's ``value.action.data`` together with the card's inputs (``reason``). Buttons are shown
only while the gate is open. A ``notice`` (a refusal) is put at the top of a card that goes to one
person only, in the invoke response; such a card refreshes itself for that person (``userIds``),
so their view does not keep an old refusal once the gate moves on.
"""

from __future__ import annotations

from typing import Any

from gate_core._models import Gate
from gate_core.service.notify._teams import (
    CARD_CONTENT_TYPE,
    outcome_card,
    plain,
    request_card,
)

CARD_VERSION = "1.5"  # Universal Actions need 1.4; 1.5 is what Teams renders today
VERB_APPROVE = "approve"
VERB_REJECT = "reject"
VERB_REFRESH = "refresh"
GATE_FIELD = "gate"
REASON_INPUT = "reason"
REASON_MAX = 2000


def _execute(title: str, verb: str, gate: Gate, **extra: Any) -> dict[str, Any]:
    return {"type": "Action.Execute", "title": title, "verb": verb, "data": {GATE_FIELD: gate.id}, **extra}


def _decision_actions(gate: Gate) -> list[dict[str, Any]]:
    reject_form = {
        "type": "AdaptiveCard",
        "body": [
            {
                "type": "Input.Text",
                "id": REASON_INPUT,
                "label": "Why reject? (goes to the requester and the audit trail)",
                "isMultiline": True,
                "isRequired": True,
                "maxLength": REASON_MAX,
                "errorMessage": "A reason is required.",
            }
        ],
        "actions": [_execute("Reject", VERB_REJECT, gate, style="destructive")],
    }
    return [
        _execute("Approve", VERB_APPROVE, gate, style="positive"),
        {"type": "Action.ShowCard", "title": "Reject…", "card": reject_form},
    ]


def bot_card(
    gate: Gate, public_url: str, *, notice: str | None = None, only_for: str | None = None
) -> dict[str, Any]:
    """The card for ``gate`` as it stands; ``notice`` (shown in red at the top) and ``only_for``
    (the Teams user id whose view refreshes itself) for a card sent to one person."""
    base = (
        outcome_card(gate, public_url)
        if gate.decisions or not gate.status.is_open
        else request_card(gate, public_url)
    )
    card: dict[str, Any] = dict(base)
    card["version"] = CARD_VERSION
    body: list[Any] = list(base["body"])
    if notice:
        # our own words, but they quote names and e-mails from the tenant: escaped like the rest
        body.insert(0, {"type": "TextBlock", "text": plain(notice), "wrap": True, "color": "Attention"})
    card["body"] = body
    links: list[Any] = list(base["actions"])
    card["actions"] = (_decision_actions(gate) if gate.status.is_open else []) + links
    refresh: dict[str, Any] = {"action": _execute("Refresh", VERB_REFRESH, gate)}
    if only_for:
        refresh["userIds"] = [only_for]
    card["refresh"] = refresh
    return card


def card_attachment(card: dict[str, Any]) -> dict[str, Any]:
    return {"contentType": CARD_CONTENT_TYPE, "content": card}
