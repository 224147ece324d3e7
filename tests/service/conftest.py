"""Fixtures for the gate service: a real server over a real socket.

``service`` runs uvicorn in a thread of the test process (fast; same code path as `serve`);
``start_server`` launches real `gatehouse serve` subprocesses (fan-out, crash and e2e tests).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gate_core import Gatekeeper, Scope, Settings, init_home, open_gatekeeper
from gate_core.service import ServiceConfig, create_app
from gate_core.service._serve import uvicorn_config
from gate_core.testing import actor

USERS = {
    "bot": ("etl-bot", Scope.REQUEST),
    "alice": ("alice", Scope.DECIDE),
    "bob": ("bob", Scope.DECIDE),
    "carol": ("carol", Scope.DECIDE),
    "dave": ("dave", Scope.DECIDE),
    "erin": ("erin", Scope.DECIDE),
    "admin": ("carol", Scope.ADMIN),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"service at {base_url} did not become healthy in {timeout}s")


@dataclass
class Service:
    base_url: str
    settings: Settings
    gatekeeper: Gatekeeper
    tokens: dict[str, str] = field(default_factory=dict)
    app: Any = None

    def drain(self) -> None:
        """Wait for the app's background notification deliveries."""
        self.app.state.gatehouse.hub.drain()

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.tokens[who]}"}, timeout=30
        )


@pytest.fixture
def service_settings(tmp_path: Path, database_url: str) -> Settings:
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        policy_path=tmp_path / "home/policy.yaml",
        directory_path=tmp_path / "home/directory.yaml",
    )
    init_home(settings, example=True)
    return settings


def token_issuer(principal_id: str) -> str:
    """Who may create this principal's token: the person themselves; frank (gatehouse-admins) for
    the service principal."""
    return "frank" if principal_id == "etl-bot" else principal_id


def make_tokens(gatekeeper: Gatekeeper) -> dict[str, str]:
    return {
        who: gatekeeper.tokens.create(pid, scope, created_by=actor(token_issuer(pid)))[1]
        for who, (pid, scope) in USERS.items()
    }


class ThreadServer:
    def __init__(self, app: object, port: int) -> None:
        config = uvicorn_config(app, host="127.0.0.1", port=port, log_level="warning")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def service_factory(service_settings: Settings) -> Iterator[Callable[..., Service]]:
    """Start an in-thread server; keyword arguments go to ServiceConfig and create_app."""
    started: list[tuple[ThreadServer, Gatekeeper]] = []

    def start(config: ServiceConfig | None = None, **app_kwargs: object) -> Service:
        gatekeeper = open_gatekeeper(service_settings)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        config = config or ServiceConfig(public_url=base_url, sweep_interval_s=0.2)
        app = create_app(gatekeeper, config, **app_kwargs)  # type: ignore[arg-type]
        server = ThreadServer(app, port).__enter__()
        started.append((server, gatekeeper))
        wait_healthy(base_url)
        return Service(base_url, service_settings, gatekeeper, make_tokens(gatekeeper), app)

    yield start
    for server, gatekeeper in started:
        server.__exit__()
        gatekeeper.store.close()


@pytest.fixture
def service(service_factory: Callable[..., Service]) -> Service:
    return service_factory()


@dataclass
class ServerProcess:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


def launch_server(
    settings: Settings,
    log: Path,
    extra_env: dict[str, str] | None = None,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
) -> ServerProcess:
    """Start `gatehouse serve` for ``settings`` (on ``host``:``port``, or a free port) and wait until
    healthy (checked on 127.0.0.1, which a wildcard ``host`` also serves)."""
    port = port or free_port()
    env = {
        **os.environ,
        "GATEHOUSE_HOME": str(settings.home),
        "GATEHOUSE_DATABASE_URL": settings.database_url,
        **(extra_env or {}),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gate_core.cli", "serve", "--host", host, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_healthy(server.base_url, timeout=60)
    except AssertionError:
        server.kill()
        raise AssertionError(log.read_text()) from None
    return server


def stop_server(server: ServerProcess) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def start_server(service_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Launch `gatehouse serve` subprocesses sharing the test's home and database."""
    processes: list[ServerProcess] = []

    def start(extra_env: dict[str, str] | None = None) -> ServerProcess:
        server = launch_server(service_settings, tmp_path / f"serve-{len(processes)}.log", extra_env)
        processes.append(server)
        return server

    yield start
    for server in processes:
        stop_server(server)


from tests.service.scim_rig import scim_rig  # noqa: E402, F401 - shared fixture
