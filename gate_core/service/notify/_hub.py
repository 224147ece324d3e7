"""The hub that fans gate events out to the configured notifier instances.

A rule's ``notify`` targets name an instance — ``slack:#data-approvals``, ``slack:@U123``,
``teams:governance``, ``webhook:siem``, ``pager`` — and the hub calls it:

    gate opened   → notifier.post_request(gate, target)  → NotificationRef stored (to update later)
    gate changed  → notifier.post_outcome(gate, ref)       for every ref stored for the gate
                                                           (the instance named in ref.target)
    reminder due  → notifier.post_reminder(gate, target)
    finding       → notifier.post_alert(gate, target, event, details)   optional (lineage's out_of_scope)

Delivery runs on a small thread pool with retries, so a slow or failing chat service never
delays or fails the API call that opened or decided the gate; failures are logged, and every
attempt's outcome is told to the hub's ``observer`` (the service's metrics) by instance name.

Alerts are coalesced per (gate, target, event): the first finding is sent at once and opens a
window of ``alert_interval_s``; findings within it are held, and when it ends (``flush_alerts``,
each sweep) the newest is sent with ``more_findings`` — how many others it stands for — and a
new window opens. A pipeline sending a thousand findings for one gate thus makes one alert and,
an interval later, one summary per target instead of a thousand. Every finding is still stored,
audited and counted by its sender before the hub hears of it; only the messages are coalesced.
The windows live in this process: a restart forgets them (the next finding is sent at once), a
clean shutdown sends what it holds, and each replica coalesces on its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol

from gate_core._gatekeeper import Gatekeeper
from gate_core._models import Gate
from gate_core._notify_target import NotifyTarget
from gate_core.service.notify._port import Notifier

log = logging.getLogger("gatehouse.notify")

DeliveryOutcome = Literal["delivered", "retried", "failed"]


class DeliveryObserver(Protocol):
    def delivery(self, instance: str, outcome: DeliveryOutcome) -> None:
        """One attempt to reach notifier ``instance``: delivered, failed and to be retried, or
        failed for good (its last attempt)."""


@dataclass
class _AlertWindow:
    """Alerts to one target about one gate: none sent until ``until`` (the hub's clock) but the
    first; ``held`` counts the findings since, ``latest`` is the newest of them."""

    until: float
    held: int = 0
    latest: tuple[Gate, dict[str, Any]] | None = None


class NotificationHub:
    """Delivers on a small thread pool, in order per gate.

    Everything about one gate (its request card, outcome updates, reminders) goes through that
    gate's queue, so an outcome can never overtake the card it updates. After a card is posted
    and its reference stored, the hub re-reads the gate: a decision taken meanwhile (here or on
    another replica, whose update found no stored reference) is shown at once.
    """

    def __init__(
        self,
        gatekeeper: Gatekeeper,
        notifiers: Mapping[str, Notifier],  # by instance name
        *,
        workers: int = 4,
        attempts: int = 3,
        backoff_s: float = 0.5,
        alert_interval_s: float = 300.0,
    ) -> None:
        self.gatekeeper = gatekeeper
        self.alert_interval_s = alert_interval_s  # 0: every finding is its own alert
        self.clock: Callable[[], float] = time.monotonic  # the alert windows' clock (tests move it)
        self._windows: dict[tuple[str, str, str], _AlertWindow] = {}  # (gate id, target, event)
        self.notifiers = dict(notifiers)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gatehouse-notify")
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Callable[[], None]]] = {}
        self._pending: set[Future[None]] = set()
        self._closed = False
        self.on_failure: Callable[[str, Exception], None] | None = None  # told of each delivery given up
        self.observer: DeliveryObserver | None = None  # told of every attempt's outcome

    def deliver(self, key: str, what: str, call: Callable[[], None], *, instance: str | None = None) -> None:
        """Run ``call`` in the background after everything queued under ``key``, with retries;
        the outcome is observed under notifier ``instance`` when one is named."""
        job = partial(self._retrying, what, call, instance)
        with self._lock:
            queue = self._queues.setdefault(key, deque())
            queue.append(job)
            if len(queue) > 1:
                return  # the worker draining this key will get to it
            future = self._pool.submit(self._drain_key, key)
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _drain_key(self, key: str) -> None:
        while True:
            with self._lock:
                job = self._queues[key][0]
            try:
                job()
            except Exception as exc:  # never leave the key's queue stuck behind one bad delivery
                self._failed(f"delivery for gate {key}", exc)
            with self._lock:
                queue = self._queues[key]
                queue.popleft()
                if not queue:
                    del self._queues[key]
                    return

    def _retrying(self, what: str, call: Callable[[], None], instance: str | None) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                call()
            except Exception as exc:  # a notifier failing must never take the service down
                if attempt == self.attempts:
                    log.error("%s failed after %d attempts: %s", what, attempt, exc)
                    self._observe(instance, "failed")
                    self._failed(what, exc)
                    return
                self._observe(instance, "retried")
                time.sleep(self.backoff_s * attempt)
            else:
                self._observe(instance, "delivered")
                return

    def _observe(self, instance: str | None, outcome: DeliveryOutcome) -> None:
        if instance is None or self.observer is None:
            return
        try:
            self.observer.delivery(instance, outcome)
        except Exception:  # counting must never be what stops delivery
            log.exception("delivery observer failed")

    def _failed(self, what: str, exc: Exception) -> None:
        if self.on_failure is not None:
            try:
                self.on_failure(what, exc)
            except Exception:  # counting must never be what stops delivery
                log.exception("notification failure hook failed")

    def running(self) -> bool:
        """False once closed: nothing more will be delivered."""
        return not self._closed

    def gate_opened(self, gate: Gate) -> None:
        if not gate.status.is_open:
            return
        for text in gate.notify:
            found = self._notifier_for(text, gate)
            if found is not None:
                notifier, target = found
                post = partial(self._post_request, notifier, gate, target)
                self.deliver(gate.id, f"notify {target} of {gate.id}", post, instance=target.instance)

    def _post_request(self, notifier: Notifier, gate: Gate, target: NotifyTarget) -> None:
        ref = notifier.post_request(gate, target)
        if ref is None:
            return
        latest = self.gatekeeper.notification_posted(ref)
        if (latest.status, len(latest.decisions)) != (gate.status, len(gate.decisions)):
            notifier.post_outcome(latest, ref)

    def gate_changed(self, gate: Gate) -> None:
        if self.notifiers:
            self.deliver(gate.id, f"update messages of {gate.id}", partial(self._update_all, gate))

    def _update_all(self, gate: Gate) -> None:
        for ref in self.gatekeeper.notifications_for(gate.id):
            found = self._notifier_for(ref.target, gate, quiet=True)
            if found is not None:
                notifier, target = found
                update = partial(notifier.post_outcome, gate, ref)
                self._retrying(f"update {ref.target} for {gate.id}", update, target.instance)

    def remind(self, gate: Gate) -> None:
        for text in gate.notify:
            found = self._notifier_for(text, gate)
            if found is not None:
                notifier, target = found
                remind = partial(notifier.post_reminder, gate, target)
                self.deliver(gate.id, f"remind {target} of {gate.id}", remind, instance=target.instance)

    def alert(self, gate: Gate, event: str, details: Mapping[str, Any]) -> None:
        """An after-the-fact finding about ``gate`` (lineage's ``out_of_scope``) to the gate's
        notify targets, through each notifier's optional ``post_alert(gate, target, event,
        details)``; a notifier without it is skipped (logged). At most one alert per target and
        gate each ``alert_interval_s``: the rest are held for the summary ``flush_alerts`` sends."""
        now = self.clock()
        for text in gate.notify:
            key = (gate.id, text, event)
            with self._lock:
                window = self._windows.get(key)
                if window is not None and now < window.until:
                    window.held += 1
                    window.latest = (gate, dict(details))
                    continue
                # a window that ended before the sweep summarised it: this alert carries its count
                more = window.held if window is not None else 0
                if self.alert_interval_s > 0:
                    self._windows[key] = _AlertWindow(until=now + self.alert_interval_s)
                elif window is not None:
                    del self._windows[key]
            self._send_alert(gate, text, event, {**details, "more_findings": more} if more else details)

    def flush_alerts(self, *, everything: bool = False) -> None:
        """Send the summary of every window that has ended (every window: ``everything``, at
        shutdown) and held findings: its newest finding, with ``more_findings`` the others. A
        summary opens the next window, so a steady stream is one message per interval."""
        now = self.clock()
        due: list[tuple[str, str, Gate, dict[str, Any]]] = []
        with self._lock:
            for key, window in list(self._windows.items()):
                if now < window.until and not everything:
                    continue
                if window.latest is None:
                    del self._windows[key]
                    continue
                gate, details = window.latest
                due.append((key[1], key[2], gate, {**details, "more_findings": window.held - 1}))
                self._windows[key] = _AlertWindow(until=now + self.alert_interval_s)
        for text, event, gate, details in due:
            self._send_alert(gate, text, event, details)

    def _send_alert(self, gate: Gate, text: str, event: str, details: Mapping[str, Any]) -> None:
        found = self._notifier_for(text, gate)
        if found is None:
            return
        notifier, target = found
        post_alert = getattr(notifier, "post_alert", None)
        if post_alert is None:
            log.warning("gate %s: notifier for %r does not send alerts (%s)", gate.id, text, event)
            return
        call = partial(post_alert, gate, target, event, dict(details))
        # retried and counted per instance like every other delivery: a Teams bot or webhook
        # that keeps refusing alerts shows in gatehouse_notifier_deliveries_total{outcome="failed"}
        self.deliver(gate.id, f"alert {target} of {event} on {gate.id}", call, instance=target.instance)

    def _notifier_for(
        self, text: str, gate: Gate, *, quiet: bool = False
    ) -> tuple[Notifier, NotifyTarget] | None:
        """The instance a stored target names. Gates opened before targets were checked at policy
        load may hold a malformed one: it is skipped like an unconfigured instance."""
        try:
            target = NotifyTarget.parse(text)
        except ValueError as exc:
            log.warning("gate %s: %s", gate.id, exc)
            return None
        notifier = self.notifiers.get(target.instance)
        if notifier is None:
            if not quiet:
                log.warning(
                    "gate %s: no notifier instance %r configured for target %r",
                    gate.id,
                    target.instance,
                    text,
                )
            return None
        return notifier, target

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued delivery has run (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return
            wait(pending, timeout=max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self.flush_alerts(everything=True)  # what a window still holds is told before shutting down
        self.drain()
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
