"""Microsoft Teams notifier: Adaptive Cards posted to Teams incoming webhooks or Workflows.

    notifiers: {teams: {type: teams, webhooks: {governance: https://…webhook…}}}

    notify target teams:governance ──► POST webhooks["governance"]
        {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                              "contentUrl": null, "content": <AdaptiveCard 1.5>}]}

The request card carries the approver's whole context (who asks what for, datasets and tags, the
rule that matched and why, run, last review, expiry, quorum) and a "Review in Gatehouse" button
to the console, where the decision is taken with a verified identity. A webhook cannot edit or
reply to a posted card, so outcomes and reminders are follow-up cards on the same webhook; so is
an approval-scope finding (``lineage.out_of_scope``: ``alert_card``, also the Teams bot's).

Everything a requester typed (action, target, dataset names, reason, comments) is untrusted:
Teams renders Markdown in TextBlocks and facts, so it is escaped there, and free text goes into
TextRuns, which Teams never renders as Markdown (no smuggled links in an approval card).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict

from gate_core._models import Gate, GateStatus
from gate_core._notify_target import NotifyTarget
from gate_core._ports import NotificationRef
from gate_core.service.notify._port import NotifierContext, NotifierType
from gate_core.service.notify._webhook import is_http_url

log = logging.getLogger("gatehouse.notify.teams")

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.5"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
# Size caps keep a card well under Teams' message limit whatever a request carries; the console
# shows everything.
MAX_DATASETS = 10
MAX_FACT = 600
MAX_FREE_TEXT = 1500

# ---------------------------------------------------------------- card shapes (Adaptive Cards 1.5)

Color = Literal["Default", "Good", "Warning", "Attention", "Accent"]
Size = Literal["Default", "Medium", "Large"]
Weight = Literal["Default", "Bolder"]


class TextBlock(TypedDict):
    type: Literal["TextBlock"]
    text: str
    wrap: bool
    size: NotRequired[Size]
    weight: NotRequired[Weight]
    color: NotRequired[Color]


class Fact(TypedDict):
    title: str
    value: str


class FactSet(TypedDict):
    type: Literal["FactSet"]
    facts: list[Fact]


class TextRun(TypedDict):
    type: Literal["TextRun"]
    text: str


class RichTextBlock(TypedDict):
    type: Literal["RichTextBlock"]
    inlines: list[TextRun]


class OpenUrlAction(TypedDict):
    type: Literal["Action.OpenUrl"]
    title: str
    url: str


CardElement = TextBlock | FactSet | RichTextBlock

# "$schema" is not an identifier, hence the functional form.
AdaptiveCard = TypedDict(
    "AdaptiveCard",
    {
        "$schema": str,
        "type": Literal["AdaptiveCard"],
        "version": str,
        "body": list[CardElement],
        "actions": list[OpenUrlAction],
        "msteams": dict[str, str],
    },
)


class Attachment(TypedDict):
    contentType: str
    contentUrl: None
    content: AdaptiveCard


class TeamsMessage(TypedDict):
    type: Literal["message"]
    attachments: list[Attachment]


# ---------------------------------------------------------------- text helpers

_MARKDOWN = re.compile(r"([\\`*_\[\]~<>|])")
_BLOCK_MARK = re.compile(r"^([-+#>])")  # a list item, heading or quote when it opens the text
_NUMBERED = re.compile(r"^(\d+)([.)])")  # a numbered list item


def clip(text: str, limit: int) -> str:
    """Cut long free text: Teams refuses a message over about 28 KB, and then nobody is asked."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def plain(text: str) -> str:
    """Escape untrusted text for a Markdown-rendering field, on one line.

    Backslash escapes are CommonMark; newlines are flattened so a value cannot open a list or a
    quote of its own; long values are clipped."""
    one_line = clip(" ".join(text.split()), MAX_FACT)
    escaped = _MARKDOWN.sub(r"\\\1", one_line)
    return _NUMBERED.sub(r"\1\\\2", _BLOCK_MARK.sub(r"\\\1", escaped))


def when(moment: datetime) -> str:
    """UTC, to the second: approvers in several time zones read the same instant."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _text(
    value: str, *, size: Size | None = None, weight: Weight | None = None, color: Color | None = None
) -> TextBlock:
    block: TextBlock = {"type": "TextBlock", "text": value, "wrap": True}
    if size:
        block["size"] = size
    if weight:
        block["weight"] = weight
    if color:
        block["color"] = color
    return block


def _verbatim(value: str) -> RichTextBlock:
    """Free text shown exactly as typed: TextRuns are never rendered as Markdown."""
    return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": value}]}


def _facts(*pairs: tuple[str, str]) -> FactSet:
    return {"type": "FactSet", "facts": [{"title": title, "value": value} for title, value in pairs]}


def _open_url(title: str, url: str) -> OpenUrlAction:
    return {"type": "Action.OpenUrl", "title": title, "url": url}


def _card(body: list[CardElement], actions: list[OpenUrlAction]) -> AdaptiveCard:
    return {
        "$schema": SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        "actions": actions,
        "msteams": {"width": "Full"},  # approval context reads badly in the default narrow card
    }


def message(content: AdaptiveCard) -> TeamsMessage:
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": content}],
    }


# ---------------------------------------------------------------- what the cards say


def console_url(public_url: str, gate: Gate) -> str:
    return f"{public_url.rstrip('/')}/console/gates/{gate.id}"


def subject(gate: Gate) -> str:
    req = gate.request
    where = (f" on {req.target}" if req.target else "") + (
        f" in {req.environment}" if req.environment else ""
    )
    return plain(f"{req.action}{where}")


def _requester(gate: Gate) -> str:
    req = gate.request
    via = f" (submitted by {gate.submitted_by})" if gate.submitted_by != req.requester else ""
    return plain(f"{req.requester}{via}")


def _involved(gate: Gate) -> str:
    """``bob (requester; …), carol (…); none may decide``: everyone involved, with the source."""
    people = gate.involved_people()
    if not people:
        return "none recorded"
    return plain("; ".join(f"{who} ({said})" for who, said in people) + " — none of them may decide")


def _datasets(gate: Gate) -> str:
    datasets = gate.request.datasets
    shown = ", ".join(str(d) for d in datasets[:MAX_DATASETS])
    more = f" and {len(datasets) - MAX_DATASETS} more in Gatehouse" if len(datasets) > MAX_DATASETS else ""
    return plain(shown) + more if datasets else "none"  # the count is ours: never clipped away


def _run(gate: Gate) -> str:
    run = gate.request.run
    parts = [p for p in (run.pipeline, run.run_id, run.task_id) if p]
    attempt = f" (try {run.try_number})" if run.try_number > 1 else ""
    return plain(f"{run.orchestrator}: {' / '.join(parts)}{attempt}" if parts else run.orchestrator)


def _last_review(gate: Gate) -> str:
    review = gate.last_review
    if review is None:
        return "never"
    who = ", ".join(review.decided_by) or "nobody"
    return plain(
        f"{review.status.value.lower()} by {who} at {when(review.decided_at)} (gate {review.gate_id})"
    )


def _approvals(gate: Gate) -> str:
    groups = " or ".join(gate.approver_groups) or "no group"
    line = f"{len(gate.approvals)} of {gate.required_approvals} from {groups}"
    if gate.break_glass_groups:
        line += f"; break-glass: {', '.join(gate.break_glass_groups)}"
    if gate.signature:
        line += "; needs a decision signed with a passkey: decide in the Gatehouse console"
    return plain(line)


def context_facts(gate: Gate) -> FactSet:
    req = gate.request
    return _facts(
        ("Requester", _requester(gate)),
        ("Involved", _involved(gate)),
        ("Action", plain(req.action)),
        ("Target", plain(req.target) or "none"),
        ("Environment", plain(req.environment) or "none"),
        ("Datasets", _datasets(gate)),
        (
            "Tags",
            plain(", ".join(sorted({gate.tag_with_source(d, t) for d in req.datasets for t in d.tags})))
            or "none",
        ),
        ("Rule", plain(", ".join(gate.matched_rules) or gate.rule)),
        ("Why", plain(gate.explanation)),
        ("Run", _run(gate)),
        ("Last reviewed", _last_review(gate)),
        ("Expires", when(gate.expires_at)),
        ("Approvals", _approvals(gate)),
        ("Gate", gate.id),
    )


def _links(gate: Gate, public_url: str, title: str) -> list[OpenUrlAction]:
    links = [_open_url(title, console_url(public_url, gate))]
    run_url = gate.request.run.url
    # The run link comes from the requester: only web links, never javascript: or file: URLs.
    if run_url and run_url.lower().startswith(("https://", "http://")):
        links.append(_open_url("Open the run", run_url))
    return links


def request_card(gate: Gate, public_url: str, *, reminder: bool = False) -> AdaptiveCard:
    heading = "Reminder: approval still needed" if reminder else "Approval needed"
    body: list[CardElement] = [
        _text(heading, size="Large", weight="Bolder", color="Warning" if reminder else "Accent"),
        _text(subject(gate), size="Medium"),
        context_facts(gate),
    ]
    if gate.request.reason:
        body += [_text("Reason", weight="Bolder"), _verbatim(clip(gate.request.reason, MAX_FREE_TEXT))]
    return _card(body, _links(gate, public_url, "Review in Gatehouse"))


_OUTCOME: dict[GateStatus, tuple[str, Color]] = {
    GateStatus.PENDING: ("Decision recorded, more approvals needed", "Accent"),
    GateStatus.APPROVED: ("Approved", "Good"),
    GateStatus.CONSUMED: ("Approved, and the step ran", "Good"),
    GateStatus.REJECTED: ("Rejected", "Attention"),
    GateStatus.EXPIRED: ("Expired without a decision", "Warning"),
    GateStatus.CANCELLED: ("Cancelled by the requester", "Default"),
}


def _decided_by(gate: Gate) -> str:
    if gate.status is GateStatus.PENDING:
        ids = tuple(d.principal_id for d in gate.decisions)
    else:
        ids = gate.decided_by
    names = {d.principal_id: d.display_name for d in gate.decisions}
    labelled = [f"{names[i]} ({i})" if names.get(i, i) != i else i for i in ids]
    return plain(", ".join(labelled)) or "nobody"


def _decided_at(gate: Gate) -> str:
    if gate.decided_at is not None:
        return when(gate.decided_at)
    return when(gate.decisions[-1].at) if gate.decisions else "not yet"


def outcome_card(gate: Gate, public_url: str) -> AdaptiveCard:
    heading, color = _OUTCOME[gate.status]
    body: list[CardElement] = [
        _text(heading, size="Large", weight="Bolder", color=color),
        _text(subject(gate), size="Medium"),
        _facts(
            ("Status", gate.status.value),
            ("Decided by", _decided_by(gate)),
            ("When", _decided_at(gate)),
            ("Approvals", _approvals(gate)),
            ("Requester", _requester(gate)),
            ("Involved", _involved(gate)),
            ("Gate", gate.id),
        ),
    ]
    for decision in gate.decisions:
        flag = " BREAK-GLASS" if decision.break_glass else ""
        line = (
            f"{decision.verdict.value}d by {decision.display_name} ({decision.principal_id}) "
            f"via {decision.via.value} at {when(decision.at)}{flag}"
        )
        body.append(_text(plain(line), weight="Bolder", color="Attention" if flag else "Default"))
        if decision.comment:
            body.append(_verbatim(clip(decision.comment, MAX_FREE_TEXT)))
    return _card(body, _links(gate, public_url, "View in Gatehouse"))


OUT_OF_SCOPE = "lineage.out_of_scope"


def _said(details: Mapping[str, Any], key: str) -> str:
    value = details.get(key)
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    return plain(str(value)) if value not in (None, "") else "none"


def _accessed(details: Mapping[str, Any]) -> str:
    raw = str(details.get("accessed_at") or "")
    try:
        return when(datetime.fromisoformat(raw))
    except ValueError:
        return plain(raw) or "unknown"


def _finding_run(details: Mapping[str, Any]) -> str:
    """The run that touched it, as the finding names it (the task that did, not the gate task)."""
    parts = [str(details.get(k) or "") for k in ("pipeline", "run_id", "task_id")]
    shown = " / ".join(p for p in parts if p)
    orchestrator = str(details.get("orchestrator") or "")
    return plain(f"{orchestrator}: {shown}" if shown else orchestrator) or "unknown"


def alert_card(gate: Gate, details: Mapping[str, Any], public_url: str) -> AdaptiveCard:
    """A finding of the approval-scope check (``lineage.out_of_scope``): what the run touched beyond
    its approval, what the gate approved, the run, and links to the gate and the run.

    Names, kinds and times only — never contents. The dataset name, the run and the detail come
    from events a pipeline sent, so every value is escaped like a requester's text."""
    operation, dataset = _said(details, "operation"), _said(details, "dataset")
    more = int(details.get("more_findings") or 0)
    body: list[CardElement] = [
        _text(
            "Out of scope: a run touched more than its approval covers",
            size="Large",
            weight="Bolder",
            color="Attention",
        ),
        _text(f"{operation} of {dataset}", size="Medium"),
        _facts(
            ("Finding", _said(details, "kind")),
            ("Dataset", dataset),
            ("Operation", operation),
            ("Tags", _said(details, "tags")),
            ("Accessed", _accessed(details)),
            ("Why", _said(details, "detail")),
            ("Run", _finding_run(details)),
            ("Approved", subject(gate)),
            ("Requester", _requester(gate)),
            ("Rule", plain(gate.rule)),
            ("Gate", f"{gate.id} ({gate.status.value})"),
            ("Finding id", _said(details, "id")),
        ),
        _text(
            "Found after the fact from the run's own lineage events: the access has already happened.",
            color="Warning",
        ),
    ]
    if more:  # a summary: the findings held back since the last alert, the newest shown above
        noun = "finding" if more == 1 else "findings"
        body.insert(
            2,
            _text(
                f"and {more:,} more {noun} on this gate since the last alert, not sent one by one: "
                f"gatehouse lineage violations --gate {gate.id}, or the gate in Gatehouse",
                weight="Bolder",
                color="Attention",
            ),
        )
    return _card(body, _links(gate, public_url, "Open the gate in Gatehouse"))


# ---------------------------------------------------------------- the notifier


class TeamsDeliveryFailed(RuntimeError):
    """A webhook refused a card. Names the channel, never the URL: the URL is the credential."""


# Legacy Office 365 connectors answer 200 and put the real error in the body.
_LEGACY_FAILURE = "Webhook message delivery failed"
# Workflows answers 202 with a run id; legacy connectors send a request id.
_REF_HEADERS = ("x-ms-workflow-run-id", "request-id", "x-ms-request-id")


def _webhook_url(url: str) -> str:
    """Refused at start-up rather than at the first gate; the error never repeats the URL (it is
    a secret)."""
    if not is_http_url(url):
        raise ValueError("not an http(s) webhook URL")
    return url


class TeamsConfig(BaseModel):
    """One instance, any number of channels: the target's address names the webhook."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    webhooks: dict[str, Annotated[str, AfterValidator(_webhook_url)]]


class TeamsNotifier:
    """Notifier for ``INSTANCE:NAME`` targets; ``webhooks`` maps NAME to its webhook URL."""

    kind = "teams"

    def __init__(
        self,
        webhooks: Mapping[str, str],
        *,
        public_url: str,
        instance: str = "teams",
        timeout_s: float = 10.0,
    ) -> None:
        self.webhooks = dict(webhooks)
        self.instance = instance  # errors name the target as the policy wrote it, never the URL
        self.public_url = public_url
        self.timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))

    def post_request(self, gate: Gate, target: NotifyTarget) -> NotificationRef | None:
        name = target.address
        url = self._url(name, gate)
        if url is None:
            return None
        message_ref = self._post(name, url, request_card(gate, self.public_url))
        return NotificationRef(
            gate_id=gate.id,
            target=str(target),
            channel=name,
            message_ref=message_ref,
            kind=self.kind,
            sent_at=datetime.now(UTC),
        )

    def post_outcome(self, gate: Gate, ref: NotificationRef) -> None:
        url = self._url(ref.channel, gate)
        if url is not None:
            self._post(ref.channel, url, outcome_card(gate, self.public_url))

    def post_reminder(self, gate: Gate, target: NotifyTarget) -> None:
        name = target.address
        url = self._url(name, gate)
        if url is not None:
            self._post(name, url, request_card(gate, self.public_url, reminder=True))

    def post_alert(self, gate: Gate, target: NotifyTarget, event: str, details: Mapping[str, Any]) -> None:
        """An after-the-fact finding (``lineage.out_of_scope``) as its own card on the target's
        webhook (a webhook cannot reply in the gate card's thread)."""
        if event != OUT_OF_SCOPE:
            log.warning("gate %s: Teams alerts carry %s only, not %r", gate.id, OUT_OF_SCOPE, event)
            return
        url = self._url(target.address, gate)
        if url is not None:
            self._post(target.address, url, alert_card(gate, details, self.public_url))

    def _url(self, name: str, gate: Gate) -> str | None:
        url = self.webhooks.get(name)
        if url is None:
            # Retrying cannot help a name that is not configured: say so once and move on.
            log.error(
                "gate %s: no Teams webhook named %r in notifiers.%s.webhooks", gate.id, name, self.instance
            )
        return url

    def _post(self, name: str, url: str, content: AdaptiveCard) -> str:
        """POST one card; returns a reference to the delivery, raises when it was not accepted."""
        try:
            response = httpx.post(url, json=message(content), timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise TeamsDeliveryFailed(f"{self.instance}:{name}: {type(exc).__name__}: {exc}") from None
        if not response.is_success or response.text.startswith(_LEGACY_FAILURE):
            raise TeamsDeliveryFailed(
                f"{self.instance}:{name}: HTTP {response.status_code}: {response.text[:200]}"
            )
        for header in _REF_HEADERS:
            if response.headers.get(header):
                return f"{header}:{response.headers[header]}"
        return f"http-{response.status_code}"


def _create(config: TeamsConfig, context: NotifierContext) -> TeamsNotifier:
    return TeamsNotifier(config.webhooks, public_url=context.public_url, instance=context.name)


TEAMS = NotifierType("teams", TeamsConfig, _create)
