"""Is this request from the Bot Connector? The bearer token checked as the Bot Framework requires.

From Microsoft's "Authentication with the Bot Connector API" (Bot Connector → bot):

    1. ``Authorization: Bearer <JWT>``
    2. OpenID metadata (``openid_metadata_url``, by default
       https://login.botframework.com/v1/.well-known/openidconfiguration) → ``jwks_uri`` → keys
    3. the key named by the token's ``kid``; when that key lists ``endorsements``, the activity's
       ``channelId`` must be one of them (else 403, as the article says)
    4. signature with that key, algorithm among ``id_token_signing_alg_values_supported``
    5. ``iss`` = https://api.botframework.com, ``aud`` = the bot's app id, within ``nbf``/``exp``
       with 5 minutes of clock skew
    6. the ``serviceUrl`` claim equals the activity's ``serviceUrl``

Validation is PyJWT's; the Agents SDK's JwtTokenValidator is not used because it fetches from
Microsoft's URLs only. Keys are cached for a day and fetched again when a token names a key the
cache lacks (Microsoft rotates them), at most once a minute for unknown keys so that tokens with
random ``kid`` values cannot make this service hammer the metadata endpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
CLOCK_SKEW_S = 300
KEYS_TTL_S = 24 * 3600
UNKNOWN_KEY_REFETCH_S = 60.0


class TokenRefused(Exception):
    """Why the request is not from the Bot Connector; ``status`` is 401, 403 or 503."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class _Key:
    jwk: jwt.PyJWK
    endorsements: tuple[str, ...] | None


@dataclass(frozen=True)
class _KeySet:
    keys: Mapping[str, _Key]
    algorithms: tuple[str, ...]
    fetched_at: float


class BotFrameworkTokens:
    """Verifies the bearer token of one bot's incoming activities."""

    def __init__(self, *, app_id: str, metadata_url: str, timeout_s: float = 5.0) -> None:
        self.app_id = app_id
        self.metadata_url = metadata_url
        self.timeout = httpx.Timeout(timeout_s)
        self._lock = threading.Lock()
        self._keys: _KeySet | None = None
        self._last_unknown_refetch = float("-inf")

    def verify(
        self, authorization: str | None, *, service_url: str | None, channel_id: str | None
    ) -> dict[str, Any]:
        """The token's claims when it proves the Bot Connector sent this activity; else TokenRefused."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRefused("an Authorization: Bearer token from the Bot Connector is required")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise TokenRefused(f"the bearer token is not a JWT ({exc})") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRefused("the token names no signing key (kid)")
        keys, key = self._key(kid)
        if key is None:
            raise TokenRefused("the token is signed with a key the Bot Framework does not publish")
        if key.endorsements is not None and (channel_id or "") not in key.endorsements:
            raise TokenRefused(f"the signing key does not endorse channel {channel_id!r}", status=403)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.jwk.key,
                algorithms=list(keys.algorithms),
                audience=self.app_id,
                issuer=BOT_FRAMEWORK_ISSUER,
                leeway=CLOCK_SKEW_S,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused("the token is for another bot (audience)") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused("the token was not issued by the Bot Framework (issuer)") from None
        except jwt.InvalidTokenError as exc:
            raise TokenRefused(f"the token does not verify ({type(exc).__name__})") from None
        if not service_url or claims.get("serviceUrl") != service_url:
            raise TokenRefused("the token's serviceUrl claim does not match the activity's serviceUrl")
        return claims

    # ------------------------------------------------------------ keys

    def _key(self, kid: str) -> tuple[_KeySet, _Key | None]:
        with self._lock:
            now = time.monotonic()
            if self._keys is None or now - self._keys.fetched_at > KEYS_TTL_S:
                self._keys = self._fetch(now)
            elif kid not in self._keys.keys and now - self._last_unknown_refetch >= UNKNOWN_KEY_REFETCH_S:
                self._last_unknown_refetch = now  # a rotation: look once more, then wait a minute
                self._keys = self._fetch(now)
            return self._keys, self._keys.keys.get(kid)

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = httpx.get(url, timeout=self.timeout)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TokenRefused(
                f"cannot fetch the Bot Framework {what} to verify the token: {exc}", 503
            ) from None
        if not isinstance(body, dict):
            raise TokenRefused(f"the Bot Framework {what} is not a JSON object", 503)
        return body

    def _fetch(self, now: float) -> _KeySet:
        metadata = self._get_json(self.metadata_url, "OpenID metadata")
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise TokenRefused("the Bot Framework OpenID metadata has no jwks_uri", 503)
        algorithms = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        # never a symmetric or "none" algorithm, whatever a metadata document says
        allowed = tuple(a for a in algorithms if isinstance(a, str) and a[:2] in ("RS", "PS", "ES"))
        keys: dict[str, _Key] = {}
        for entry in self._get_json(jwks_uri, "signing keys").get("keys") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            try:
                jwk = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # a key type this service cannot use: skipped, the others still count
            endorsed = entry.get("endorsements")
            endorsements = (
                tuple(e for e in endorsed if isinstance(e, str)) if isinstance(endorsed, list) else None
            )
            keys[entry["kid"]] = _Key(jwk, endorsements)
        return _KeySet(keys, allowed or ("RS256",), now)
