"""Who: a principal as an identity source knows it, and an actor as a channel proved it.

    Principal   id, e-mail, display name, groups, kind (human | service); its identity keys and
                person key are the canonical forms (``_canonical.py``) every match is made on
    Actor       a principal at the moment it acted + the AuthMethod that established it
    AuthMethod  how: local-os-user, sandbox, api-token, oidc, proxy-header, slack, teams, console-local,
                system

Frozen pydantic models, serialised identically wherever they cross a boundary. The gate domain
(``gate_core/_models.py``) builds on these and re-exports them.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field

from gate_core.identity._canonical import identity_key, same_person
from gate_core.identity._canonical import person_key as canonical_person_key


class PrincipalKind(enum.StrEnum):
    HUMAN = "human"
    SERVICE = "service"


class AuthMethod(enum.StrEnum):
    """How an acting identity was established; recorded with every audited action."""

    LOCAL_OS_USER = "local-os-user"
    SANDBOX = "sandbox"  # `--as NAME` in a sandbox home: chosen, never verified
    API_TOKEN = "api-token"
    OIDC = "oidc"
    PROXY_HEADER = "proxy-header"
    SLACK = "slack"
    TEAMS = "teams"  # a Bot Framework-signed click, the member the Bot Connector names
    CONSOLE_LOCAL = "console-local"
    SYSTEM = "system"


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    email: str | None = None
    display_name: str = ""
    groups: frozenset[str] = frozenset()
    kind: PrincipalKind = PrincipalKind.HUMAN

    @property
    def identity_keys(self) -> tuple[str, ...]:
        """``id:`` and (when known) ``email:`` keys, canonical; a gate stores its requester's."""
        keys = [identity_key("id", self.id)]
        if self.email:
            keys.append(identity_key("email", self.email))
        return tuple(keys)

    @property
    def person_key(self) -> str:
        """One key per real person: the e-mail when known (so the same mailbox under two ids is
        one person), otherwise the id. Quorum and self-approval are decided on this key."""
        return canonical_person_key(self.id, self.email)

    def is_same_person(self, other: Principal) -> bool:
        return same_person(self.id, self.email, other.id, other.email)

    @property
    def label(self) -> str:
        return self.display_name or self.id


class Actor(BaseModel):
    """A principal at the moment it acted, and how we know it was them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    principal_id: str
    via: AuthMethod
    email: str | None = None


SYSTEM_ACTOR = Actor(principal_id="gatehouse", via=AuthMethod.SYSTEM)
