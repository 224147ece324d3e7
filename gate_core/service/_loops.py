"""The health of the service's background loops: the sweeper, the notifier hub and the
PostgreSQL LISTEN thread.

A loop survives any single bad record: it logs it, counts it here and goes on. A loop that has
stopped anyway (a bug, an error nobody foresaw) is reported by ``/healthz`` with 503, so that an
orchestrator restarts the replica instead of leaving expiry, reminders and checkpoints silently off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Loop:
    running: Callable[[], bool]
    bad_records: int = 0
    errors: int = 0
    last_problem: str = ""
    succeeded: dict[str, float] = field(default_factory=dict)  # duty → unix time of its last success


@dataclass
class LoopHealth:
    _loops: dict[str, _Loop] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self, name: str, running: Callable[[], bool]) -> None:
        with self._lock:
            self._loops[name] = _Loop(running)

    def succeeded(self, name: str, duty: str) -> None:
        """One duty of the loop completed (a sweep's expiry pass, a delivery, a LISTEN cycle):
        what ``/metrics`` exposes as the loop's last successful run, so a stalled loop is alerted on."""
        with self._lock:
            loop = self._loops.setdefault(name, _Loop(lambda: True))
            loop.succeeded[duty] = time.time()

    def last_success(self) -> dict[tuple[str, str], float]:
        """(loop, duty) → unix time of its last success."""
        with self._lock:
            return {
                (name, duty): at for name, loop in self._loops.items() for duty, at in loop.succeeded.items()
            }

    def counts(self) -> dict[str, tuple[bool, int, int]]:
        """loop → (running, bad records, errors), for metrics."""
        with self._lock:
            loops = dict(self._loops)
        return {name: (loop.running(), loop.bad_records, loop.errors) for name, loop in loops.items()}

    def bad_record(self, name: str, what: str, exc: BaseException) -> None:
        """One record the loop passed over (it went on with the others)."""
        with self._lock:
            loop = self._loops.setdefault(name, _Loop(lambda: True))
            loop.bad_records += 1
            loop.last_problem = f"{what}: {type(exc).__name__}: {exc}"[:500]

    def error(self, name: str, exc: BaseException) -> None:
        """A whole pass failed (the database away, an unforeseen error); the loop tries again."""
        with self._lock:
            loop = self._loops.setdefault(name, _Loop(lambda: True))
            loop.errors += 1
            loop.last_problem = f"{type(exc).__name__}: {exc}"[:500]

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            loops = dict(self._loops)
        return {
            name: {
                "running": loop.running(),
                "bad_records": loop.bad_records,
                "errors": loop.errors,
                "last_problem": loop.last_problem,
            }
            for name, loop in sorted(loops.items())
        }

    @property
    def stopped(self) -> list[str]:
        return [name for name, loop in self.snapshot().items() if not loop["running"]]
