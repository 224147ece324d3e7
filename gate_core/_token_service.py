"""TokenService: create, list, revoke and authenticate API tokens (``gatekeeper.tokens``).

A sibling of the Gatekeeper on the same store and directory: tokens name principals, and their
creation and revocation go into the same audit trail (signed through the AuditService).
"""

from __future__ import annotations

from datetime import timedelta

from gate_core._audit import AuditDraft, Event
from gate_core._audit_service import AuditService
from gate_core._errors import AuthenticationFailed
from gate_core._models import Actor, Principal
from gate_core._ports import Clock, TokenStore
from gate_core._tokens import ApiToken, Scope, hash_secret, new_token, secret_matches, split_token
from gate_core.identity import IdentitySource


class TokenService:
    def __init__(
        self, store: TokenStore, directory: IdentitySource, clock: Clock, audit: AuditService
    ) -> None:
        self.store = store
        self.directory = directory
        self.clock = clock
        self.audit = audit

    def create(
        self,
        principal_id: str,
        scope: Scope,
        *,
        created_by: Actor,
        description: str = "",
        expires_in: timedelta | None = None,
    ) -> tuple[ApiToken, str]:
        """Create a token; returns it with the one-time secret string. Only the hash is stored."""
        principal = self.directory.get(principal_id)
        now = self.clock.now()
        token_id, secret, token_string = new_token()
        token = ApiToken(
            id=token_id,
            principal_id=principal.id,
            scope=scope,
            description=description,
            created_at=now,
            created_by=created_by.principal_id,
            expires_at=now + expires_in if expires_in else None,
        )
        payload = {
            "token_id": token_id,
            "principal": principal.id,
            "scope": scope.value,
            "kind": principal.kind.value,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        }
        self.store.add_token(
            token, hash_secret(secret), [AuditDraft(Event.TOKEN_CREATED, now, created_by, None, payload)]
        )
        self.audit.maybe_checkpoint()
        return token, token_string

    def revoke(self, token_id: str, *, actor: Actor) -> bool:
        """Revoke at once; False when no active token has this id."""
        now = self.clock.now()
        revoked = self.store.revoke_token(
            token_id, now, [AuditDraft(Event.TOKEN_REVOKED, now, actor, None, {"token_id": token_id})]
        )
        if revoked:
            self.audit.maybe_checkpoint()
        return revoked

    def list(self) -> list[ApiToken]:
        """Every token, active or not (never a secret: only hashes are stored)."""
        return self.store.list_tokens()

    def authenticate(self, token_string: str) -> tuple[Principal, ApiToken]:
        """The principal behind a bearer token, or AuthenticationFailed (never says which part was wrong)."""
        parts = split_token(token_string)
        found = self.store.get_token(parts[0]) if parts else None
        if parts is None or found is None or not secret_matches(parts[1], found[1]):
            raise AuthenticationFailed("invalid API token")
        token, _ = found
        if not token.usable_at(self.clock.now()):
            raise AuthenticationFailed("API token expired or revoked")
        principal = self.directory.find(token.principal_id)
        if principal is None:
            raise AuthenticationFailed(
                f"API token's principal {token.principal_id!r} is no longer in the directory"
            )
        return principal, token
