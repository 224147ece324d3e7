"""Adversaries R (the requester), P (whoever wants a pipeline's credential) and N (another site)
against THREATS.md property 1 — *nobody acts as someone else* — on the console's Tokens page.

The page is where a signed-in person creates, lists and revokes their own API tokens, and where
members of gatehouse-admins manage service principals' tokens (issue 14). Each attack runs against
the real ``gatehouse serve`` over HTTP, signed in through the console's own sign-in form, on SQLite
and PostgreSQL; the database is read with SQL to show that nothing was written. The page is new:
before issue 14 the console had no way to issue tokens at all (the CLI minted any principal's).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.conftest import Report
from tests.security.conftest import Home

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SECRET = re.compile(r'<code class="secret" id="new-token">(gh_[0-9a-f]{12}_[A-Za-z0-9_-]+)</code>')


def csrf_of(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match, page.text
    return html.unescape(match.group(1))


def with_local_signin(home: Home) -> Home:
    """The console's local sign-in, which since issue 15 is on by default only for a sandbox home:
    these tests pick people through it in an ordinary home on loopback, as `console: {local_signin:
    true}` allows for single-machine use."""
    config = home.settings.home / "service.yaml"
    existing = config.read_text(encoding="utf-8") if config.is_file() else ""
    assert "console:" not in existing
    config.write_text(existing + "console: {local_signin: true}\n", encoding="utf-8")
    return home


@contextmanager
def signed_in(base: str, who: str) -> Iterator[httpx.Client]:
    """A cookie-keeping client signed in to the console as ``who`` through the sign-in form."""
    with httpx.Client(base_url=base, timeout=30) as client:
        token = csrf_of(client.get("/console/login"))
        answer = client.post("/console/login/local", data={"csrf_token": token, "principal": who})
        assert answer.status_code == 303, answer.text
        yield client


def create(client: httpx.Client, **fields: str) -> httpx.Response:
    token = csrf_of(client.get("/console/tokens"))
    return client.post("/console/tokens", data={"csrf_token": token, **fields})


def secret_of(answer: httpx.Response) -> str:
    match = SECRET.search(answer.text)
    assert match, answer.text
    return match.group(1)


def token_rows(home: Home) -> list[tuple[object, ...]]:
    return home.sql("SELECT principal_id, created_by, created_via, revoked_at FROM gh_api_tokens ORDER BY id")


def test_a_person_creates_lists_and_revokes_their_own_token_and_the_secret_is_shown_once(
    home_for: Callable[..., Home], serve: Callable[[Home], str]
) -> None:
    home = home_for()
    base = serve(with_local_signin(home))
    with signed_in(base, "alice") as alice:
        made = create(alice, scope="decide", expires="30d", description="laptop scripts")
        assert made.status_code == 200, made.text
        assert made.headers["cache-control"] == "no-store"
        secret = secret_of(made)
        assert "it is shown this once" in made.text
        listing = alice.get("/console/tokens").text
        assert secret not in listing  # never again
        token_id = secret.split("_")[1]
        assert token_id in listing and "laptop scripts" in listing and "by alice via console-local" in listing
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}) as api:
            assert api.get("/v1/gates").status_code == 200  # it authenticates as alice
            token = csrf_of(alice.get("/console/tokens"))
            revoked = alice.post(f"/console/tokens/{token_id}/revoke", data={"csrf_token": token})
            assert revoked.status_code == 303
            assert f"Token {token_id} is revoked" in alice.get("/console/tokens").text
            assert api.get("/v1/gates").status_code == 401
    assert token_rows(home)[0][:3] == ("alice", "alice", "console-local")
    exported = home.run("audit", "export").out
    assert '"issued_by":"alice"' in exported and '"issued_via":"console-local"' in exported
    assert exported.count('"channel":"console"') == 2  # created and revoked, both over the console


def test_forms_without_the_csrf_token_or_from_another_site_change_nothing(
    home_for: Callable[..., Home], serve: Callable[[Home], str], report: Report
) -> None:
    home = home_for()
    base = serve(with_local_signin(home))
    with signed_in(base, "bob") as bob:
        secret = secret_of(create(bob, scope="decide"))
        token_id = secret.split("_")[1]
        token = csrf_of(bob.get("/console/tokens"))
        forged = [
            ("/console/tokens", {"scope": "admin"}, {}),  # no token at all
            ("/console/tokens", {"scope": "admin", "csrf_token": "x" + token[1:]}, {}),
            ("/console/tokens", {"scope": "admin", "csrf_token": token}, {"Origin": "https://evil.example"}),
            (
                "/console/tokens",
                {"scope": "admin", "csrf_token": token},
                {"Referer": "https://evil.example/"},
            ),
            (f"/console/tokens/{token_id}/revoke", {}, {}),
            (f"/console/tokens/{token_id}/revoke", {"csrf_token": token}, {"Origin": "https://evil.example"}),
        ]
        for path, data, headers in forged:
            answer = bob.post(path, data=data, headers=headers)
            assert answer.status_code == 403, (path, data, headers, answer.text)
            assert "nothing was changed" in answer.text
    with httpx.Client(base_url=base, timeout=30) as stranger:  # a cross-site POST carries no session
        answer = stranger.post(
            "/console/tokens", data={"scope": "admin"}, headers={"Origin": "https://evil.example"}
        )
        assert answer.status_code == 403
    assert token_rows(home) == [("bob", "bob", "console-local", None)]  # one token, still active
    home.figure(report, "console token forms without CSRF or from another site", len(forged) + 1)


def test_form_tampering_never_creates_or_revokes_someone_elses_token(
    home_for: Callable[..., Home], serve: Callable[[Home], str], report: Report
) -> None:
    """alice (a requester) edits the form: a token for bob (any spelling), for the pipeline's
    service principal, and the revocation of bob's token; frank, an admin, tries a person's."""
    home = home_for()
    base = serve(with_local_signin(home))
    with signed_in(base, "bob") as bob:
        bobs = secret_of(create(bob, scope="decide")).split("_")[1]
    attempts = 0
    with signed_in(base, "alice") as alice:
        for principal, scope in [
            ("bob", "decide"),
            (" BOB ", "decide"),
            ("Ьob", "admin"),
            ("etl-bot", "admin"),
        ]:
            answer = create(alice, principal=principal, scope=scope)
            attempts += 1
            assert answer.status_code in (403, 422), (principal, answer.text)
            assert "No token was created" in answer.text or "not a principal" in answer.text
        answer = create(alice, principal="etl-bot", scope="request", pipelines="customer_*")
        attempts += 1
        assert answer.status_code == 403 and "only members of gatehouse-admins" in answer.text
        token = csrf_of(alice.get("/console/tokens"))
        refused = alice.post(f"/console/tokens/{bobs}/revoke", data={"csrf_token": token})
        attempts += 1
        assert refused.status_code == 403
        assert f"alice may not revoke token {bobs} of bob" in refused.text
        assert bobs not in alice.get("/console/tokens").text  # nor does she see it
    with signed_in(base, "frank") as frank:
        answer = create(frank, principal="bob", scope="decide")
        attempts += 1
        assert answer.status_code == 403 and "frank may not create a token for bob" in answer.text
    assert token_rows(home) == [("bob", "bob", "console-local", None)]
    home.figure(report, "console form tampering: another's token, a service token by a non-admin", attempts)


def test_an_admin_manages_pipeline_limited_service_tokens(
    home_for: Callable[..., Home], serve: Callable[[Home], str]
) -> None:
    home = home_for()
    base = serve(with_local_signin(home))
    with signed_in(base, "bob") as bob:
        page = bob.get("/console/tokens").text
        assert "Your tokens" in page and "Service tokens" not in page  # not an admin
    with signed_in(base, "frank") as frank:
        assert "Create service token" in frank.get("/console/tokens").text
        made = create(frank, principal="etl-bot", scope="request", pipelines="customer_*, billing_sync")
        assert made.status_code == 200, made.text
        secret = secret_of(made)
        assert "pipelines customer_*, billing_sync" in frank.get("/console/tokens").text
        empty = create(frank, principal="etl-bot", scope="request", pipelines=" , ")
        assert empty.status_code == 200  # no globs at all: no limit, as on the CLI
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as bot:
        request = {"action": "export", "requester": "alice", "datasets": []}
        ok = bot.post(
            "/v1/gates", json={**request, "run": {"orchestrator": "airflow", "pipeline": "customer_x"}}
        )
        assert ok.status_code == 200, ok.text
        other = bot.post(
            "/v1/gates", json={**request, "run": {"orchestrator": "airflow", "pipeline": "hr_sync"}}
        )
        assert other.status_code == 403
    exported = home.run("audit", "export").out
    assert '"pipelines":["customer_*","billing_sync"]' in exported
    assert '"issued_by":"frank"' in exported and '"channel":"console"' in exported


@pytest.mark.parametrize("sandbox", [True, False])
def test_every_console_page_says_when_the_home_is_a_sandbox(
    home_for: Callable[..., Home], serve: Callable[[Home], str], sandbox: bool
) -> None:
    home = home_for(sandbox=sandbox)
    base = serve(with_local_signin(home))
    banner = "identities here are unverified"
    with signed_in(base, "bob") as bob:
        pages = [
            bob.get(path)
            for path in ("/console/", "/console/audit", "/console/tokens", "/console/gates/nope!")
        ]
        with httpx.Client(base_url=base) as anonymous:
            pages.append(anonymous.get("/console/login"))
    for page in pages:
        assert ("SANDBOX" in page.text and banner in page.text) is sandbox, page.url
