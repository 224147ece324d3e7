"""A local identity provider, built at the wire: just enough of an OpenID Provider for Gatehouse.

    GET  /.well-known/openid-configuration   discovery (OpenID Connect Discovery 1.0 §3)
    GET  /jwks                               its RSA signing key (RFC 7517)
    POST /device/authorize                   device authorization (RFC 8628 §3.1-3.2)
    POST /token                              device_code grant: ``authorization_pending`` until the
                                             person "approves in the browser" (``pending_polls``),
                                             then an access token; refresh_token grant (RFC 6749 §6)

Tokens are RS256 JWTs signed with PyJWT and the stand-in's own key. ``sign`` signs any claims by
hand, for the attacks; ``person`` is who approves the next device login (as if they had typed the
user code into the IdP's page). Everything it was sent is kept in ``calls`` for assertions.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

API_AUDIENCE = "gatehouse-api"
CLI_CLIENT_ID = "gatehouse-cli"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class DeviceLogin:
    client_id: str
    scope: str
    user_code: str
    polls: int = 0
    last_poll: float = 0.0


@dataclass
class StandInIdp:
    """Start with ``start()``; ``issuer`` is its URL (no trailing slash)."""

    pending_polls: int = 2
    person: dict[str, Any] = field(default_factory=lambda: {"sub": "u-bob"})
    access_token_lifetime_s: int = 300
    key: Any = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    devices: dict[str, DeviceLogin] = field(default_factory=dict)
    refresh_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)

    def start(self) -> StandInIdp:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    def service_yaml(self, **extra: Any) -> dict[str, Any]:
        """The ``oidc:`` block of a service.yaml that trusts this IdP."""
        return {
            "issuer": self.issuer,
            "audience": "gatehouse-console",
            "api_audience": API_AUDIENCE,
            "cli_client_id": CLI_CLIENT_ID,
            "jwks_url": self.jwks_url,
            **extra,
        }

    def sign(self, key: Any = None, *, lifetime_s: int | None = None, **claims: Any) -> str:
        """An access token as this IdP issues them (iss, aud, iat, exp), with ``claims`` on top."""
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": API_AUDIENCE,
            "iat": now,
            "exp": now + (lifetime_s if lifetime_s is not None else self.access_token_lifetime_s),
            **claims,
        }
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": "k1"})

    def _tokens(self, person: dict[str, Any]) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(24)
        self.refresh_tokens[refresh] = dict(person)
        return {
            "access_token": self.sign(**person),
            "token_type": "Bearer",
            "expires_in": self.access_token_lifetime_s,
            "refresh_token": refresh,
            "scope": "openid email profile",
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def _json(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                idp.calls.append(("GET " + self.path, {}))
                if self.path == "/.well-known/openid-configuration":
                    self._json(
                        200,
                        {
                            "issuer": idp.issuer,
                            "authorization_endpoint": f"{idp.issuer}/authorize",
                            "token_endpoint": f"{idp.issuer}/token",
                            "device_authorization_endpoint": f"{idp.issuer}/device/authorize",
                            "jwks_uri": idp.jwks_url,
                            "grant_types_supported": ["authorization_code", DEVICE_GRANT, "refresh_token"],
                            "token_endpoint_auth_methods_supported": ["none"],
                        },
                    )
                elif self.path == "/jwks":
                    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(idp.key.public_key(), as_dict=True)
                    self._json(200, {"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]})
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                idp.calls.append(("POST " + self.path, form))
                if self.path == "/device/authorize":
                    self._device_authorize(form)
                elif self.path == "/token":
                    self._token(form)
                else:
                    self._json(404, {"error": "not_found"})

            def _device_authorize(self, form: dict[str, str]) -> None:
                if form.get("client_id") != CLI_CLIENT_ID:
                    self._json(401, {"error": "invalid_client"})
                    return
                device_code = secrets.token_urlsafe(32)
                user_code = f"{secrets.randbelow(10**4):04d}-{secrets.randbelow(10**4):04d}"
                idp.devices[device_code] = DeviceLogin(form["client_id"], form.get("scope", ""), user_code)
                self._json(
                    200,
                    {
                        "device_code": device_code,
                        "user_code": user_code,
                        "verification_uri": f"{idp.issuer}/activate",
                        "verification_uri_complete": f"{idp.issuer}/activate?user_code={user_code}",
                        "expires_in": 600,
                        "interval": 1,
                    },
                )

            def _token(self, form: dict[str, str]) -> None:
                grant = form.get("grant_type")
                if grant == DEVICE_GRANT:
                    login = idp.devices.get(form.get("device_code", ""))
                    if login is None or form.get("client_id") != login.client_id:
                        self._json(400, {"error": "invalid_grant"})
                        return
                    now = time.monotonic()
                    if login.last_poll and now - login.last_poll < 0.9:  # RFC 8628 §3.5: 'interval'
                        login.last_poll = now
                        self._json(400, {"error": "slow_down"})
                        return
                    login.last_poll = now
                    login.polls += 1
                    if login.polls <= idp.pending_polls:
                        self._json(400, {"error": "authorization_pending"})
                        return
                    del idp.devices[form["device_code"]]  # a device code is good for one token
                    self._json(200, idp._tokens(idp.person))
                elif grant == "refresh_token":
                    person = idp.refresh_tokens.pop(form.get("refresh_token", ""), None)
                    if person is None:
                        self._json(400, {"error": "invalid_grant"})
                        return
                    self._json(200, idp._tokens(person))
                else:
                    self._json(400, {"error": "unsupported_grant_type"})

        return Handler
