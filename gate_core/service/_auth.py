"""Who is calling: every request resolves to one verified Identity or is refused (401).

    Authorization: Bearer gh_…           API token (stored hashed, scoped)      via api-token
    Authorization: Bearer <JWT>          OIDC: signature (JWKS), iss, aud, exp  via oidc
    <configured proxy header>            identity-aware proxy, off by default;  via proxy-header
                                         honoured only from trusted_ips
People signed in with OIDC or through the proxy act with the ``decide`` scope; what they may
actually decide is still the core's rules (approver groups, never their own gate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import Request

from gate_core._errors import AuthenticationFailed, PermissionDenied, UnknownPrincipal
from gate_core._gatekeeper import Gatekeeper
from gate_core._models import Actor, AuthMethod, Principal
from gate_core._tokens import PREFIX, Scope
from gate_core.service._config import OidcConfig, ProxyConfig


@dataclass(frozen=True, slots=True)
class Identity:
    principal: Principal
    via: AuthMethod
    scope: Scope

    @property
    def actor(self) -> Actor:
        return Actor(principal_id=self.principal.id, via=self.via, email=self.principal.email)

    def require(self, scope: Scope) -> None:
        if not self.scope.allows(scope):
            raise PermissionDenied(
                f"this {self.via.value} credential has scope {self.scope.value!r}; {scope.value!r} is needed"
            )


class OidcVerifier:
    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._jwks = jwt.PyJWKClient(config.jwks_url, cache_keys=True, lifespan=300, timeout=5)

    def claims(self, token: str) -> dict[str, Any]:
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(self.config.algorithms),
                audience=self.config.audience,
                issuer=self.config.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthenticationFailed(f"cannot reach the identity provider's keys: {exc}") from exc
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(f"invalid identity token: {exc}") from exc
        return claims


def principal_from_claims(gatekeeper: Gatekeeper, claims: dict[str, Any], config: OidcConfig) -> Principal:
    """A directory principal when the e-mail is known there (its groups plus the token's), else a
    human principal built from the token — an IdP-verified person, with the IdP's groups."""
    raw_groups = claims.get(config.groups_claim) or []
    groups = frozenset(
        g for g in (raw_groups if isinstance(raw_groups, list) else [raw_groups]) if isinstance(g, str)
    )
    email = claims.get(config.email_claim)
    if isinstance(email, str) and email:
        try:
            known = gatekeeper.directory.by_email(email)
        except UnknownPrincipal:
            known = None
        if known is not None:
            return known.model_copy(update={"groups": known.groups | groups})
    return Principal(
        id=f"oidc:{claims['sub']}",
        email=email if isinstance(email, str) else None,
        display_name=str(claims.get("name") or claims.get("preferred_username") or claims["sub"]),
        groups=groups,
    )


class Authenticator:
    def __init__(self, gatekeeper: Gatekeeper, oidc: OidcConfig | None, proxy: ProxyConfig | None) -> None:
        self.gatekeeper = gatekeeper
        self.oidc_config = oidc
        self.oidc = OidcVerifier(oidc) if oidc else None
        self.proxy = proxy

    def identify(self, request: Request) -> Identity:
        """Blocking (a token lookup, maybe a JWKS fetch): call from a worker thread."""
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, credential = header.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise AuthenticationFailed("Authorization must be 'Bearer <token>'")
            return self.bearer(credential.strip())
        proxied = self.from_proxy(request)
        if proxied is not None:
            return proxied
        raise AuthenticationFailed("authentication required: send 'Authorization: Bearer <token>'")

    def bearer(self, credential: str) -> Identity:
        if credential.startswith(PREFIX):
            principal, token = self.gatekeeper.tokens.authenticate(credential)
            return Identity(principal, AuthMethod.API_TOKEN, token.scope)
        if self.oidc is None or self.oidc_config is None:
            raise AuthenticationFailed("invalid API token")
        claims = self.oidc.claims(credential)
        return Identity(
            principal_from_claims(self.gatekeeper, claims, self.oidc_config), AuthMethod.OIDC, Scope.DECIDE
        )

    def from_proxy(self, request: Request) -> Identity | None:
        if self.proxy is None:
            return None
        user = request.headers.get(self.proxy.user_header)
        if not user:
            return None
        client = request.client.host if request.client else ""
        if client not in self.proxy.trusted_ips:
            raise AuthenticationFailed(f"{self.proxy.user_header} is only trusted from the configured proxy")
        try:
            principal = (
                self.gatekeeper.directory.by_email(user)
                if "@" in user
                else self.gatekeeper.directory.get(user)
            )
        except UnknownPrincipal as exc:
            raise AuthenticationFailed(f"{user!r} (from the proxy) is not in the directory") from exc
        if self.proxy.groups_header and request.headers.get(self.proxy.groups_header):
            extra = frozenset(
                g.strip() for g in request.headers[self.proxy.groups_header].split(",") if g.strip()
            )
            principal = principal.model_copy(update={"groups": principal.groups | extra})
        return Identity(principal, AuthMethod.PROXY_HEADER, Scope.DECIDE)
