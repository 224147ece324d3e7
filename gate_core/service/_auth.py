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
core's rules (approver groups, never their own gate).

API tokens are checked against the database (the token row: revoked? expired?) and the identity
source (the principal still there?) — at most once per ``TOKEN_CACHE_S`` per token per replica.
A verified token is remembered for that long, keyed by a hash of the whole credential, so a
request with a remembered token is answered on the event loop without a database read or a
worker thread. That bounds what a revocation or a removed person may still do: at most
``TOKEN_CACHE_S`` (0.25 s) on every replica (tests/security/test_token_cache_P.py measures it).
Failures are never remembered, a failed re-verification forgets at once, and a token's own
expiry is checked on every request. What a remembered caller may decide is not remembered: the
core reads the directory's groups at decision time (``Caller.asserted_principal``). An IdP
identity no principal is linked to reads and never acts; the proxy's groups header, when
configured, only narrows the directory's.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import jwt
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from gate_core._errors import AuthenticationFailed, PrincipalDeparted
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


TOKEN_CACHE_S = 0.25  # how stale a replica's view of a token and its principal may be
TOKEN_CACHE_SIZE = 10_000


class TokenCache:
    """API tokens verified in the last ``ttl_s`` seconds: sha256(credential) → entry.
    Thread-safe; bounded (full: emptied, the next requests re-read).

    Refresh ahead, one at a time: past half its life an entry is handed to one request to
    re-verify (the others keep using it until it expires), so a busy token never expires under
    load and never sends every in-flight request to the database at once. Staleness stays bounded
    by ``ttl_s`` from the last successful verification, whatever happens to the refresh."""

    def __init__(self, ttl_s: float = TOKEN_CACHE_S, size: int = TOKEN_CACHE_SIZE) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._lock = threading.Lock()
        self._entries: dict[bytes, _Remembered] = {}

    @staticmethod
    def key(credential: str) -> bytes:
        return hashlib.sha256(credential.encode()).digest()

    def get(self, credential: str, directory: object) -> tuple[Identity | None, bool]:
        """(the remembered caller or None, whether this request should re-verify it now)."""
        key = self.key(credential)
        now = time.monotonic()
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None, False
            if now >= found.verified + self.ttl_s or found.directory is not directory:
                del self._entries[key]  # stale, or the identity source changed
                return None, False
            refresh = not found.refreshing and now >= found.verified + self.ttl_s / 2
            if refresh:
                found.refreshing = True
            return found.caller, refresh

    def put(self, credential: str, caller: Identity, directory: object, verified: float) -> None:
        """``verified``: time.monotonic() read *before* the verification's database read."""
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[self.key(credential)] = _Remembered(caller, verified, directory)

    def forget_token(self, token_id: str) -> None:
        """Drop every remembered credential of this token (revoked through this replica)."""
        with self._lock:
            for key in [
                k for k, e in self._entries.items() if e.caller.token and e.caller.token.id == token_id
            ]:
                del self._entries[key]

    def forget(self, credential: str) -> None:
        with self._lock:
            self._entries.pop(self.key(credential), None)

    def release(self, credential: str) -> None:
        """A refresh that failed for another reason (the database away): let another try."""
        with self._lock:
            found = self._entries.get(self.key(credential))
            if found is not None:
                found.refreshing = False


@dataclass
class _Remembered:
    caller: Identity
    verified: float
    directory: object
    refreshing: bool = False


def _api_token(request: Request) -> str | None:
    """The API token of ``Authorization: Bearer gh_…``, if that is what the request carries."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential.startswith(PREFIX) else None


class Authenticator:
    def __init__(self, gatekeeper: Gatekeeper, oidc: OidcConfig | None, proxy: ProxyConfig | None) -> None:
        self.gatekeeper = gatekeeper
        self.oidc_config = oidc
        self.oidc = OidcVerifier(oidc) if oidc else None
        self.proxy = proxy
        self.tokens = TokenCache()
        gatekeeper.tokens.when_revoked(self.tokens.forget_token)  # this replica: refused at once
        self._verifying: dict[bytes, asyncio.Task[Identity]] = {}  # API token → its verification running

    async def verify(self, request: Request) -> Identity:
        """The caller of ``request`` (async, for the request's own task): a remembered API token
        at once; otherwise ``identify`` on a worker thread — one at a time per API token: requests
        that arrive while a token is being verified share that verification, so a token whose
        entry just aged out costs one database read, not one per request in flight."""
        remembered = self.remembered(request)
        if remembered is not None:
            return remembered
        credential = _api_token(request)
        if credential is None:
            return await run_in_threadpool(self.identify, request)
        key = TokenCache.key(credential)
        running = self._verifying.get(key)
        if running is None:
            running = asyncio.ensure_future(run_in_threadpool(self.identify, request))
            self._verifying[key] = running
            running.add_done_callback(partial(self._verified, key))
        return await asyncio.shield(running)  # a caller going away does not cancel the others' answer

    def _verified(self, key: bytes, done: asyncio.Task[Identity]) -> None:
        if self._verifying.get(key) is done:
            del self._verifying[key]
        if not done.cancelled():
            done.exception()  # retrieved: a refusal nobody waited for anymore is not an "unhandled" error

    def remembered(self, request: Request) -> Identity | None:
        """The caller, when the request carries an API token verified less than TOKEN_CACHE_S
        ago and not expired since; None means: call ``identify`` (from a worker thread) — also
        for the one request chosen to re-verify a remembered token ahead of its expiry."""
        credential = _api_token(request)
        if credential is None:
            return None
        caller, refresh = self.tokens.get(credential, self.gatekeeper.directory)
        if caller is None or refresh or caller.token is None:
            return None
        if not caller.token.usable_at(self.gatekeeper.clock.now()):
            return None  # expired meanwhile: identify says so
        return caller

    def identify(self, request: Request) -> Identity:
        """Blocking (a token lookup, maybe a JWKS fetch): call from a worker thread. A person who
        left the directory is refused, and the attempt audited (``access.refused``)."""
        try:
            return self._identify(request)
        except PrincipalDeparted as departed:
            self.gatekeeper.refuse_departed(departed, f"{request.method} {request.url.path}")
            raise

    def _identify(self, request: Request) -> Identity:
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
            verified = time.monotonic()  # before the read: staleness is counted from here
            try:
                caller = caller_from_token(self.gatekeeper.tokens, credential)
            except AuthenticationFailed:
                self.tokens.forget(credential)  # revoked, expired, gone: refused from now on
                raise
            except Exception:
                self.tokens.release(credential)
                raise
            self.tokens.put(credential, caller, directory, verified)
            return caller
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
