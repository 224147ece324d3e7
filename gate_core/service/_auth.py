"""Who is calling over HTTP: every request resolves to one verified Identity or is refused (401).

    Authorization: Bearer gh_…           API token (stored hashed, scoped)      via api-token
    Authorization: Bearer <JWT>          OIDC: signature (JWKS), iss, aud, exp  via oidc
    <configured proxy header>            identity-aware proxy, off by default;  via proxy-header
                                         honoured only from trusted_ips
This module only reads the proof off the request (headers, the client address) and verifies JWT
signatures; which principal a proof names, and with which scope, is gate_core.identity's answer
(``caller_from_token``, ``caller_from_oidc_claims``, ``caller_from_proxy``). People signed in with
OIDC or through the proxy act with the ``decide`` scope; what they may actually decide is still the
core's rules (approver groups, never their own gate).

API tokens are checked against the database (the token row: revoked? expired?) and the identity
source (the principal still there?) — at most once per ``TOKEN_CACHE_S`` per token per replica.
A verified token is remembered for that long, keyed by a hash of the whole credential, so a
request with a remembered token is answered on the event loop without a database read or a
worker thread. That bounds what a revocation or a removed person may still do: at most
``TOKEN_CACHE_S`` (0.5 s) on every replica (tests/security/test_token_cache_P.py measures it).
Failures are never remembered, and a token's own expiry is checked on every request.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import jwt
from fastapi import Request

from gate_core._errors import AuthenticationFailed
from gate_core._gatekeeper import Gatekeeper
from gate_core._tokens import PREFIX
from gate_core.identity import Caller, caller_from_oidc_claims, caller_from_proxy, caller_from_token
from gate_core.service._config import OidcConfig, ProxyConfig

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
                audience=self.config.audience,
                issuer=self.config.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthenticationFailed(f"cannot reach the identity provider's keys: {exc}") from exc
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(f"invalid identity token: {exc}") from exc
        return claims


TOKEN_CACHE_S = 0.5  # how stale a replica's view of a token and its principal may be
TOKEN_CACHE_SIZE = 10_000


class TokenCache:
    """API tokens verified in the last ``ttl_s`` seconds: sha256(credential) → (caller, until).
    Thread-safe; bounded (full: emptied, the next requests re-read)."""

    def __init__(self, ttl_s: float = TOKEN_CACHE_S, size: int = TOKEN_CACHE_SIZE) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[Identity, float, object]] = {}

    @staticmethod
    def key(credential: str) -> bytes:
        return hashlib.sha256(credential.encode()).digest()

    def get(self, credential: str, directory: object) -> Identity | None:
        key = self.key(credential)
        with self._lock:
            found = self._entries.get(key)
        if found is None:
            return None
        caller, until, seen_directory = found
        if time.monotonic() >= until or seen_directory is not directory:  # stale, or the source changed
            with self._lock:
                self._entries.pop(key, None)
            return None
        return caller

    def put(self, credential: str, caller: Identity, directory: object) -> None:
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[self.key(credential)] = (caller, time.monotonic() + self.ttl_s, directory)


class Authenticator:
    def __init__(self, gatekeeper: Gatekeeper, oidc: OidcConfig | None, proxy: ProxyConfig | None) -> None:
        self.gatekeeper = gatekeeper
        self.oidc_config = oidc
        self.oidc = OidcVerifier(oidc) if oidc else None
        self.proxy = proxy
        self.tokens = TokenCache()

    def remembered(self, request: Request) -> Identity | None:
        """The caller, when the request carries an API token verified less than TOKEN_CACHE_S
        ago and not expired since; None means: call ``identify`` (from a worker thread)."""
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential.startswith(PREFIX):
            return None
        caller = self.tokens.get(credential, self.gatekeeper.directory)
        if caller is None or caller.token is None:
            return None
        if not caller.token.usable_at(self.gatekeeper.clock.now()):
            return None  # expired meanwhile: identify says so
        return caller

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
            directory = self.gatekeeper.directory  # the source this verification read
            caller = caller_from_token(self.gatekeeper.tokens, credential)
            self.tokens.put(credential, caller, directory)
            return caller
        if self.oidc is None or self.oidc_config is None:
            raise AuthenticationFailed("invalid API token")
        claims = self.oidc.claims(credential)
        return caller_from_oidc_claims(self.gatekeeper.directory, claims, self.oidc_config)

    def from_proxy(self, request: Request) -> Identity | None:
        """The proxy's user, when the header is set; refused unless it came from a trusted proxy."""
        if self.proxy is None:
            return None
        user = request.headers.get(self.proxy.user_header)
        if not user:
            return None
        client = request.client.host if request.client else ""
        if client not in self.proxy.trusted_ips:
            raise AuthenticationFailed(f"{self.proxy.user_header} is only trusted from the configured proxy")
        groups = request.headers.get(self.proxy.groups_header) if self.proxy.groups_header else None
        extra = [g.strip() for g in (groups or "").split(",") if g.strip()]
        return caller_from_proxy(self.gatekeeper.directory, user, extra)
