"""Who is calling over HTTP: every request resolves to one verified Identity or is refused (401).

    Authorization: Bearer gh_…           API token (stored hashed, scoped)      via api-token
    Authorization: Bearer <JWT>          OIDC: an id_token or an access token   via oidc
                                         (`gatehouse login`): signature (JWKS),
                                         iss, aud (audience or api_audience), exp
    <configured proxy header>            identity-aware proxy, off by default;  via proxy-header
                                         honoured only when the socket peer is
                                         in trusted_ips (never X-Forwarded-For)
This module only reads the proof off the request (headers, the connection's peer) and verifies JWT
signatures; which principal a proof names, and with which scope, is gate_core.identity's answer
(``caller_from_token``, ``caller_from_oidc_claims``, ``caller_from_proxy``). People signed in with
OIDC or through the proxy act with the ``decide`` scope; what they may actually decide is still the
core's rules (approver groups, never their own gate). An IdP identity no principal is linked to
reads and never acts; the proxy's groups header, when configured, only narrows the directory's.
"""

from __future__ import annotations

from typing import Any

import jwt
from fastapi import Request

from gate_core._errors import AuthenticationFailed
from gate_core._gatekeeper import Gatekeeper
from gate_core._tokens import PREFIX
from gate_core.identity import Caller, caller_from_oidc_claims, caller_from_proxy, caller_from_token
from gate_core.service._config import OidcConfig, ProxyConfig
from gate_core.service._peer import socket_peer

# The service's name for a verified caller (routes and lineage's REST plugin take it by this name).
Identity = Caller


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
                audience=self.config.audiences,
                issuer=self.config.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthenticationFailed(f"cannot reach the identity provider's keys: {exc}") from exc
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(f"invalid identity token: {exc}") from exc
        return claims


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
            return caller_from_token(self.gatekeeper.tokens, credential)
        if self.oidc is None or self.oidc_config is None:
            raise AuthenticationFailed("invalid API token")
        claims = self.oidc.claims(credential)
        return caller_from_oidc_claims(self.gatekeeper.directory, claims, self.oidc_config)

    def from_proxy(self, request: Request) -> Identity | None:
        """The proxy's user, when the header is set; refused unless the connection itself comes
        from a trusted proxy (the socket peer: a forwarded header names no hop we can check)."""
        if self.proxy is None:
            return None
        user = request.headers.get(self.proxy.user_header)
        if not user:
            return None
        peer = socket_peer(request.scope)
        if not self.proxy.trusts(peer):
            raise AuthenticationFailed(
                f"{self.proxy.user_header} is only trusted from the configured proxy "
                f"(proxy.trusted_ips); this connection comes from {peer or 'an unknown address'}"
            )
        header = request.headers.get(self.proxy.groups_header) if self.proxy.groups_header else None
        groups = None if header is None else [g.strip() for g in header.split(",") if g.strip()]
        return caller_from_proxy(self.gatekeeper.directory, user.strip(), groups)
