"""Adversary R against THREATS.md property 1 through a console session: an OIDC sign-in is good
for a bounded time, and what the person may decide is judged on the directory *at decision time*
(narrowed by the IdP's groups when that claim is configured), never on groups carried in the
cookie since sign-in. An IdP identity no principal is linked to signs in to read and is told what
to configure.

On the code before issue 15: the session cookie was re-issued on every response, so a session in
use never ended; and the IdP's groups at sign-in were kept in the session and *added* to the
directory's, so bob — removed from data-governance in the directory after signing in — still
approved, and anyone the IdP put in a group decided. Real HTTP against the service over a socket,
the IdP's id_tokens signed with the stand-in's RSA key, SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import html
import time
from collections.abc import Callable, Iterator

import pytest

from gate_core.identity import Directory
from gate_core.service import ServiceConfig
from gate_core.service._config import ConsoleConfig
from tests.conftest import Report
from tests.security.conftest import IDENTITY
from tests.service.conftest import Service
from tests.service.test_console import StandInIdp, decide, gate_json, oidc_sign_in, open_gate


@pytest.fixture
def idp() -> Iterator[StandInIdp]:
    provider = StandInIdp()
    provider.thread.start()
    yield provider
    provider.server.shutdown()
    provider.server.server_close()


def backend(service: Service) -> str:
    return "SQLite" if service.settings.database_url.startswith("sqlite") else "PostgreSQL"


def test_groups_are_the_directorys_at_decision_time(
    service_factory: Callable[..., Service], idp: StandInIdp, report: Report
) -> None:
    config = idp.config().model_copy(update={"groups_claim": "groups"})
    service = service_factory(ServiceConfig(sweep_interval_s=0.2, oidc=config))
    idp.claims["groups"] = ["data-governance"]  # the IdP agrees with the directory at sign-in
    gate_id = open_gate(service)
    client, landed = oidc_sign_in(service)
    with contextlib.closing(client):
        assert "Signed in as <strong>Bob (data governance)</strong>" in landed.text
        # then bob leaves data-governance in the directory (the service's identity source now)
        directory = service.gatekeeper.directory
        without = [p.model_copy(update={"groups": frozenset()}) if p.id == "bob" else p for p in directory]
        service.gatekeeper.directory = Directory(without)
        page = decide(client, gate_id, "approve", "still me")
        assert page.status_code == 200
        assert "is not in an approver group of this gate" in html.unescape(page.text)
    assert gate_json(service, gate_id)["decisions"] == []
    report(f"{IDENTITY}: console session's groups from sign-in ({backend(service)})", "1 tried, 0 accepted")


def test_the_idps_groups_at_sign_in_never_add_a_group(
    service_factory: Callable[..., Service], idp: StandInIdp, report: Report
) -> None:
    config = idp.config().model_copy(update={"groups_claim": "groups"})
    service = service_factory(ServiceConfig(sweep_interval_s=0.2, oidc=config))
    idp.claims.update(sub="u-dave", email="dave@example.com", name="Dave", groups=["data-governance"])
    gate_id = open_gate(service)
    client, _ = oidc_sign_in(service)
    with contextlib.closing(client):
        page = decide(client, gate_id, "approve")
        assert "dave is not in an approver group of this gate" in html.unescape(page.text)
    assert gate_json(service, gate_id)["decisions"] == []
    report(f"{IDENTITY}: console IdP groups adding a group ({backend(service)})", "1 tried, 0 accepted")


def test_an_oidc_session_ends_after_its_lifetime_however_busy(
    service_factory: Callable[..., Service], idp: StandInIdp, report: Report
) -> None:
    service = service_factory(
        ServiceConfig(sweep_interval_s=0.2, oidc=idp.config(), console=ConsoleConfig(session_lifetime=3))
    )
    gate_id = open_gate(service)
    client, landed = oidc_sign_in(service)
    with contextlib.closing(client):
        assert "Signed in as" in landed.text
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:  # in use all the time: every response re-issues the cookie
            client.get("/console/")
            time.sleep(0.25)
        expired = client.get(f"/console/gates/{gate_id}", follow_redirects=False)
        assert expired.status_code == 303 and "/console/login" in expired.headers["location"]
        token = "csrf-from-an-old-page"
        late = client.post(
            f"/console/gates/{gate_id}/decide",
            data={"csrf_token": token, "verdict": "approve"},
            follow_redirects=False,
        )
        assert late.status_code == 403  # a stale session has no CSRF token left to match
    assert gate_json(service, gate_id)["decisions"] == []
    report(f"{IDENTITY}: console session used past its lifetime ({backend(service)})", "2 tried, 0 accepted")


def test_an_unlinked_idp_person_signs_in_to_read_and_is_told_what_to_configure(
    service_factory: Callable[..., Service], idp: StandInIdp, report: Report
) -> None:
    service = service_factory(ServiceConfig(sweep_interval_s=0.2, oidc=idp.config()))
    # mallory's IdP account claims bob's mailbox, unverified
    idp.claims.update(sub="u-mallory", name="Mallory", email_verified=False)
    gate_id = open_gate(service)
    client, landed = oidc_sign_in(service)
    with contextlib.closing(client):
        text = html.unescape(landed.text)
        assert landed.status_code == 200
        assert "Signed in as <strong>Mallory</strong>" in text and "not linked: read only" in text
        assert "You may read, not decide: IdP identity u-mallory" in text and "idp_subjects" in text
        page = html.unescape(client.get(f"/console/gates/{gate_id}").text)
        assert "is linked to no principal" in page  # why they may not decide, before they try
        refused = html.unescape(decide(client, gate_id, "approve").text)
        assert "Refused: IdP identity u-mallory" in refused and "nothing was recorded" in refused
    assert gate_json(service, gate_id)["decisions"] == []
    report(
        f"{IDENTITY}: console sign-in with a colleague's unverified e-mail ({backend(service)})",
        "1 tried, 0 accepted",
    )
