"""TokenService: create, list, revoke and authenticate API tokens (``gatekeeper.tokens``).

A sibling of the Gatekeeper on the same store and directory: tokens name principals, and their
creation and revocation go into the same audit trail (signed through the AuditService).

Credentials belong to their owner (who may create which token, checked here for every channel):

    token for            who may issue it                            over
    a human principal    that same person, and nobody else           an interactive channel
    a service principal  a human member of ``ADMIN_GROUP``           an interactive channel
                         (optionally limited to pipeline globs)
    scope ``scim``       a human member of ``ADMIN_GROUP``, for      an interactive channel
                         themselves (the IdP's provisioning
                         credential; it stops when they leave
                         ``ADMIN_GROUP``, checked on every use)

Interactive channels are the ones where the issuer proved who they are just now: the kernel's OS
account, the console after sign-in, the IdP, a trusted proxy — and the sandbox's ``--as``, which the
token records as such. A token never issues tokens, and nor do Slack buttons or the system.
Every token records its issuer and the channel; ``ApiToken.issued_by_owner`` tells the API whether
the token may decide (a token its own principal did not issue never does).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from gate_core._audit import AuditDraft, Event
from gate_core._audit_service import AuditService
from gate_core._errors import AuthenticationFailed, InvalidInput, PermissionDenied, PrincipalDeparted
from gate_core._models import Actor, AuthMethod, Principal, PrincipalKind
from gate_core._ports import Clock, TokenStore
from gate_core._tokens import ApiToken, Scope, hash_secret, new_token, secret_matches, split_token
from gate_core.identity import IdentitySource, canonical_identity, has_departed, same_person

ADMIN_GROUP = "gatehouse-admins"
"""Members manage service principals' tokens; a group of the directory like any other."""

# Channels where the issuer proved who they are for this very request; a bearer token, a Slack
# button or the system never mint credentials.
ISSUING_CHANNELS = frozenset(
    {
        AuthMethod.LOCAL_OS_USER,
        AuthMethod.SANDBOX,
        AuthMethod.CONSOLE_LOCAL,
        AuthMethod.OIDC,
        AuthMethod.PROXY_HEADER,
    }
)


MAX_PIPELINE_GLOBS = 50
MAX_GLOB_LENGTH = 200


def check_pipeline_globs(pipelines: tuple[str, ...] | None) -> None:
    """A service token's pipeline limit: at most 50 non-blank globs of at most 200 characters.
    An empty tuple would be a token that may open nothing: refused as a mistake."""
    if pipelines is None:
        return
    if not pipelines or len(pipelines) > MAX_PIPELINE_GLOBS:
        raise InvalidInput(f"a pipeline limit lists 1 to {MAX_PIPELINE_GLOBS} globs")
    for glob in pipelines:
        if not glob.strip() or len(glob) > MAX_GLOB_LENGTH or not glob.isprintable():
            raise InvalidInput(
                f"pipeline glob {glob[:40]!r} must be 1 to {MAX_GLOB_LENGTH} printable characters"
            )


class TokenService:
    def __init__(
        self, store: TokenStore, directory: IdentitySource, clock: Clock, audit: AuditService
    ) -> None:
        self.store = store
        self.directory = directory
        self.clock = clock
        self.audit = audit
        self._on_revoked: list[Callable[[str], None]] = []

    def when_revoked(self, forget: Callable[[str], None]) -> None:
        """Call ``forget(token_id)`` after each revocation through this service, so whatever
        remembers verified tokens in this process (the service's token cache) drops it at once;
        revocations elsewhere reach it within that cache's own bound."""
        self._on_revoked.append(forget)

    def create(
        self,
        principal_id: str,
        scope: Scope,
        *,
        created_by: Actor,
        description: str = "",
        expires_in: timedelta | None = None,
        pipelines: tuple[str, ...] | None = None,
        channel: str | None = None,
    ) -> tuple[ApiToken, str]:
        """Create a token; returns it with the one-time secret string. Only the hash is stored.
        PermissionDenied when ``created_by`` may not issue this token (see the module's table);
        ``channel`` (cli, console, …) goes into the audit entry beside how the issuer was identified."""
        principal = self.directory.get(principal_id)
        if scope is Scope.SCIM:
            self._check_scim_issuer(principal, created_by, pipelines)
        self._check_issuer(principal, created_by, pipelines, scope)
        check_pipeline_globs(pipelines)
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
            created_via=created_by.via.value,
            pipelines=tuple(pipelines) if pipelines is not None else None,
        )
        payload = {
            "token_id": token_id,
            "principal": principal.id,
            "scope": scope.value,
            "kind": principal.kind.value,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
            "issued_by": created_by.principal_id,
            "issued_via": created_by.via.value,
            "pipelines": list(pipelines) if pipelines is not None else None,
            **({"channel": channel} if channel else {}),
        }
        self.store.add_token(
            token, hash_secret(secret), [AuditDraft(Event.TOKEN_CREATED, now, created_by, None, payload)]
        )
        self.audit.maybe_checkpoint()
        return token, token_string

    def _check_scim_issuer(
        self, principal: Principal, issuer: Actor, pipelines: tuple[str, ...] | None
    ) -> None:
        if pipelines is not None:
            raise InvalidInput("a SCIM credential is not limited to pipelines")
        if principal.kind is not PrincipalKind.HUMAN or ADMIN_GROUP not in principal.groups:
            raise PermissionDenied(
                f"a SCIM credential is created by a member of {ADMIN_GROUP} for themselves; "
                f"{principal.id} is not one"
            )

    def _check_issuer(
        self, principal: Principal, issuer: Actor, pipelines: tuple[str, ...] | None, scope: Scope
    ) -> None:
        if issuer.via not in ISSUING_CHANNELS:
            raise PermissionDenied(
                f"tokens are not issued over {issuer.via.value}: sign in (console, `gatehouse login`) "
                "or use the CLI as your own operating-system account"
            )
        if principal.kind is PrincipalKind.HUMAN:
            if scope is Scope.LINEAGE:
                raise PermissionDenied(
                    "a lineage token is a pipeline credential: create it for a service principal"
                )
            if pipelines is not None:
                raise PermissionDenied("only a service principal's token is limited to pipelines")
            if not same_person(issuer.principal_id, issuer.email, principal.id, principal.email):
                raise PermissionDenied(
                    f"{issuer.principal_id} may not create a token for {principal.id}: a person's token "
                    f"is created only by that person ({principal.id} signs in and creates their own)"
                )
            return
        admin = self.directory.find(issuer.principal_id)
        if admin is None or admin.kind is not PrincipalKind.HUMAN or ADMIN_GROUP not in admin.groups:
            raise PermissionDenied(
                f"{issuer.principal_id} may not create a token for service principal {principal.id}: "
                f"only members of {ADMIN_GROUP} manage service tokens"
            )

    def revoke(self, token_id: str, *, actor: Actor, channel: str | None = None) -> bool:
        """Revoke at once; False when no active token has this id. Your own tokens, or — for
        members of ``ADMIN_GROUP`` — anyone's (an admin may pull a leaked credential)."""
        found = self.store.get_token(token_id)
        if found is not None:
            self._check_revoker(found[0], actor)
        now = self.clock.now()
        revoked = self.store.revoke_token(
            token_id,
            now,
            [
                AuditDraft(
                    Event.TOKEN_REVOKED,
                    now,
                    actor,
                    None,
                    {"token_id": token_id, **({"channel": channel} if channel else {})},
                )
            ],
        )
        if revoked:
            self.audit.maybe_checkpoint()
            for forget in self._on_revoked:
                forget(token_id)
        return revoked

    def _check_revoker(self, token: ApiToken, actor: Actor) -> None:
        if canonical_identity(actor.principal_id) == canonical_identity(token.principal_id):
            return
        revoker = self.directory.find(actor.principal_id)
        if revoker is None or ADMIN_GROUP not in revoker.groups or revoker.kind is not PrincipalKind.HUMAN:
            raise PermissionDenied(
                f"{actor.principal_id} may not revoke token {token.id} of {token.principal_id}: "
                f"your own tokens, or anyone's as a member of {ADMIN_GROUP}"
            )

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
        if has_departed(self.directory, token.principal_id):  # revoked when they left; said as such
            raise PrincipalDeparted(token.principal_id, AuthMethod.API_TOKEN.value)
        if not token.usable_at(self.clock.now()):
            raise AuthenticationFailed("API token expired or revoked")
        principal = self.directory.find(token.principal_id)
        if principal is None:
            raise AuthenticationFailed(
                f"API token's principal {token.principal_id!r} is no longer in the directory"
            )
        return principal, token
