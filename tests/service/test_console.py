"""The web console over real HTTP (httpx against the in-thread server), on SQLite and PostgreSQL.

Covers the three sign-in modes (local only when enabled, OIDC with PKCE against a stand-in IdP,
the proxy header only from trusted IPs), CSRF on every form, decisions through the core with the
console's ``via``, the requester's refusal, filters, 404s, escaping and the audit page.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import text

from gate_core.service import ServiceConfig
from gate_core.service._config import OidcConfig, ProxyConfig
from tests.service.conftest import Service, free_port

PII_EXPORT = {
    "action": "export",
    "target": "s3://exports/customers.csv",
    "datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["pii"]}],
    "requester": "alice",
    "reason": "quarterly report",
}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# ---------------------------------------------------------------- helpers


def browser(service: Service, **kwargs: Any) -> httpx.Client:
    """A cookie-keeping client that behaves like a browser on the console."""
    return httpx.Client(base_url=service.base_url, timeout=30, **kwargs)


def csrf_of(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match, page.text
    return html.unescape(match.group(1))


def sign_in(client: httpx.Client, who: str) -> None:
    token = csrf_of(client.get("/console/login"))
    response = client.post("/console/login/local", data={"csrf_token": token, "principal": who})
    assert response.status_code == 303, response.text
    assert "Signed in as" in client.get("/console/").text


def open_gate(service: Service, **overrides: Any) -> str:
    with service.client("bot") as bot:
        response = bot.post("/v1/gates", json={**PII_EXPORT, **overrides})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def gate_json(service: Service, gate_id: str) -> dict[str, Any]:
    with service.client("bob") as bob:
        response = bob.get(f"/v1/gates/{gate_id}")
    assert response.status_code == 200
    return dict(response.json())


def audit_events(service: Service, gate_id: str) -> list[dict[str, Any]]:
    with service.client("admin") as admin:
        lines = admin.get("/v1/audit/export").text.splitlines()
    return [r for r in map(json.loads, lines) if r["gate"] == gate_id]


def decide(
    client: httpx.Client, gate_id: str, verdict: str, comment: str = "", **extra: str
) -> httpx.Response:
    token = csrf_of(client.get(f"/console/gates/{gate_id}"))
    data = {"csrf_token": token, "verdict": verdict, "comment": comment, **extra}
    return client.post(f"/console/gates/{gate_id}/decide", data=data)


@pytest.fixture
def local(service_factory: Callable[..., Service]) -> Service:
    return service_factory(local_signin=True)


# ---------------------------------------------------------------- routing and local sign-in


def test_root_and_console_redirect_to_the_sign_in_page(local: Service) -> None:
    with browser(local) as client:
        assert client.get("/").headers["location"] == "/console/"
        assert client.get("/console").headers["location"] == "/console/"
        response = client.get("/console/")
        assert response.status_code == 303
        assert response.headers["location"] == "/console/login?next=%2Fconsole%2F"


def test_local_signin_is_disabled_by_default(service: Service) -> None:
    with browser(service) as client:
        page = client.get("/console/login")
        assert page.status_code == 200
        assert "Local sign-in is disabled" in page.text
        assert 'name="principal"' not in page.text
        refused = client.post("/console/login/local", data={"csrf_token": "x", "principal": "bob"})
        assert refused.status_code == 403
        assert "Local sign-in is disabled" in refused.text
        assert client.get("/console/").status_code == 303  # still not signed in


def test_local_signin_lists_people_not_services_and_sets_a_hardened_cookie(local: Service) -> None:
    with browser(local) as client:
        page = client.get("/console/login")
        assert "single-machine" in page.text.lower() and "OpenID Connect" in page.text
        offered = set(re.findall(r'name="principal" value="([^"]+)"', page.text))
        assert offered == {"alice", "bob", "carol", "dave", "erin", "frank"}  # frank joined with issue 14
        token = csrf_of(page)
        refused = client.post("/console/login/local", data={"csrf_token": token, "principal": "etl-bot"})
        assert refused.status_code == 403
        assert "services cannot" in refused.text
        signed = client.post(
            "/console/login/local", data={"csrf_token": token, "principal": "bob", "next": "//evil.example/"}
        )
        assert signed.status_code == 303
        assert signed.headers["location"] == "/console/"  # never an open redirect
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/console" in cookie
        home = client.get("/console/")
        assert "Signed in as <strong>Bob (data governance)</strong>" in home.text
        assert "via console-local" in home.text
        assert home.headers["content-security-policy"].startswith("default-src 'none'")


def test_sign_out_needs_the_token_and_ends_the_session(local: Service) -> None:
    with browser(local) as client:
        sign_in(client, "bob")
        assert client.post("/console/logout", data={}).status_code == 403
        assert client.get("/console/").status_code == 200
        token = csrf_of(client.get("/console/"))
        assert client.post("/console/logout", data={"csrf_token": token}).status_code == 303
        assert client.get("/console/").status_code == 303


# ---------------------------------------------------------------- CSRF and deciding


def test_csrf_missing_wrong_or_cross_site_is_refused_and_changes_nothing(local: Service) -> None:
    gate_id = open_gate(local)
    with browser(local) as client:
        sign_in(client, "bob")
        token = csrf_of(client.get(f"/console/gates/{gate_id}"))
        url = f"/console/gates/{gate_id}/decide"
        attempts = [
            ({"verdict": "approve"}, {}),
            ({"verdict": "approve", "csrf_token": "forged" + token[6:]}, {}),
            ({"verdict": "approve", "csrf_token": token}, {"Origin": "https://evil.example"}),
            ({"verdict": "approve", "csrf_token": token}, {"Referer": "https://evil.example/page"}),
        ]
        for data, headers in attempts:
            refused = client.post(url, data=data, headers=headers)
            assert refused.status_code == 403, (data, headers)
            assert "nothing was changed" in refused.text
    assert gate_json(local, gate_id)["status"] == "PENDING"
    assert not [e for e in audit_events(local, gate_id) if e["event"].startswith("decision.")]


def test_approving_in_the_console_records_via_console_local(local: Service) -> None:
    gate_id = open_gate(local)
    with browser(local) as client:
        sign_in(client, "bob")
        page = client.get(f"/console/gates/{gate_id}")
        assert "You may not decide" not in page.text
        done = decide(client, gate_id, "approve", "looks fine", headers={"Origin": local.base_url})
        assert done.status_code == 303
        assert done.headers["location"] == f"/console/gates/{gate_id}"
        after = client.get(f"/console/gates/{gate_id}")
        assert "Recorded: the gate is now APPROVED." in after.text
        assert "looks fine" in after.text
    gate = gate_json(local, gate_id)
    assert gate["status"] == "APPROVED"
    assert gate["decisions"][0]["via"] == "console-local"
    recorded = [e for e in audit_events(local, gate_id) if e["event"] == "decision.recorded"]
    assert recorded[0]["actor"] == {"principal_id": "bob", "via": "console-local", "email": "bob@example.com"}


def test_the_requester_is_told_why_and_the_core_refuses(local: Service) -> None:
    gate_id = open_gate(local)
    with browser(local) as client:
        sign_in(client, "alice")
        page = client.get(f"/console/gates/{gate_id}")
        assert "you requested this gate; someone else must decide it" in page.text
        decide(client, gate_id, "approve", "mine")
        after = client.get(f"/console/gates/{gate_id}")
        assert "Refused: alice: you requested this gate; someone else must decide it" in after.text
        assert 'role="alert"' in after.text
    assert gate_json(local, gate_id)["status"] == "PENDING"
    refused = [e for e in audit_events(local, gate_id) if e["event"] == "decision.refused"]
    assert refused[0]["actor"]["via"] == "console-local"


def test_a_rejection_needs_a_reason(local: Service) -> None:
    gate_id = open_gate(local)
    with browser(local) as client:
        sign_in(client, "carol")
        decide(client, gate_id, "reject", "   ")
        assert "A rejection needs a reason" in client.get(f"/console/gates/{gate_id}").text
        assert gate_json(local, gate_id)["status"] == "PENDING"
        decide(client, gate_id, "reject", "not this quarter")
        assert "now REJECTED" in client.get(f"/console/gates/{gate_id}").text
    assert gate_json(local, gate_id)["decisions"][0]["comment"] == "not this quarter"


def test_a_second_click_is_answered_already_decided(local: Service) -> None:
    gate_id = open_gate(local)
    with browser(local) as bob, browser(local) as carol:
        sign_in(bob, "bob")
        sign_in(carol, "carol")
        carol_token = csrf_of(carol.get(f"/console/gates/{gate_id}"))  # carol's page, still PENDING
        decide(bob, gate_id, "approve")
        carol.post(f"/console/gates/{gate_id}/decide", data={"csrf_token": carol_token, "verdict": "approve"})
        assert "Refused: already approved by bob" in carol.get(f"/console/gates/{gate_id}").text


# ---------------------------------------------------------------- pages


def test_unknown_gate_and_page_are_html_404s(local: Service) -> None:
    with browser(local) as client:
        sign_in(client, "bob")
        for path in ("/console/gates/gDOESNOTEXIST", "/console/gates/%3Cscript%3E", "/console/nope"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"].startswith("text/html")
            assert "<h1>Not found</h1>" in response.text
        assert "no gate with id &#39;gDOESNOTEXIST&#39;" in client.get("/console/gates/gDOESNOTEXIST").text


def test_pending_list_shows_the_context_and_filters_work(local: Service) -> None:
    pii = open_gate(local)
    redeploy = open_gate(local, action="redeploy", target="models/churn", environment="prod", datasets=[])
    role = open_gate(local, action="role_escalation", target="role:admin", datasets=[])
    with local.client("bob") as bob:
        bob.post(f"/v1/gates/{role}/decisions", json={"decision": "approve"})
    with browser(local) as client:
        sign_in(client, "bob")

        def listed(**params: str) -> set[str]:
            response = client.get("/console/", params=params)
            assert response.status_code == 200
            return set(re.findall(r'href="/console/gates/(g[0-9A-Z]+)"', response.text))

        home = client.get("/console/")
        assert "<h1>Pending gates</h1>" in home.text
        assert '<span class="tag tag-pii">pii</span>' in home.text
        assert "pii-export" in home.text and "prod-redeploy" in home.text
        assert "0/1" in home.text and "0/2" in home.text
        assert re.search(r"<td>in (3h 59m|4h 0m)</td>", home.text)
        assert listed() == {pii, redeploy}
        assert listed(status="APPROVED") == {role}
        assert listed(status="any") == {pii, redeploy, role}
        assert listed(status="any", action="redeploy") == {redeploy}
        assert listed(dataset="warehouse/customers") == {pii}
        assert listed(dataset="warehouse/nothing") == set()
        assert client.get("/console/", params={"status": "bogus"}).status_code == 400


def test_the_gate_page_shows_everything_and_escapes_it(local: Service) -> None:
    hostile = '<script>alert("x")</script>'
    gate_id = open_gate(
        local,
        reason=hostile,
        target='"><img src=x onerror=alert(1)>',
        parameters={"rows": 10, "api_token": "s3cr3t"},
        run={"orchestrator": "airflow", "pipeline": "exports", "run_id": "r1", "url": "javascript:alert(1)"},
    )
    linked = open_gate(local, run={"orchestrator": "airflow", "run_id": "r2", "url": "https://airflow/r2"})
    with browser(local) as client:
        sign_in(client, "bob")
        page = client.get(f"/console/gates/{gate_id}").text
        assert hostile not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
        assert "javascript:" not in page
        assert "s3cr3t" not in page and "[redacted]" in page
        assert "Any export that touches personal data" in page or "pii-export" in page
        assert "0/1 distinct people from data-governance" in page
        assert (
            '<a href="https://airflow/r2" rel="noopener noreferrer">r2</a>'
            in client.get(f"/console/gates/{linked}").text
        )


def test_break_glass_decisions_are_flagged(local: Service) -> None:
    gate_id = open_gate(local, action="redeploy", target="models/churn", environment="prod", datasets=[])
    with browser(local) as client:
        sign_in(client, "erin")
        decide(client, gate_id, "approve", "pager says go")
        page = client.get(f"/console/gates/{gate_id}").text
        assert "BREAK-GLASS" in page and 'class="break-glass"' in page
        audit = client.get("/console/audit", params={"gate": gate_id}).text
        assert "BREAK-GLASS approval by erin alone" in audit


def test_audit_page_verifies_lists_newest_first_filters_and_pages(local: Service) -> None:
    gate_ids = [open_gate(local, idempotency_key=f"k{i}") for i in range(26)]
    with browser(local) as client:
        sign_in(client, "bob")
        decide(client, gate_ids[0], "approve", "ok")
        size, _ = local.gatekeeper.store.audit_head()
        page = client.get("/console/audit").text
        assert f"<strong>Intact</strong> — {size} entries" in page
        seqs = [int(s) for s in re.findall(r"<tr(?: class=\"flagged\")?>\s*<td>(\d+)</td>", page)]
        assert seqs == list(range(size, size - 50, -1))
        assert "gate.approved" in page and "console-local" in page
        older = client.get("/console/audit", params={"page": 1}).text
        older_seqs = [int(s) for s in re.findall(r"<tr(?: class=\"flagged\")?>\s*<td>(\d+)</td>", older)]
        assert older_seqs[0] == size - 50
        only = client.get("/console/audit", params={"event": "decision.recorded"}).text
        assert only.count("<code>decision.recorded</code>") == 1
        one_gate = client.get("/console/audit", params={"gate": gate_ids[5]}).text
        assert one_gate.count(f'href="/console/gates/{gate_ids[5]}"') == 2  # requested + evaluated
        assert client.get("/console/audit", params={"event": "nope"}).status_code == 400


def test_audit_page_names_the_first_tampered_entry(local: Service) -> None:
    gate_id = open_gate(local)
    seq = next(e.seq for e in local.gatekeeper.store.audit_entries() if e.gate_id == gate_id)
    with local.gatekeeper.store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER gh_audit_log_no_update"))
        conn.execute(
            text("UPDATE gh_audit_log SET body = replace(body, 'alice', 'mallory') WHERE seq = :s"),
            {"s": seq},
        )
    with browser(local) as client:
        sign_in(client, "bob")
        page = client.get("/console/audit").text
        assert f"TAMPERED at entry {seq}</strong> — content does not match its hash (entry edited)" in page


# ---------------------------------------------------------------- OIDC with a stand-in IdP


class StandInIdp:
    """Just enough of an OpenID Provider: discovery, an authorize endpoint that signs the user in
    at once and redirects back with a code, a token endpoint that checks PKCE and returns an RS256
    id_token, and the JWKS of its key. ``audience`` / ``sign_with`` / ``nonce`` let a test break it."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.audience = "gatehouse-console"
        self.sign_with: Any = self.key
        self.nonce: str | None = None
        self.claims: dict[str, Any] = {
            "sub": "u-bob",
            "email": "bob@example.com",
            "email_verified": True,
            "name": "Bob B.",
        }
        self.codes: dict[str, dict[str, str]] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def config(self) -> OidcConfig:
        return OidcConfig(issuer=self.issuer, audience="gatehouse-console", jwks_url=f"{self.issuer}/jwks")

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims = {
            **self.claims,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + 300,
            "nonce": self.nonce if self.nonce is not None else nonce,
        }
        return jwt.encode(claims, self.sign_with, algorithm="RS256", headers={"kid": "k1"})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/.well-known/openid-configuration":
                    self._json(
                        200,
                        {
                            "issuer": idp.issuer,
                            "authorization_endpoint": f"{idp.issuer}/authorize",
                            "token_endpoint": f"{idp.issuer}/token",
                            "jwks_uri": f"{idp.issuer}/jwks",
                        },
                    )
                elif url.path == "/jwks":
                    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(idp.key.public_key(), as_dict=True)
                    self._json(200, {"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]})
                elif url.path == "/authorize":
                    assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
                    code = secrets.token_urlsafe(16)
                    idp.codes[code] = query
                    self.send_response(302)
                    target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
                    self.send_header("Location", target)
                    self.end_headers()
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                asked = idp.codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
                if (
                    asked is None
                    or form.get("grant_type") != "authorization_code"
                    or form.get("redirect_uri") != asked["redirect_uri"]
                    or form.get("client_id") != asked["client_id"]
                    or challenge.decode() != asked["code_challenge"]
                ):
                    self._json(400, {"error": "invalid_grant"})
                    return
                self._json(200, {"id_token": idp.id_token(asked["nonce"]), "token_type": "Bearer"})

        return Handler


@pytest.fixture
def idp() -> Iterator[StandInIdp]:
    provider = StandInIdp()
    provider.thread.start()
    yield provider
    provider.server.shutdown()
    provider.server.server_close()


@pytest.fixture
def oidc_service(service_factory: Callable[..., Service], idp: StandInIdp) -> Service:
    return service_factory(ServiceConfig(sweep_interval_s=0.2, oidc=idp.config()))


def oidc_sign_in(service: Service) -> tuple[httpx.Client, httpx.Response]:
    client = browser(service, follow_redirects=True)
    landing = client.get("/console/login")
    assert "Sign in with your identity provider" in landing.text
    assert "Local sign-in is disabled" in landing.text
    return client, client.get("/console/login/oidc", params={"next": "/console/audit"})


def test_oidc_sign_in_with_pkce_and_nonce(oidc_service: Service, idp: StandInIdp) -> None:
    idp.claims["groups"] = ["finance"]
    gate_id = open_gate(oidc_service)
    client, landed = oidc_sign_in(oidc_service)
    with contextlib.closing(client):
        assert landed.status_code == 200
        assert landed.url.path == "/console/audit"
        assert "Signed in as <strong>Bob (data governance)</strong>" in landed.text
        assert "via oidc" in landed.text
        decide(client, gate_id, "approve", "via sso")
    gate = gate_json(oidc_service, gate_id)
    assert gate["status"] == "APPROVED"
    assert gate["decisions"][0]["via"] == "oidc"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("audience", "Audience doesn"),
        ("signature", "Signature verification failed"),
        ("nonce", "nonce does not match"),
    ],
)
def test_oidc_refuses_a_bad_id_token(
    oidc_service: Service, idp: StandInIdp, breakage: str, message: str
) -> None:
    if breakage == "audience":
        idp.audience = "some-other-app"
    elif breakage == "signature":
        idp.sign_with = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        idp.nonce = "replayed-from-another-sign-in"
    client, landed = oidc_sign_in(oidc_service)
    with contextlib.closing(client):
        assert landed.status_code == 401
        assert message in html.unescape(landed.text)
        assert "Signed in as" not in landed.text
        assert client.get("/console/", follow_redirects=False).status_code == 303


def test_oidc_callback_for_another_browser_is_refused(oidc_service: Service) -> None:
    with browser(oidc_service) as client:
        response = client.get("/console/oidc/callback", params={"code": "stolen", "state": "guess"})
        assert response.status_code == 401
        assert "does not belong to this browser" in response.text


def test_local_signin_is_not_offered_next_to_oidc_unless_enabled(
    service_factory: Callable[..., Service], idp: StandInIdp
) -> None:
    service = service_factory(ServiceConfig(oidc=idp.config()), local_signin=True)
    with browser(service) as client:
        page = client.get("/console/login").text
        assert "Sign in with your identity provider" in page and 'value="bob"' in page


# ---------------------------------------------------------------- identity-aware proxy


def proxied(service_factory: Callable[..., Service], trusted: tuple[str, ...]) -> Service:
    proxy = ProxyConfig(user_header="X-Forwarded-Email", trusted_ips=trusted)
    return service_factory(ServiceConfig(sweep_interval_s=0.2, proxy=proxy))


def test_proxy_header_from_a_trusted_ip_signs_in(service_factory: Callable[..., Service]) -> None:
    service = proxied(service_factory, ("127.0.0.1",))
    gate_id = open_gate(service)
    with browser(service, headers={"X-Forwarded-Email": "bob@example.com"}) as client:
        home = client.get("/console/")
        assert home.status_code == 200
        assert "via proxy-header" in home.text and "Sign out" not in home.text
        assert decide(client, gate_id, "approve").status_code == 303
    assert gate_json(service, gate_id)["decisions"][0]["via"] == "proxy-header"
    with browser(service, headers={"X-Forwarded-Email": "etl-bot@service.example.com"}) as bot:
        assert bot.get("/console/").status_code == 403


def test_proxy_header_from_an_untrusted_source_is_refused(service_factory: Callable[..., Service]) -> None:
    service = proxied(service_factory, ("10.9.9.9",))  # the test client is 127.0.0.1: not the proxy
    with browser(service, headers={"X-Forwarded-Email": "bob@example.com"}) as client:
        refused = client.get("/console/")
        assert refused.status_code == 401
        assert "only trusted from the configured proxy" in refused.text
        assert "Signed in as" not in refused.text
        assert "set-cookie" not in refused.headers or "pid" not in refused.headers["set-cookie"]
    with browser(service) as client:
        assert client.get("/console/").status_code == 303  # and without the header: sign in first
