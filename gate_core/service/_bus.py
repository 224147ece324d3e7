"""Waking waiters when gates change.

    decision in this process ──► ChangeBus.publish(gate_id) ──► every asyncio waiter on that gate
    decision on another replica ─► NOTIFY gatehouse_gate_changed ─► PgChangeListener ─► publish

``publish`` is thread-safe (decisions run in worker threads); waiting is asyncio. A waiter
registers *before* it reads the gate, so a change between the read and the wait is never missed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import psycopg

from gate_core.service._loops import LoopHealth

log = logging.getLogger("gatehouse.service")


class Subscription:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        self.woken_by: set[str] = set()

    def _wake(self, gate_id: str) -> None:
        self.woken_by.add(gate_id)
        self._event.set()

    def wake_threadsafe(self, gate_id: str) -> None:
        self._loop.call_soon_threadsafe(self._wake, gate_id)

    async def wait(self, timeout: float) -> bool:
        """True when woken, False on timeout."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def rearm(self) -> None:
        self._event.clear()
        self.woken_by.clear()


class ChangeBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Subscription]] = {}
        self.published = 0
        self.draining = False  # set once, at shutdown: long-polls answer now instead of parking

    def drain(self) -> None:
        """Wake every parked waiter and make new ones answer at once, so a shutting-down server
        is not held open by long-polls. Not from a signal handler (it takes the lock the loop may
        hold): schedule it on the loop (``gatehouse serve`` does)."""
        self.draining = True
        with self._lock:
            waiting = {sub for subs in self._waiters.values() for sub in subs}
        for subscription in waiting:
            try:
                subscription.wake_threadsafe("")
            except RuntimeError:  # the waiter's loop has closed; nothing to wake
                continue

    @contextmanager
    def subscribe(self, gate_ids: Iterable[str]) -> Iterator[Subscription]:
        subscription = Subscription(asyncio.get_running_loop())
        ids = list(dict.fromkeys(gate_ids))
        with self._lock:
            for gate_id in ids:
                self._waiters.setdefault(gate_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            with self._lock:
                for gate_id in ids:
                    waiting = self._waiters.get(gate_id)
                    if waiting is not None:
                        waiting.discard(subscription)
                        if not waiting:
                            del self._waiters[gate_id]

    def publish(self, gate_id: str) -> None:
        with self._lock:
            self.published += 1
            waiting = list(self._waiters.get(gate_id, ()))
        for subscription in waiting:
            try:
                subscription.wake_threadsafe(gate_id)
            except RuntimeError:  # the waiter's loop has closed (shutdown); nothing to wake
                continue

    @property
    def waiting_gates(self) -> int:
        with self._lock:
            return len(self._waiters)

    @property
    def waiters(self) -> int:
        """Long-polls parked now (one may wait on many gates)."""
        with self._lock:
            return len({sub for subs in self._waiters.values() for sub in subs})


class PgChangeListener(threading.Thread):
    """LISTENs on PostgreSQL and republishes every change on the local bus. Reconnects with
    backoff if the database goes away (waiters meanwhile fall back to their timeout re-read)."""

    def __init__(
        self, dsn: str, channel: str, publish: Callable[[str], None], *, health: LoopHealth | None = None
    ) -> None:
        super().__init__(name="gatehouse-pg-listener", daemon=True)
        self._dsn = dsn
        self._channel = channel
        self._publish = publish
        self._health = health
        self._stopping = threading.Event()
        self.connected = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'LISTEN "{self._channel}"')
                    self.connected.set()
                    backoff = 0.2
                    while not self._stopping.is_set():
                        for notice in conn.notifies(timeout=0.5):
                            self._deliver(notice.payload)
                        if self._health is not None:  # connected and listening: a cycle done
                            self._health.succeeded("listener", "listen")
            except Exception as exc:  # the database away, or anything unforeseen: reconnect, never end
                self.connected.clear()
                log.warning("change listener lost PostgreSQL (%s); retrying in %.1fs", exc, backoff)
                if self._health is not None:
                    self._health.error("listener", exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _deliver(self, payload: str) -> None:
        """One notice; a bad one (anyone may NOTIFY the channel) is logged, counted and passed over."""
        try:
            self._publish(payload)
        except Exception as exc:
            log.error("change listener skipped notice %r: %s: %s", payload[:100], type(exc).__name__, exc)
            if self._health is not None:
                self._health.bad_record("listener", f"notice {payload[:100]!r}", exc)
