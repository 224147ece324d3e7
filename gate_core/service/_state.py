"""What every route needs, built once per app."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from gate_core._gatekeeper import Gatekeeper
from gate_core._models import Gate
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


def state_of(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.gatehouse
    return state


async def identity(request: Request) -> Identity:
    """FastAPI dependency: the verified caller (401 otherwise)."""
    state = state_of(request)
    caller = await state.auth.verify(request)  # a token verified < 0.25 s ago: no thread, no database
    note_actor(caller.principal.id)  # every log line of this request names the verified caller
    return caller
