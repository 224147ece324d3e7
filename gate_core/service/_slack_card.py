"""The Slack approval card (Block Kit, built with slack_sdk's models), its reminder and outcome
texts, and the reject-reason modal. Pure: a Gate in, blocks out; the notifier posts them.

Every caller-supplied string is escaped for mrkdwn and cut to Slack's field limits, so a dataset
name or a reason can neither inject formatting or mentions nor make chat.postMessage fail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from gate_core._models import (
    DatasetRef,
    Decision,
    Gate,
    GateStatus,
    LastReview,
    Principal,
    RunContext,
    Verdict,
)
from gate_core._notify_target import NotifyTarget

ACTION_APPROVE = "gatehouse_approve"
ACTION_REJECT = "gatehouse_reject"
REJECT_CALLBACK = "gatehouse_reject_reason"
REASON_BLOCK = "gatehouse_reason"
REASON_ACTION = "reason"
REASON_MAX = 4000  # the REST API's limit on a decision comment

_USER_ID = re.compile(r"^[UW][A-Z0-9]{1,30}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{1,30}$")
_PARTIAL_ENTITY = re.compile(r"&[a-z]*$")

# ---------------------------------------------------------------- mrkdwn text


def mrkdwn_escape(text: str) -> str:
    """Requesters write reasons, targets and names: escaped, they cannot ping @channel or forge links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fit(mrkdwn: str, limit: int) -> str:
    """Clip to a Block Kit length limit without cutting an escaped ``&entity;`` in two."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    return _PARTIAL_ENTITY.sub("", mrkdwn[: limit - 1]) + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _code(text: str, limit: int = 300) -> str:
    """Text someone else wrote (a requester's target, a pipeline's dataset name) as inline code:
    in a code span Slack links no bare URL and renders no *bold*. A backtick or a newline would end
    the span and let the rest speak as a line (or a ``>`` quote) of its own — a forged "Approved by
    security" inside the card — so backticks are replaced and whitespace is flattened first."""
    text = _one_line(text)
    return "`" + _fit(mrkdwn_escape(text), limit).replace("`", "'") + "`" if text else "—"


def _when(moment: datetime) -> str:
    """A Slack date token: every reader sees their own time zone; the ISO time is the fallback."""
    fallback = moment.isoformat(timespec="seconds")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def _link(url: str, label: str) -> str:
    """A link only for plain http(s) URLs; anything else is shown as text, never made clickable."""
    if not url.startswith(("https://", "http://")) or any(c in url for c in "<>| \n\t"):
        return _code(url)
    return f"<{url.replace('&', '&amp;')}|{mrkdwn_escape(label)}>"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


# ---------------------------------------------------------------- the card


_HEADLINE = {
    GateStatus.PENDING: "Approval needed",
    GateStatus.APPROVED: "✅ Approved",
    GateStatus.REJECTED: "❌ Rejected",
    GateStatus.EXPIRED: "⌛ Expired",
    GateStatus.CANCELLED: "🚫 Cancelled",
    GateStatus.CONSUMED: "✅ Approved, step ran",
}


SIGNED_DECISION_NOTE = "Needs a decision signed with a passkey: decide in the Gatehouse console"


def approvals_line(gate: Gate) -> str:
    """``0/2 approvals from data-governance or ml-leads``."""
    groups = " or ".join(gate.approver_groups) or "nobody"
    line = f"{len(gate.approvals)}/{gate.required_approvals} approvals from {groups}"
    if gate.break_glass_groups:
        line += f" (break-glass: {' or '.join(gate.break_glass_groups)})"
    if gate.signature:
        line += f"\n🔑 {SIGNED_DECISION_NOTE}"
    return line


def _headline(gate: Gate) -> str:
    text = _one_line(f"{_HEADLINE[gate.status]}: {gate.request.action} {gate.request.target}")
    return text if len(text) <= 150 else text[:149] + "…"


def _requester_field(gate: Gate, requester: Principal | None) -> str:
    request_by = gate.request.requester
    who = f"{mrkdwn_escape(requester.label)} ({_code(request_by)})" if requester else _code(request_by)
    if gate.submitted_by != request_by:
        who += f"\nsubmitted by {_code(gate.submitted_by)}"
    return f"*Requested by*\n{who}"


def _tag_text(gate: Gate, dataset: DatasetRef, tag: str) -> str:
    """``*pii* (catalog)``: the tag, and which server source knew it (unmarked: the caller's)."""
    sources = gate.server_sources(dataset, tag)
    return f"*{mrkdwn_escape(tag)}*" + (f" ({mrkdwn_escape(', '.join(sources))})" if sources else "")


def _datasets_text(gate: Gate, shown: int = 10) -> str:
    request = gate.request
    if not request.datasets:
        return "*Datasets*\nnone declared"
    lines = []
    for dataset in request.datasets[:shown]:
        tags = ", ".join(_tag_text(gate, dataset, t) for t in sorted(dataset.tags)) or "no tags"
        lines.append(f"• {_code(dataset.qualified_name, 200)} — {tags}")
    if len(request.datasets) > shown:
        lines.append(f"… and {len(request.datasets) - shown} more")
    return _fit("*Datasets*\n" + "\n".join(lines), 3000)


def _run_text(run: RunContext, console_url: str) -> str:
    parts = [f"Run: {mrkdwn_escape(run.orchestrator)}"]
    for label, value in (("pipeline", run.pipeline), ("run", run.run_id), ("task", run.task_id)):
        if value:
            parts.append(f"{label} {_code(value, 200)}")
    if run.task_id:
        parts.append(f"try {run.try_number}")
    if run.url:
        parts.append(_link(run.url, "open run"))
    parts.append(_link(console_url, "Open in Gatehouse console"))
    return " · ".join(parts)


def _involved_text(gate: Gate, shown: int = 10) -> str:
    """Everyone involved, each with its source: none of them may decide this gate."""
    people = gate.involved_people()
    lines = [f"• {_code(who, 200)} — {mrkdwn_escape(said)}" for who, said in people[:shown]]
    if len(people) > shown:
        lines.append(f"… and {len(people) - shown} more in the console")
    return _fit("*Involved — none of them may decide*\n" + "\n".join(lines), 3000)


def _last_review_text(review: LastReview | None) -> str:
    if review is None:
        return "Last review of this action on this target: never reviewed before"
    who = ", ".join(review.decided_by) or "policy"
    return (
        f"Last review of this action on this target: {review.status.value} by {mrkdwn_escape(who)} "
        f"at {_when(review.decided_at)} (gate {_code(review.gate_id)})"
    )


def _decision_line(decision: Decision) -> str:
    verb = "Approved" if decision.verdict is Verdict.APPROVE else "Rejected"
    line = (
        f"• *{verb}* by {mrkdwn_escape(decision.display_name)} ({_code(decision.principal_id)}) "
        f"via {decision.via.value} at {_when(decision.at)}"
    )
    if decision.comment:
        line += f" — “{_fit(mrkdwn_escape(decision.comment), 300)}”"
    if decision.break_glass:
        line += " :rotating_light: *BREAK-GLASS*: approved alone, review required"
    return line


def status_text(gate: Gate) -> str:
    """What happened so far: the outcome (who, when) and every decision with its comment."""
    if gate.status is GateStatus.PENDING:
        headline = f"Still pending: {approvals_line(gate)}"
    else:
        who = ", ".join(gate.decided_by)
        headline = gate.status.value if gate.status is not GateStatus.CONSUMED else "APPROVED (step ran)"
        if who and gate.status is not GateStatus.EXPIRED:
            headline += f" by {mrkdwn_escape(who)}"
        if gate.decided_at is not None:
            headline += f" at {_when(gate.decided_at)}"
    lines = [f"*{headline}*", *(_decision_line(d) for d in gate.decisions)]
    return _fit("\n".join(lines), 3000)


def card_blocks(gate: Gate, *, console_url: str, requester: Principal | None) -> list[Block]:
    """The whole card for the gate as it is now; posting and updating both render it, so an
    updated card never disagrees with the original about the context."""
    request = gate.request
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=_headline(gate))),
        SectionBlock(
            fields=[
                MarkdownTextObject(text=_requester_field(gate, requester)),
                MarkdownTextObject(text=f"*Action*\n{_code(request.action)}"),
                MarkdownTextObject(text=f"*Target*\n{_code(request.target, 1000)}"),
                MarkdownTextObject(text=f"*Environment*\n{_code(request.environment)}"),
            ]
        ),
        SectionBlock(text=MarkdownTextObject(text=_datasets_text(gate))),
        *([SectionBlock(text=MarkdownTextObject(text=_involved_text(gate)))] if gate.involved else []),
        SectionBlock(
            text=MarkdownTextObject(
                text=_fit(f"*Rule* {_code(gate.rule)}\n{mrkdwn_escape(gate.explanation)}", 3000)
            )
        ),
        SectionBlock(
            text=MarkdownTextObject(
                text=_fit(f"*Reason*\n{mrkdwn_escape(request.reason) or 'none given'}", 3000)
            )
        ),
        ContextBlock(elements=[MarkdownTextObject(text=_fit(_run_text(request.run, console_url), 3000))]),
        ContextBlock(elements=[MarkdownTextObject(text=_last_review_text(gate.last_review))]),
        SectionBlock(
            fields=[
                MarkdownTextObject(text=f"*Approvals*\n{approvals_line(gate)}"),
                MarkdownTextObject(text=f"*Expires*\n{_when(gate.expires_at)}"),
            ]
        ),
    ]
    if gate.decisions or not gate.status.is_open:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=status_text(gate))))
    if gate.status.is_open:
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(text="Approve", action_id=ACTION_APPROVE, value=gate.id, style="primary"),
                    ButtonElement(text="Reject", action_id=ACTION_REJECT, value=gate.id, style="danger"),
                ]
            )
        )
    return blocks


def fallback_text(gate: Gate) -> str:
    """The ``text`` shown in notifications and by clients that cannot render blocks."""
    request = gate.request
    what = _one_line(f"{request.action} {request.target}")
    return mrkdwn_escape(
        f"{_HEADLINE[gate.status]}: {request.requester} asks to {what} "
        f"(rule {gate.rule}; {approvals_line(gate)}) — gate {gate.id}"
    )


def reminder_text(gate: Gate) -> str:
    missing = gate.approvals_missing()
    return (
        f":alarm_clock: Reminder: gate {_code(gate.id)} still needs {_plural(missing, 'approval')} "
        f"({approvals_line(gate)}); it expires at {_when(gate.expires_at)}."
    )


def alert_text(gate: Gate, details: Mapping[str, Any], console_url: str) -> str:
    """An approval-scope finding (``lineage.out_of_scope``) in four lines of mrkdwn.

    Every value but the gate id and the link comes from events a pipeline sent (dataset, run ids,
    the detail naming the dataset): each is one line of inline code, escaped and cut. When
    ``more_findings`` is set, this is the summary of findings held back since the last alert."""
    said = {k: str(details.get(k) or "") for k in ("operation", "dataset", "kind", "detail")}
    run = " / ".join(str(details.get(k) or "") for k in ("pipeline", "run_id", "task_id") if details.get(k))
    more = int(details.get("more_findings") or 0)
    command = f"gatehouse lineage violations --gate {gate.id}"
    operation, dataset, kind = (
        _code(said[k], n) for k, n in (("operation", 40), ("dataset", 700), ("kind", 40))
    )
    action = _code(gate.request.action)
    headline = (
        f":warning: Out of scope for gate {_code(gate.id)} ({action}): {operation} of {dataset} — {kind}"
    )
    if more:
        headline += f", and {_plural(more, 'more finding')} since the last alert"
    return "\n".join(
        [
            headline,
            f"Why: {_code(said['detail'], 700)}",
            f"Run: {_code(str(details.get('orchestrator') or '') + ': ' + run, 400)}",
            f"{_link(console_url, 'Open the gate')} · every finding: `{command}`",
        ]
    )


def reject_modal(gate: Gate) -> View:
    request = gate.request
    return View(
        type="modal",
        callback_id=REJECT_CALLBACK,
        private_metadata=gate.id,
        title=PlainTextObject(text="Reject gate"),
        submit=PlainTextObject(text="Reject"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=_fit(
                        f"Reject {_code(request.action)} {_code(request.target)} requested by "
                        f"{_code(request.requester)} (gate {_code(gate.id)})?",
                        3000,
                    )
                )
            ),
            InputBlock(
                block_id=REASON_BLOCK,
                label=PlainTextObject(text="Reason"),
                hint=PlainTextObject(text="Recorded in the audit trail and shown to the requester."),
                element=PlainTextInputElement(action_id=REASON_ACTION, multiline=True, max_length=REASON_MAX),
            ),
        ],
    )


def slack_channel(target: NotifyTarget) -> str | None:
    """The chat.postMessage channel for a notify target's address: ``#name`` and ``C0123`` as
    they are, ``@U0123`` → ``U0123`` (Slack posts that to the bot's DM with the user)."""
    address = target.address
    if address.startswith("@"):
        return address[1:] if _USER_ID.match(address[1:]) else None
    if address.startswith("#") and len(address) > 1:
        return address
    return address if _CHANNEL_ID.match(address) else None
