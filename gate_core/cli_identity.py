"""Who the local CLI user is — for the core's commands and for plugins' (``gatehouse lineage``).

    production home   the kernel's OS account (euid → passwd → directory id or alias), via
                      local-os-user; ``--as`` is refused
    sandbox home      (``init --example`` wrote ``sandbox.yaml``) ``--as NAME`` chooses a person,
                      via sandbox — unverified, and recorded as such; without ``--as``, the OS
                      account as above. Every command says on stderr that the home is a sandbox.

``--as`` is an option of the ``gatehouse`` group, so it reaches plugin commands through click's
root context. Never an environment variable: that is exactly what issue 14 removed.
"""

from __future__ import annotations

import click

from gate_core._errors import AuthenticationFailed
from gate_core._home import Settings
from gate_core.cli_errors import fail
from gate_core.identity import Caller, IdentitySource, caller_from_os_account, caller_from_sandbox

__all__ = ["SANDBOX_BANNER", "chosen_name", "local_caller"]

SANDBOX_BANNER = (
    "gatehouse: SANDBOX home {home}: identities chosen with --as are unverified; not for real approvals"
)


def chosen_name() -> str | None:
    """The ``--as NAME`` given to the ``gatehouse`` group, if any."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    name = obj.get("as") if isinstance(obj, dict) else None
    return name if isinstance(name, str) else None


def local_caller(source: IdentitySource, settings: Settings) -> Caller:
    """The caller of this CLI process, or exit 1 with why not (see the module's table)."""
    name = chosen_name()
    try:
        if name is None:
            return caller_from_os_account(source)
        if not settings.is_sandbox:
            fail(
                f"--as is only for sandbox homes (`gatehouse init --example`); {settings.home} is not "
                "one: here you act as your operating-system account"
            )
        return caller_from_sandbox(source, name)
    except AuthenticationFailed as exc:
        fail(str(exc))
