"""GatehouseHook: the ``gatehouse`` connection type and the client built from it.

A connection holds the gate service's URL (``host``, e.g. ``https://gatehouse.example.com``; or a
bare host name with ``schema`` = http/https and ``port``) and a pipeline API token (``password``,
scope ``request``). Pipelines hold that token, never database credentials.

Without the connection (the default id ``gatehouse_default`` not defined), the hook falls back to
the ``GATEHOUSE_URL`` / ``GATEHOUSE_TOKEN`` environment variables, so a laptop or a test needs no
Airflow connection set up. Anything else missing is an error that says what to set.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

from gate_core import HttpGateClient

if TYPE_CHECKING:
    from airflow.sdk import Connection

DEFAULT_CONN_ID = "gatehouse_default"
URL_ENV, TOKEN_ENV = "GATEHOUSE_URL", "GATEHOUSE_TOKEN"


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where the gate service is and the token to call it with."""

    base_url: str
    token: str

    def __repr__(self) -> str:  # never print the token
        return f"Credentials(base_url={self.base_url!r}, token='***')"


def _from_connection(conn: Connection) -> Credentials:
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise AirflowException(f"connection {conn.conn_id!r}: host must be the gate service's URL")
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}"
    if conn.port and host.count(":") < 2:  # scheme://host without an explicit port
        host = f"{host}:{conn.port}"
    if not conn.password:
        raise AirflowException(f"connection {conn.conn_id!r}: password must hold a Gatehouse API token")
    return Credentials(host, conn.password)


def _from_environment(conn_id: str | None) -> Credentials:
    url, token = os.environ.get(URL_ENV), os.environ.get(TOKEN_ENV)
    if url and token:
        return Credentials(url.rstrip("/"), token)
    where = f"no Airflow connection {conn_id!r} and " if conn_id else ""
    raise AirflowException(
        f"Gatehouse is not configured: {where}{URL_ENV}/{TOKEN_ENV} are not set; add a "
        f"'gatehouse' connection (host = service URL, password = API token) or set both variables"
    )


_clients: dict[Credentials, HttpGateClient] = {}
_clients_lock = threading.Lock()


def shared_client(credentials: Credentials) -> HttpGateClient:
    """One client (and connection pool) per service and token in this process: a resumed task's
    fresh operator copy reuses the connection instead of building a new client."""
    with _clients_lock:
        client = _clients.get(credentials)
        if client is None:
            client = _clients[credentials] = HttpGateClient(credentials.base_url, credentials.token)
        return client


def _fallback_allowed(conn_id: str | None) -> bool:
    """Only the default connection falls back to the environment: a connection id the DAG names
    explicitly must exist, so a typo never silently sends requests somewhere else."""
    return conn_id in (None, DEFAULT_CONN_ID)


class GatehouseHook(BaseHook):
    """Talk to the Gatehouse gate service through the one client interface (``HttpGateClient``).

    :param gatehouse_conn_id: a connection of type ``gatehouse``; ``None`` reads only the
        environment. The default id falls back to ``GATEHOUSE_URL``/``GATEHOUSE_TOKEN`` when it is
        not defined.
    """

    conn_name_attr = "gatehouse_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "gatehouse"
    hook_name = "Gatehouse"

    _UI_HIDDEN: ClassVar[list[str]] = ["login", "extra"]

    def __init__(self, gatehouse_conn_id: str | None = DEFAULT_CONN_ID) -> None:
        super().__init__()
        self.gatehouse_conn_id = gatehouse_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """How the connection form looks in the Airflow UI."""
        return {
            "hidden_fields": cls._UI_HIDDEN,
            "relabeling": {"host": "Gatehouse URL", "password": "API token", "schema": "Scheme"},
            "placeholders": {
                "host": "https://gatehouse.example.com",
                "password": "gh_… (a token with scope 'request')",
                "schema": "https (when host is a bare name)",
            },
        }

    @classmethod
    def resolve(cls, conn_id: str | None) -> Credentials:
        """The credentials for ``conn_id`` (sync: workers, the DAG processor)."""
        if conn_id is not None:
            try:
                return _from_connection(cls.get_connection(conn_id))
            except AirflowNotFoundException:
                if not _fallback_allowed(conn_id):
                    raise
        return _from_environment(conn_id)

    @classmethod
    async def aresolve(cls, conn_id: str | None) -> Credentials:
        """The credentials for ``conn_id`` without blocking the event loop (triggerer)."""
        if conn_id is not None:
            try:
                return _from_connection(await cls.aget_connection(conn_id))
            except AirflowNotFoundException:
                if not _fallback_allowed(conn_id):
                    raise
        return _from_environment(conn_id)

    @cached_property
    def credentials(self) -> Credentials:
        return self.resolve(self.gatehouse_conn_id)

    @property
    def base_url(self) -> str:
        return self.credentials.base_url

    @cached_property
    def client(self) -> HttpGateClient:
        """The gate client for this hook's credentials (shared within the process)."""
        return shared_client(self.credentials)

    def get_conn(self) -> HttpGateClient:
        return self.client

    def console_url(self, gate_id: str) -> str:
        """Where a person reviews the gate."""
        return f"{self.base_url}/console/gates/{gate_id}"

    def test_connection(self) -> tuple[bool, str]:
        """Used by the UI's *Test* button: the service answers and accepts the token."""
        try:
            self.client.list(limit=1)
        except Exception as exc:  # the UI shows the message; any failure is a failed test
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"Gatehouse at {self.base_url} accepted the token"
