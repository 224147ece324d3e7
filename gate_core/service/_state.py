"""What every route needs, built once per app."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from gate_core._errors import PermissionDenied
from gate_core._gatekeeper import Gatekeeper
from gate_core._models import Gate
from gate_core._tokens import Scope
from gate_core.service._auth import Authenticator, Identity
from gate_core.service._batcher import DecisionBatcher
from gate_core.service._bus import ChangeBus
from gate_core.service._config import ServiceConfig
from gate_core.service._directory_watch import DirectoryWatch
from gate_core.service._logs import note_actor
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
    directory_watch: DirectoryWatch | None = None  # `gatehouse serve`: re-read directory.yaml on change
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
    caller = await state.auth.verify(request)  # a token verified < 0.25 s ago: no thread, no database
    note_actor(caller.principal.id)  # every log line of this request names the verified caller
    if caller.scope is Scope.LINEAGE:
        raise PermissionDenied("this credential has scope 'lineage': it may only send OpenLineage events")
    return caller


async def lineage_sender(request: Request) -> Identity:
    """FastAPI dependency of the OpenLineage receiver: a verified caller whose credential has the
    ``lineage`` scope, and nothing else (403 for any other scope)."""
    state = state_of(request)
    caller = await state.auth.verify(request)
    note_actor(caller.principal.id)
    caller.require(Scope.LINEAGE)
    return caller
