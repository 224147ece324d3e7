"""Helpers for testing your own pipelines' lineage (and for Gatehouse's adapters' tests).

from lineage.testing import recording

with recording(actor="alice") as sink:
    my_step()                                  # calls lineage.track_dataframe(...)
assert [e.dataset.qualified_name for e in sink.events] == ["warehouse/customers"]
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from gate_core import RunContext
from lineage._models import AccessEvent
from lineage._recorder import context

__all__ = ["MemorySink", "recording"]


class MemorySink:
    """Keeps every event it is given, in order (thread-safe)."""

    def __init__(self) -> None:
        self.events: list[AccessEvent] = []
        self._lock = threading.Lock()

    def record_many(self, events: Sequence[AccessEvent], /) -> int:
        with self._lock:
            self.events.extend(events)
        return len(events)


@contextmanager
def recording(
    *, run: RunContext | None = None, actor: str = "tester", gate_id: str | None = None
) -> Iterator[MemorySink]:
    """Send events recorded inside to memory only, as ``actor`` in a ``test`` run."""
    sink = MemorySink()
    run = run or RunContext(orchestrator="test", pipeline="test", run_id="test-run")
    with context(sinks=[sink], run=run, actor=actor, gate_id=gate_id):
        yield sink
