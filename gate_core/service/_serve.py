"""Running the app under uvicorn (``gatehouse serve``), with a shutdown that does not wait out
long-polls."""

from __future__ import annotations

import asyncio
import gc
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from gate_core.service._bus import ChangeBus
from gate_core.service._logs import log_config
from gate_core.service._state import ServiceState


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, first answer every parked long-poll with its gates' current state
    (clients poll again: here after a restart, or on another replica). Otherwise uvicorn's graceful
    shutdown would wait out every open wait — up to 25 s for a triggerer's."""

    def __init__(self, config: uvicorn.Config, bus: ChangeBus) -> None:
        super().__init__(config)
        self.bus = bus
        self.loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler must not take the bus's lock (the loop may hold it): drain on the loop.
        if self.loop is not None and not self.bus.draining:
            self.loop.call_soon_threadsafe(self.bus.drain)
        super().handle_exit(sig, frame)


def uvicorn_config(
    app: FastAPI, *, host: str, port: int, log_level: str, log_format: str = "text"
) -> uvicorn.Config:
    """How ``gatehouse serve`` runs the app. uvicorn's forwarded-header rewriting is off: the app's
    own SocketPeer layer applies it, only for ``forwarded_allow_ips``, after recording the real
    peer (``_peer.py``). Idle connections are kept longer than clients keep them (httpx: 5 s), so
    a client never sends on a connection the server is closing at that very moment (a ReadError
    under steady load)."""
    json_logs = log_config(log_format, log_level)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level == "debug" and json_logs is None,  # json: our access line, with request id
        timeout_keep_alive=65,
        log_config=json_logs if json_logs is not None else uvicorn.config.LOGGING_CONFIG,
        proxy_headers=False,
        forwarded_allow_ips=None,
    )


def serve_app(app: FastAPI, *, host: str, port: int, log_level: str, log_format: str = "text") -> None:
    """One uvicorn process (no ``workers``): a replica is one process, so its metrics are its own
    and replicas are summed by Prometheus (gate_core.service._metrics)."""
    state: ServiceState = app.state.gatehouse
    config = uvicorn_config(app, host=host, port=port, log_level=log_level, log_format=log_format)
    # Everything built so far (modules, the app, policy, plugins) lives as long as the process:
    # out of the collector's sight, a collection under load walks only what requests allocate.
    # Measured on the OpenLineage receiver's batches: about a third less time per event.
    gc.collect()
    gc.freeze()
    # A request allocates containers by the ten thousand (a receiver batch of 250 events parses to
    # about 25,000 dicts and lists, all alive until it is answered): at the default 700 the young
    # generation is collected dozens of times a batch, each pass walking what is still alive.
    # Measured on decoding and checking such batches: 67-75 -> 59-66 us per event.
    gc.set_threshold(10_000, 10, 10)
    DrainingServer(config, state.bus).run()
