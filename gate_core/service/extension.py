"""The gate service's extension API: everything a service plugin (such as ``lineage``) may use.

A distribution plugs into ``gatehouse serve`` through the ``gatehouse.service`` entry point, naming
a function ``install(app, context)``; it is called once, after the core's routes and console:

    install(app: FastAPI, context: ServiceContext)
        context.gatekeeper      the application service (and .tokens, .audit beside it)
        context.config          the service's ServiceConfig
        context.changed(gate)   after a plugin changed a gate: wake waiters, update messages
    routes                      caller: Caller  → the verified Identity (401 otherwise);
                                identity is the FastAPI dependency behind it;
                                context_of(request) → the ServiceContext
    console pages               console_of(app).add_page(path, label, endpoint, templates):
                                the console's session, sign-in, headers and error pages

Only these names are public; everything in ``gate_core.service._*`` may change without notice.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import Depends, Request

from gate_core._gatekeeper import Gatekeeper
from gate_core._models import Gate
from gate_core.service._auth import Identity
from gate_core.service._config import ServiceConfig
from gate_core.service._console import Console, Viewer, console_of
from gate_core.service._state import identity, state_of


class ServiceContext(Protocol):
    """What a running service gives its plugins (read-only)."""

    @property
    def gatekeeper(self) -> Gatekeeper: ...

    @property
    def config(self) -> ServiceConfig: ...

    def changed(self, gate: Gate) -> None:
        """After a gate changed: wake local waiters (other replicas hear NOTIFY), update messages."""
        ...


def context_of(request: Request) -> ServiceContext:
    """The context of the service handling ``request``."""
    return state_of(request)


Caller = Annotated[Identity, Depends(identity)]
"""A route parameter typed ``Caller`` receives the verified caller."""

__all__ = [
    "Caller",
    "Console",
    "Identity",
    "ServiceContext",
    "Viewer",
    "console_of",
    "context_of",
    "identity",
]
