"""Which gate service a command goes through, for the core's commands and plugins' (``gatehouse
lineage``): ``--url`` on the ``gatehouse`` group, else ``$GATEHOUSE_URL``, else the last
``gatehouse login`` — or none, and the command works locally.

The credential is ``$GATEHOUSE_TOKEN`` when set (pipelines, CI), else the stored login for that
URL, refreshed when it is about to expire (``gate_core.cli_login``). A module of its own so that
plugins can import it without importing ``gate_core.cli`` (which loads the plugins).
"""

from __future__ import annotations

import os

import click

from gate_core._client import HttpGateClient
from gate_core.cli_errors import fail
from gate_core.cli_login import CredentialStore, refreshed

__all__ = ["remote_client", "service_url"]


def service_url() -> str | None:
    ctx = click.get_current_context(silent=True)
    obj = (ctx.find_root().obj if ctx is not None else None) or {}
    url = obj.get("url") if isinstance(obj, dict) else None
    return url or os.environ.get("GATEHOUSE_URL") or CredentialStore().current_url()


def remote_client() -> HttpGateClient | None:
    """The service client of a remote command, or None in local mode (no URL configured)."""
    url = service_url()
    if not url:
        return None
    ctx = click.get_current_context()
    obj = ctx.find_root().obj or {}
    if isinstance(obj, dict) and obj.get("as"):
        fail("--as is for sandbox homes; the gate service knows you by your login (`gatehouse whoami`)")
    token = os.environ.get("GATEHOUSE_TOKEN")
    if not token:
        store = CredentialStore()
        login = store.get(url)
        if login is None:
            fail(f"not logged in to {url}: run `gatehouse login --url {url}` (or set GATEHOUSE_TOKEN)")
        token = refreshed(login, store).access_token
    client = HttpGateClient(url, token, retries=1)
    ctx.call_on_close(client.close)
    return client
