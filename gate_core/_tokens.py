"""API tokens: how pipelines and scripts authenticate to the gate service.

A token is ``gh_<id>_<secret>``. Only SHA-256(secret) is stored; the whole token is shown once,
at creation. Scopes nest: ``request`` (open, read, wait on, cancel and consume gates) ⊂
``decide`` (also approve and reject) ⊂ ``admin`` (also export the audit trail). A service
principal's token can never decide, whatever its scope says: the core refuses service deciders.
``scim`` stands apart: the IdP's provisioning credential, good for ``/scim/v2`` and nothing else,
and no other scope reaches ``/scim/v2``.
``lineage`` stands apart: it may only send OpenLineage events to ``/api/v1/lineage`` (what an
orchestrator's OpenLineage integration holds), and no other scope may send them.
"""

from __future__ import annotations

import enum
import fnmatch
import hashlib
import hmac
import secrets
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from gate_core.identity._canonical import canonical_identity

PREFIX = "gh_"


class Scope(enum.StrEnum):
    REQUEST = "request"
    DECIDE = "decide"
    ADMIN = "admin"
    SCIM = "scim"
    LINEAGE = "lineage"

    def allows(self, needed: Scope) -> bool:
        if {self, needed} & {Scope.SCIM, Scope.LINEAGE}:  # outside the nesting: only itself
            return self is needed
        order = [Scope.REQUEST, Scope.DECIDE, Scope.ADMIN]
        return order.index(self) >= order.index(needed)


class ApiToken(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    principal_id: str
    scope: Scope
    description: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    created_via: str | None = None
    pipelines: tuple[str, ...] | None = None

    @property
    def issued_by_owner(self) -> bool:
        """Whether the principal the token acts as issued it (ids compared in canonical form)."""
        return canonical_identity(self.created_by) == canonical_identity(self.principal_id)

    def allows_pipeline(self, pipeline: str) -> bool:
        """Whether this token may open gates for ``pipeline`` (no limit when ``pipelines`` is None)."""
        return self.pipelines is None or any(fnmatch.fnmatchcase(pipeline, glob) for glob in self.pipelines)

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """Return (token id, secret, the full token string to hand out once)."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return token_id, secret, f"{PREFIX}{token_id}_{secret}"


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token string, else None."""
    if not token.startswith(PREFIX):
        return None
    token_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or len(token_id) != 12 or not secret:
        return None
    return token_id, secret


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
