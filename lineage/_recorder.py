"""Where ``record_access`` and ``track_dataframe`` send events, and on whose behalf.

    configure(store=…, sinks=…, run=…, actor=…, gate_id=…, catalog=…)   process-wide defaults
    with context(run=…, actor=…, gate_id=…):                            one step (adapters use this)

A context is a ContextVar, so threads and asyncio tasks each see their own step. Without any
configuration the destination comes from the environment, like the core's CLI:
GATEHOUSE_URL + GATEHOUSE_TOKEN → the gate service's REST API (pipelines hold a token, never
database credentials); otherwise GATEHOUSE_DATABASE_URL / $GATEHOUSE_HOME → the database itself.
Outside a pipeline the run is ``local`` (one run id per process, so a script that reads and then
writes still draws its edge) and the actor is the operating-system user, mapped through the
directory's aliases when the directory is there (``gate_core.identity.local_actor_name``).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from gate_core import RunContext, Settings
from gate_core.identity import local_actor_name
from lineage._catalog import Catalog
from lineage._errors import NoDestination
from lineage._models import AccessEvent, new_event_id

log = logging.getLogger("gatehouse.lineage")


class LineageSink(Protocol):
    """Anything that takes a batch of events: LineageStore, HttpSink, an OpenLineage emitter."""

    def record_many(self, events: Sequence[AccessEvent], /) -> object: ...


@dataclass(frozen=True, slots=True)
class Scope:
    """Who is acting, in which run, under which gate, and where events go. ``None`` = inherit."""

    run: RunContext | None = None
    actor: str | None = None
    gate_id: str | None = None
    sinks: tuple[LineageSink, ...] | None = None

    def over(self, outer: Scope) -> Scope:
        return Scope(
            run=self.run or outer.run,
            actor=self.actor or outer.actor,
            gate_id=self.gate_id or outer.gate_id,
            sinks=self.sinks if self.sinks is not None else outer.sinks,
        )


@dataclass
class _Config:
    scope: Scope = field(default_factory=Scope)
    catalog: Catalog | None = None
    fingerprint_key: str | None = None


_config = _Config()
_lock = threading.Lock()
_from_env: tuple[LineageSink, ...] | None = None
_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "gatehouse_lineage_scope", default=None
)


def configure(
    *,
    store: LineageSink | None = None,
    sinks: Sequence[LineageSink] = (),
    run: RunContext | None = None,
    actor: str | None = None,
    gate_id: str | None = None,
    catalog: Catalog | None = None,
    fingerprint_key: str | None = None,
) -> None:
    """Set the process-wide defaults, replacing earlier ones. ``store`` and ``sinks`` all receive
    every event; with none given, the environment decides (see the module docstring)."""
    global _config
    chosen = ((store,) if store is not None else ()) + tuple(sinks)
    _config = _Config(
        Scope(run=run, actor=actor, gate_id=gate_id, sinks=chosen or None), catalog, fingerprint_key
    )


def reset() -> None:
    """Forget configure() and the destination found in the environment (tests, long-lived workers)."""
    global _config, _from_env
    _config = _Config()
    with _lock:
        _from_env = None


@contextmanager
def context(
    *,
    run: RunContext | None = None,
    actor: str | None = None,
    gate_id: str | None = None,
    store: LineageSink | None = None,
    sinks: Sequence[LineageSink] | None = None,
) -> Iterator[Scope]:
    """Around one step: events recorded inside carry this run, actor and gate (inner wins)."""
    chosen = (
        None
        if store is None and sinks is None
        else ((store,) if store is not None else ()) + tuple(sinks or ())
    )
    scope = Scope(run, actor, gate_id, chosen).over(_current.get() or Scope())
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


def catalog() -> Catalog:
    if _config.catalog is None:
        _config.catalog = Catalog.from_settings()
    return _config.catalog


def fingerprint_key() -> str | None:
    return _config.fingerprint_key or os.environ.get("GATEHOUSE_LINEAGE_FINGERPRINT_KEY") or None


@functools.cache
def _local_run() -> RunContext:
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return RunContext(orchestrator="local", pipeline=script[:500], run_id=f"local-{new_event_id()[1:]}")


def local_actor() -> str:
    """The OS user, as the home's directory names them (aliases), else as is: gate_core.identity's
    answer for a process outside any pipeline."""
    return local_actor_name(Settings.from_env())


def resolved() -> Scope:
    """The scope in force: the innermost context over configure() over local defaults."""
    scope = (_current.get() or Scope()).over(_config.scope)
    return Scope(
        run=scope.run or _local_run(),
        actor=scope.actor or local_actor(),
        gate_id=scope.gate_id,
        sinks=scope.sinks if scope.sinks is not None else _environment_sinks(),
    )


def _environment_sinks() -> tuple[LineageSink, ...]:
    global _from_env
    with _lock:
        if _from_env is None:
            _from_env = (_sink_from_environment(),)
        return _from_env


def _sink_from_environment() -> LineageSink:
    url, token = os.environ.get("GATEHOUSE_URL"), os.environ.get("GATEHOUSE_TOKEN")
    if url and token:
        from lineage._http import HttpSink

        return HttpSink(url, token)
    settings = Settings.from_env()
    if not os.environ.get("GATEHOUSE_DATABASE_URL") and not settings.home.exists():
        raise NoDestination(
            "nowhere to record lineage: set GATEHOUSE_URL and GATEHOUSE_TOKEN (the gate service), "
            "GATEHOUSE_DATABASE_URL, run `gatehouse init`, or call lineage.configure(store=...)"
        )
    from lineage._store import LineageStore

    return LineageStore.open(settings.database_url, timeout_s=settings.db_timeout_s)


def deliver(event: AccessEvent, sinks: Sequence[LineageSink]) -> None:
    for sink in sinks:
        sink.record_many([event])
    log.debug(
        "lineage: %s %s by %s (event %s)",
        event.operation.value,
        event.dataset.qualified_name,
        event.actor,
        event.id,
    )
