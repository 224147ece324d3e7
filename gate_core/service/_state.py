"""What every route needs, built once per app."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from gate_core._errors import PermissionDenied
from gate_core._gatekeeper import Gatekeeper
from gate_core._models import Gate
from gate_core._tokens import Scope
from gate_core.service._auth import Authenticator, Identity
from gate_core.service._batcher import DecisionBatcher
from gate_core.service._bus import ChangeBus
from gate_core.service._config import ServiceConfig
from gate_core.service._loops import LoopHealth
from gate_core.service.notify import NotificationHub


@dataclass
class ServiceState:
    gatekeeper: Gatekeeper
    config: ServiceConfig
    bus: ChangeBus
    hub: NotificationHub
    auth: Authenticator
    decisions: DecisionBatcher
    loops: LoopHealth = field(default_factory=LoopHealth)
    sandbox: bool = False  # the home is a sandbox (`init --example`): every console page says so

    def changed(self, gate: Gate) -> None:
        """After any transition: wake local waiters now (other replicas hear NOTIFY), update messages."""
        self.bus.publish(gate.id)
        self.hub.gate_changed(gate)

    def alert(self, gate: Gate, event: str, details: Mapping[str, Any]) -> None:
        """Tell the gate's notify targets about something found after the fact (lineage's
        ``out_of_scope``), in the background like every notification."""
        self.hub.alert(gate, event, details)


def state_of(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.gatehouse
    return state


async def identity(request: Request) -> Identity:
    """FastAPI dependency: the verified caller (401 otherwise). A ``lineage`` credential is refused
    here (403): it may only send OpenLineage events (``lineage_sender``), whatever route a plugin
    adds and however it checks scopes."""
    state = state_of(request)
    caller = await run_in_threadpool(state.auth.identify, request)
    if caller.scope is Scope.LINEAGE:
        raise PermissionDenied("this credential has scope 'lineage': it may only send OpenLineage events")
    return caller


async def lineage_sender(request: Request) -> Identity:
    """FastAPI dependency of the OpenLineage receiver: a verified caller whose credential has the
    ``lineage`` scope, and nothing else (403 for any other scope)."""
    state = state_of(request)
    caller = await run_in_threadpool(state.auth.identify, request)
    caller.require(Scope.LINEAGE)
    return caller
