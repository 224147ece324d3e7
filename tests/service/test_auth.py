"""OIDC bearer tokens and the identity-aware-proxy header on the REST API.

A local HTTP server plays the identity provider's JWKS endpoint (the only part of an IdP a
resource server talks to); tokens are real RS256 JWTs signed with a key it publishes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gate_core import Event
from gate_core.service import ServiceConfig
from gate_core.service._config import OidcConfig, ProxyConfig
from tests.service.conftest import Service
from tests.service.test_api import open_gate

ISSUER = "https://idp.example.test/"
AUDIENCE = "gatehouse"


class Jwks:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        body = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    idp = Jwks()
    yield idp
    idp.server.shutdown()


@pytest.fixture
def oidc_service(service_factory: Callable[..., Service], jwks: Jwks) -> Service:
    return service_factory(
        ServiceConfig(oidc=OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks.url))
    )


def decide_as(service: Service, token: str, gate_id: str) -> httpx.Response:
    return httpx.post(
        f"{service.base_url}/v1/gates/{gate_id}/decisions",
        json={"decision": "approve"},
        headers={"Authorization": f"Bearer {token}"},
    )


def test_an_unlinked_oidc_person_reads_and_never_decides(oidc_service: Service, jwks: Jwks) -> None:
    gate_id = open_gate(oidc_service)["id"]
    token = jwks.token(
        sub="u-grace", email="grace@example.com", email_verified=True, groups=["data-governance"]
    )
    headers = {"Authorization": f"Bearer {token}"}
    me = httpx.get(f"{oidc_service.base_url}/v1/me", headers=headers).json()
    assert (me["principal_id"], me["via"], me["groups"], me["scope"], me["linked"]) == (
        "oidc:u-grace",
        "oidc",
        [],
        "read",
        False,
    )
    assert "grace@example.com is in no directory entry" in me["note"]
    assert httpx.get(f"{oidc_service.base_url}/v1/gates/{gate_id}", headers=headers).status_code == 200
    response = decide_as(oidc_service, token, gate_id)
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert "is linked to no principal" in response.json()["detail"]
    assert oidc_service.gatekeeper.get(gate_id).decisions == ()


def test_a_verified_email_decides_and_the_audit_names_the_subject(oidc_service: Service, jwks: Jwks) -> None:
    gate_id = open_gate(oidc_service)["id"]
    token = jwks.token(sub="u-bob", email="bob@example.com", email_verified=True)
    response = decide_as(oidc_service, token, gate_id)
    assert response.status_code == 200, response.text
    assert response.json()["decisions"][0]["via"] == "oidc"
    recorded = [
        e.decoded()
        for e in oidc_service.gatekeeper.store.audit_entries()
        if e.event == Event.DECISION_RECORDED
    ]
    assert recorded[-1]["actor"] == {
        "principal_id": "bob",
        "via": "oidc",
        "email": "bob@example.com",
        "issuer": ISSUER.rstrip("/"),
        "subject": "u-bob",
    }


def test_oidc_requester_is_refused_by_email(oidc_service: Service, jwks: Jwks) -> None:
    gate_id = open_gate(oidc_service)["id"]  # requester alice@example.com
    token = jwks.token(sub="someone-else", email="Alice@Example.com", email_verified=True)
    response = decide_as(oidc_service, token, gate_id)
    assert (response.status_code, response.json()["code"]) == (403, "self_approval")


def test_oidc_token_groups_never_add_to_the_directory(oidc_service: Service, jwks: Jwks) -> None:
    gate_id = open_gate(oidc_service)["id"]
    token = jwks.token(sub="d", email="dave@example.com", email_verified=True, groups=["data-governance"])
    response = decide_as(oidc_service, token, gate_id)  # dave: ml-leads only
    assert (response.status_code, response.json()["code"]) == (403, "not_an_approver")


@pytest.mark.parametrize(
    "forge",
    [
        lambda j: j.token(sub="x", email="x@example.com", groups=["data-governance"], aud="someone-else"),
        lambda j: j.token(
            sub="x", email="x@example.com", groups=["data-governance"], iss="https://evil.test/"
        ),
        lambda j: j.token(
            sub="x", email="x@example.com", groups=["data-governance"], exp=int(time.time()) - 60
        ),
        lambda j: j.token(
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            sub="x",
            groups=["data-governance"],
        ),
        lambda j: jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
            "a-shared-secret-of-at-least-32-bytes!!",
            algorithm="HS256",
            headers={"kid": "k1"},
        ),
        lambda j: j.token(email="x@example.com", groups=["data-governance"]),  # no sub
    ],
    ids=["audience", "issuer", "expired", "foreign-key", "hs256-confusion", "no-sub"],
)
def test_bad_oidc_tokens_are_401_and_change_nothing(
    oidc_service: Service, jwks: Jwks, forge: Callable[[Jwks], str]
) -> None:
    gate_id = open_gate(oidc_service)["id"]
    response = decide_as(oidc_service, forge(jwks), gate_id)
    assert response.status_code == 401
    assert oidc_service.gatekeeper.get(gate_id).decisions == ()


def test_proxy_header_is_trusted_only_when_configured_and_from_the_proxy(
    service_factory: Callable[..., Service],
) -> None:
    trusted = service_factory(
        ServiceConfig(proxy=ProxyConfig(user_header="X-Forwarded-Email", trusted_ips=("127.0.0.1",)))
    )
    gate_id = open_gate(trusted)["id"]
    ok = httpx.post(
        f"{trusted.base_url}/v1/gates/{gate_id}/decisions",
        json={"decision": "approve"},
        headers={"X-Forwarded-Email": "bob@example.com"},
    )
    assert ok.status_code == 200
    assert ok.json()["decisions"][0]["via"] == "proxy-header"

    untrusted = service_factory(
        ServiceConfig(proxy=ProxyConfig(user_header="X-Forwarded-Email", trusted_ips=("10.9.9.9",)))
    )
    other = open_gate(untrusted, reason="second")["id"]
    spoofed = httpx.post(
        f"{untrusted.base_url}/v1/gates/{other}/decisions",
        json={"decision": "approve"},
        headers={"X-Forwarded-Email": "bob@example.com"},
    )
    assert spoofed.status_code == 401

    off = service_factory()
    third = open_gate(off, reason="third")["id"]
    ignored = httpx.post(
        f"{off.base_url}/v1/gates/{third}/decisions",
        json={"decision": "approve"},
        headers={"X-Forwarded-Email": "bob@example.com"},
    )
    assert ignored.status_code == 401  # off by default: the header is just a header
