"""The observer port: what the core tells the outside world as things happen, for metrics.

    Gatekeeper ──tells──► GateObserver   gate opened, decision recorded or refused, approval used,
                                         a violation of an approval found after the fact

The core calls its observers after the change is committed, never inside a transaction, and an
observer that raises is logged and passed over: counting must never be what stops a decision.
The service's Prometheus adapter (``gate_core.service._metrics``) is one observer; state (how
many gates wait, the audit's size) is not told here — it is read from the store when scraped, so
every replica reports the same figures.
"""

from __future__ import annotations

import logging
from typing import Protocol

from gate_core._models import Gate, Verdict
from gate_core.identity import AuthMethod

log = logging.getLogger("gatehouse")


class GateObserver(Protocol):
    def gate_opened(self, gate: Gate) -> None:
        """A new gate was stored (PENDING, or already closed by an allow/deny rule)."""

    def decision_recorded(self, gate: Gate, verdict: Verdict, via: AuthMethod) -> None:
        """One person's decision was recorded; ``gate`` as it left it (closed if it completed
        the quorum or rejected it)."""

    def refused(self, action: str, reason: str, via: AuthMethod) -> None:
        """A decide, cancel or consume was refused; ``reason`` is the error's stable code."""

    def approval_used(self, gate: Gate) -> None:
        """An approved gate's step ran for the first time (its first consumption)."""

    def violation_found(self, gate: Gate, kind: str) -> None:
        """A run of ``gate`` was found, after the fact, to go beyond what was approved (an
        extension's finding, e.g. lineage's approval-scope check, ``lineage.out_of_scope``): told
        once per finding, after the extension stored and audited it; ``kind`` is the check's
        stable name for what it found (``unapproved_dataset``, …)."""


class Observers:
    """Every observer the gatekeeper was given, each shielded from the others' failures."""

    def __init__(self) -> None:
        self._observers: list[GateObserver] = []

    def add(self, observer: GateObserver) -> None:
        self._observers.append(observer)

    def gate_opened(self, gate: Gate) -> None:
        for observer in self._observers:
            try:
                observer.gate_opened(gate)
            except Exception:
                log.exception("observer %r failed on gate_opened", observer)

    def decision_recorded(self, gate: Gate, verdict: Verdict, via: AuthMethod) -> None:
        for observer in self._observers:
            try:
                observer.decision_recorded(gate, verdict, via)
            except Exception:
                log.exception("observer %r failed on decision_recorded", observer)

    def refused(self, action: str, reason: str, via: AuthMethod) -> None:
        for observer in self._observers:
            try:
                observer.refused(action, reason, via)
            except Exception:
                log.exception("observer %r failed on refused", observer)

    def approval_used(self, gate: Gate) -> None:
        for observer in self._observers:
            try:
                observer.approval_used(gate)
            except Exception:
                log.exception("observer %r failed on approval_used", observer)

    def violation_found(self, gate: Gate, kind: str) -> None:
        for observer in self._observers:
            try:
                observer.violation_found(gate, kind)
            except Exception:
                log.exception("observer %r failed on violation_found", observer)
