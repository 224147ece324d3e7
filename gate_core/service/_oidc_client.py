"""The console's side of OpenID Connect: discovery, the authorization-code flow with PKCE (RFC 7636),
The id_token itself is verified by the service's OidcVerifier."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from gate_core._errors import AuthenticationFailed
from gate_core.service._config import OidcConfig


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(verifier)) without padding."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass(frozen=True, slots=True)
class OidcEndpoints:
    authorization: str
    token: str


class OidcClient:
    """The authorization-code flow with PKCE. The console is a public client: ``audience`` is its
    client id (an id_token's ``aud`` is the client id), and PKCE replaces a client secret."""

    DISCOVERY_TTL_S = 300.0

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._endpoints: OidcEndpoints | None = None
        self._fetched_at = 0.0

    def endpoints(self) -> OidcEndpoints:
        """From ``{issuer}/.well-known/openid-configuration``, cached for a few minutes (blocking)."""
        with self._lock:
            if self._endpoints is None or time.monotonic() - self._fetched_at > self.DISCOVERY_TTL_S:
                self._endpoints = self._discover()
                self._fetched_at = time.monotonic()
            return self._endpoints

    def _discover(self) -> OidcEndpoints:
        url = f"{self.config.issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            response = httpx.get(url, timeout=5)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise AuthenticationFailed(f"cannot read the identity provider's configuration: {exc}") from exc
        # OpenID Connect Discovery §4.3: the document must name the issuer we trust.
        if str(document.get("issuer", "")).rstrip("/") != self.config.issuer.rstrip("/"):
            raise AuthenticationFailed("the identity provider's configuration names another issuer")
        try:
            return OidcEndpoints(str(document["authorization_endpoint"]), str(document["token_endpoint"]))
        except KeyError as exc:
            raise AuthenticationFailed(f"the identity provider's configuration lacks {exc}") from exc

    def authorization_url(self, redirect_uri: str, state: str, nonce: str, verifier: str) -> str:
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.config.audience,
                "redirect_uri": redirect_uri,
                "scope": "openid email profile",
                "state": state,
                "nonce": nonce,
                "code_challenge": pkce_challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        endpoint = self.endpoints().authorization
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    def exchange(self, code: str, redirect_uri: str, verifier: str) -> str:
        """Trade the code for an id_token (blocking). The token is verified by the caller."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.config.audience,
            "code_verifier": verifier,
        }
        try:
            response = httpx.post(self.endpoints().token, data=form, timeout=10)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise AuthenticationFailed(f"the identity provider's token endpoint failed: {exc}") from exc
        if response.status_code != 200 or not isinstance(body, dict) or "id_token" not in body:
            error = body.get("error") if isinstance(body, dict) else None
            raise AuthenticationFailed(
                f"the identity provider refused the code exchange ({error or response.status_code})"
            )
        return str(body["id_token"])
