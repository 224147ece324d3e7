"""The console's audit page, read through the AuditService: newest first, a page at a time, one line of
explanation per entry (the full bodies are in ``gatehouse audit export``)."""

from __future__ import annotations

import collections
import contextlib
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gate_core._audit import AuditEntry, Event
from gate_core.service._state import ServiceState

PAGE_SIZE = 50
AUDIT_EVENTS = tuple(sorted(v for k, v in vars(Event).items() if k.isupper()))


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    at: datetime
    event: str
    actor: str
    via: str
    gate_id: str | None
    hash: str
    note: str
    flagged: bool


def _note(event: str, payload: Mapping[str, Any]) -> str:
    """One line a reviewer needs from the payload; the full body is in the export."""
    if event == Event.DECISION_REFUSED:
        return str(payload.get("message", ""))
    if event == Event.DECISION_RECORDED:
        comment = payload.get("comment") or ""
        return f"{payload.get('verdict')} ({payload.get('approvals')}/{payload.get('required')}) {comment}"
    if payload.get("break_glass"):
        return str(payload.get("warning", "BREAK-GLASS"))
    if event in (Event.GATE_APPROVED, Event.GATE_REJECTED, Event.GATE_CANCELLED):
        by = payload.get("by")
        return f"by {', '.join(by) if isinstance(by, list) else by}"
    if event == Event.POLICY_EVALUATED:
        return f"{payload.get('outcome')} by rule {payload.get('rule')}"
    if event in (Event.TOKEN_CREATED, Event.TOKEN_REVOKED):
        return " ".join(str(payload[k]) for k in ("token_id", "principal", "scope") if k in payload)
    if event == Event.GATE_REQUESTED:
        request = payload.get("request") or {}
        return f"{request.get('action')} {request.get('target') or ''}".strip()
    return ""


def audit_row(entry: AuditEntry) -> AuditRow:
    body = entry.decoded()
    actor = body.get("actor") or {}
    payload = body.get("payload") or {}
    return AuditRow(
        seq=entry.seq,
        at=entry.at,
        event=entry.event,
        actor=str(actor.get("principal_id", entry.actor)),
        via=str(actor.get("via", "")),
        gate_id=entry.gate_id,
        hash=entry.hash,
        note=_note(entry.event, payload),
        flagged=entry.event == Event.DECISION_REFUSED or bool(payload.get("break_glass")),
    )


@dataclass(frozen=True, slots=True)
class AuditPage:
    rows: list[AuditRow]
    total: int
    page: int

    @property
    def has_older(self) -> bool:
        return (self.page + 1) * PAGE_SIZE < self.total


@contextlib.contextmanager
def _audit_entries(state: ServiceState, after_seq: int) -> Iterator[Iterator[AuditEntry]]:
    entries = state.gatekeeper.audit.entries(after_seq=after_seq)
    try:
        yield entries
    finally:
        close = getattr(entries, "close", None)
        if callable(close):
            close()  # a store's generator holds its read connection until closed


def read_audit_page(state: ServiceState, page: int, event: str, gate_id: str) -> AuditPage:
    """Newest first. Unfiltered pages read only their window of sequence numbers; a filtered page
    scans once and keeps only the newest matches it needs (memory bounded by the page depth)."""
    if not event and not gate_id:
        size = state.gatekeeper.audit.size()
        high = size - page * PAGE_SIZE
        low = max(0, high - PAGE_SIZE)
        with _audit_entries(state, low) as entries:
            window = list(itertools.islice(entries, max(0, high - low)))
        return AuditPage([audit_row(e) for e in reversed(window)], size, page)
    newest: collections.deque[AuditEntry] = collections.deque(maxlen=(page + 1) * PAGE_SIZE)
    total = 0
    with _audit_entries(state, 0) as entries:
        for entry in entries:
            if (not event or entry.event == event) and (not gate_id or entry.gate_id == gate_id):
                newest.append(entry)
                total += 1
    ordered = list(reversed(newest))[page * PAGE_SIZE :]
    return AuditPage([audit_row(e) for e in ordered], total, page)
