"""The notifier port and the hub that fans gate events out to Slack, Teams and webhooks.

A rule's ``notify`` targets name a notifier by prefix — ``slack:#data-approvals``,
``slack:@U123``, ``teams:governance``, ``webhook:siem`` — and the hub calls it:

    gate opened   → notifier.post_request(gate, target)  → NotificationRef stored (to update later)
    gate changed  → notifier.post_outcome(gate, ref)       for every ref stored for the gate
    reminder due  → notifier.post_reminder(gate, target)

Delivery runs on a small thread pool with retries, so a slow or failing chat service never
delays or fails the API call that opened or decided the gate; failures are logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Protocol

from gate_core._gatekeeper import Gatekeeper
from gate_core._models import Gate
from gate_core._ports import NotificationRef

log = logging.getLogger("gatehouse.notify")


class Notifier(Protocol):
    kind: str

    def post_request(self, gate: Gate, target: str) -> NotificationRef | None: ...

    def post_outcome(self, gate: Gate, ref: NotificationRef) -> None: ...

    def post_reminder(self, gate: Gate, target: str) -> None: ...


def split_target(target: str) -> tuple[str, str]:
    kind, _, address = target.partition(":")
    return kind.strip().lower(), address.strip()


class NotificationHub:
    def __init__(
        self,
        gatekeeper: Gatekeeper,
        notifiers: Mapping[str, Notifier],
        *,
        workers: int = 4,
        attempts: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self.gatekeeper = gatekeeper
        self.notifiers = dict(notifiers)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gatehouse-notify")
        self._pending: set[Future[None]] = set()

    def _submit(self, job: Callable[[], None]) -> None:
        future = self._pool.submit(job)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def _retrying(self, what: str, call: Callable[[], None]) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                call()
                return
            except Exception as exc:  # a notifier failing must never take the service down
                if attempt == self.attempts:
                    log.error("%s failed after %d attempts: %s", what, attempt, exc)
                    return
                time.sleep(self.backoff_s * attempt)

    def _deliver(self, what: str, call: Callable[[], None]) -> None:
        self._submit(partial(self._retrying, what, call))

    def gate_opened(self, gate: Gate) -> None:
        if not gate.status.is_open:
            return
        for target in gate.notify:
            notifier = self._notifier_for(target, gate)
            if notifier is not None:
                self._deliver(
                    f"notify {target} of {gate.id}", partial(self._post_request, notifier, gate, target)
                )

    def _post_request(self, notifier: Notifier, gate: Gate, target: str) -> None:
        ref = notifier.post_request(gate, target)
        if ref is not None:
            self.gatekeeper.store.add_notification(ref)

    def gate_changed(self, gate: Gate) -> None:
        if self.notifiers:
            self._submit(partial(self._update_all, gate))

    def _update_all(self, gate: Gate) -> None:
        for ref in self.gatekeeper.store.notifications_for(gate.id):
            notifier = self.notifiers.get(ref.kind)
            if notifier is not None:
                self._retrying(
                    f"update {ref.target} for {gate.id}", partial(notifier.post_outcome, gate, ref)
                )

    def remind(self, gate: Gate) -> None:
        for target in gate.notify:
            notifier = self._notifier_for(target, gate)
            if notifier is not None:
                self._deliver(f"remind {target} of {gate.id}", partial(notifier.post_reminder, gate, target))

    def _notifier_for(self, target: str, gate: Gate) -> Notifier | None:
        notifier = self.notifiers.get(split_target(target)[0])
        if notifier is None:
            log.warning("gate %s: no notifier configured for target %r", gate.id, target)
        return notifier

    def drain(self, timeout: float = 10.0) -> None:
        """Wait for queued deliveries (tests and shutdown)."""
        wait(list(self._pending), timeout=timeout)

    def close(self) -> None:
        self.drain()
        self._pool.shutdown(wait=True, cancel_futures=True)
