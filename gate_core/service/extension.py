"""The gate service's extension API: everything a service plugin (such as ``lineage``) may use.

A distribution plugs into ``gatehouse serve`` through the ``gatehouse.service`` entry point, naming
a function ``install(app, context)``; it is called once, after the core's routes and console:

    install(app: FastAPI, context: ServiceContext)
        context.gatekeeper      the application service (and .tokens, .audit beside it)
        context.config          the service's ServiceConfig
        context.changed(gate)   after a plugin changed a gate: wake waiters, update messages
        context.alert(gate, event, details)   tell the gate's notify targets (after-the-fact finds)
    routes                      caller: Caller  → the verified Identity (401 otherwise);
                                sender: LineageSender → a ``lineage``-scoped credential only;
                                identity is the FastAPI dependency behind it;
                                context_of(request) → the ServiceContext
    console pages               console_of(app).add_page(path, label, endpoint, templates):
                                the console's session, sign-in, headers and error pages

Only these names are public; everything in ``gate_core.service._*`` may change without notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request

from gate_core._gatekeeper import Gatekeeper
from gate_core._models import Gate
from gate_core.service._auth import Identity
from gate_core.service._config import ServiceConfig
from gate_core.service._console import Console, Viewer, console_of
from gate_core.service._state import identity, lineage_sender, state_of


class ServiceContext(Protocol):
    """What a running service gives its plugins (read-only)."""

    @property
    def gatekeeper(self) -> Gatekeeper: ...

    @property
    def config(self) -> ServiceConfig: ...

    def changed(self, gate: Gate) -> None:
        """After a gate changed: wake local waiters (other replicas hear NOTIFY), update messages."""
        ...

    def alert(self, gate: Gate, event: str, details: Mapping[str, Any]) -> None:
        """Tell the gate's notify targets about ``event`` (e.g. ``lineage.out_of_scope``), in the
        background; notifiers without alerts skip it. Coalesced: at most one message per gate and
        target each ``alert_interval_s``, then a summary (``more_findings``), so the caller keeps
        its own record of every finding."""
        ...


def context_of(request: Request) -> ServiceContext:
    """The context of the service handling ``request``."""
    return state_of(request)


Caller = Annotated[Identity, Depends(identity)]
"""A route parameter typed ``Caller`` receives the verified caller (never a ``lineage`` credential)."""

LineageSender = Annotated[Identity, Depends(lineage_sender)]
"""A route parameter typed ``LineageSender`` receives a caller holding a ``lineage`` credential."""

__all__ = [
    "Caller",
    "Console",
    "Identity",
    "LineageSender",
    "ServiceContext",
    "Viewer",
    "console_of",
    "context_of",
    "identity",
]
