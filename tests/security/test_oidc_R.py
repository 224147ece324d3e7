"""Adversary R against THREATS.md property 1 through the IdP: an identity token proves an IdP
subject, and only the directory's link (issuer + ``sub``) or an e-mail *the IdP verified* names a
principal. An IdP identity linked to nobody may read, never decide, and is told what to configure.

Issue 15, attack 1 ("OIDC links by e-mail only"), against the real ``gatehouse serve`` over a
socket, with access tokens signed by hand (PyJWT, the stand-in IdP's RSA key), on SQLite and
PostgreSQL. On the code before issue 15 both attacks succeeded:
- a token without an ``email`` claim acted as ``oidc:<sub>`` with the IdP's groups, so alice —
  whose IdP account is in data-governance's IdP group — approved her own pii export;
- a token with ``email_verified: false`` and bob's e-mail acted as bob (anyone who can edit the
  e-mail attribute of their IdP account could).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import Report
from tests.security._idp import StandInIdp
from tests.security.conftest import IDENTITY, Home


@pytest.fixture
def idp() -> Iterator[StandInIdp]:
    provider = StandInIdp().start()
    yield provider
    provider.stop()


def link_subjects(home: Home, links: dict[str, list[dict[str, str]]]) -> None:
    """Give directory principals their IdP subjects (``idp_subjects``), as an operator would."""
    path = home.settings.directory_path
    directory = yaml.safe_load(path.read_text(encoding="utf-8"))
    for entry in directory["principals"]:
        if entry["id"] in links:
            entry["idp_subjects"] = links[entry["id"]]
    path.write_text(yaml.safe_dump(directory, sort_keys=False), encoding="utf-8")


def oidc_home(home: Home, idp: StandInIdp, **oidc: Any) -> None:
    config = {"oidc": {"issuer": idp.issuer, "audience": "gatehouse-api", "jwks_url": idp.jwks_url, **oidc}}
    (home.settings.home / "service.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def alice_requests(home: Home) -> str:
    opened = home.run("request", "--action", "export", "--dataset", "warehouse/customers#pii")
    assert opened.code == 0, opened.err
    return opened.last_line


def approve(base: str, token: str, gate_id: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/gates/{gate_id}/decisions",
        json={"decision": "approve", "comment": "looks fine"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def shown(home: Home, gate_id: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(home.run("show", gate_id, "--json").out)
    return result


def test_a_token_without_email_is_nobody_and_never_decides(
    home_for: Callable[..., Home], serve: Callable[[Home], str], idp: StandInIdp, report: Report
) -> None:
    home = home_for(kernel_is="alice")
    oidc_home(home, idp, groups_claim="groups")
    base = serve(home)
    gate_id = alice_requests(home)
    # alice's own IdP account, in the IdP's data-governance group, no e-mail claim
    token = idp.sign(sub="u-alice", name="Alice", groups=["data-governance"])
    refused = approve(base, token, gate_id)
    assert refused.status_code == 403, refused.text
    detail = refused.json()["detail"]
    assert f"IdP identity u-alice at {idp.issuer} is linked to no principal" in detail
    assert "idp_subjects" in detail  # says what to configure
    # ... but it may read
    me = httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    assert (me["principal_id"], me["via"], me["linked"]) == ("oidc:u-alice", "oidc", False)
    assert me["groups"] == []  # the IdP's groups give an unlinked identity nothing
    listed = httpx.get(f"{base}/v1/gates", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert listed.status_code == 200 and [g["id"] for g in listed.json()] == [gate_id]
    assert shown(home, gate_id)["decisions"] == []

    # Linked, the same subject is alice — and alice never approves her own gate.
    link_subjects(home, {"alice": [{"issuer": idp.issuer, "subject": "u-alice"}]})
    linked_base = serve(home)
    self_approval = approve(linked_base, token, gate_id)
    assert (self_approval.status_code, self_approval.json()["code"]) == (403, "self_approval"), (
        self_approval.text
    )
    assert shown(home, gate_id)["status"] == "PENDING"
    home.figure(report, "IdP token without e-mail (unlinked, then self-approval)", 2, section=IDENTITY)


@pytest.mark.parametrize("verified", [False, "false", None], ids=["false", "string-false", "absent"])
def test_an_unverified_email_names_nobody(
    home_for: Callable[..., Home],
    serve: Callable[[Home], str],
    idp: StandInIdp,
    verified: object,
    report: Report,
) -> None:
    home = home_for(kernel_is="alice")
    oidc_home(home, idp)
    base = serve(home)
    gate_id = alice_requests(home)
    claims: dict[str, Any] = {"sub": "u-mallory", "email": "bob@example.com", "groups": ["data-governance"]}
    if verified is not None:
        claims["email_verified"] = verified
    refused = approve(base, idp.sign(**claims), gate_id)
    assert refused.status_code == 403, refused.text
    assert "linked to no principal" in refused.json()["detail"]
    assert "e-mail bob@example.com is not verified by the IdP" in refused.json()["detail"]
    assert shown(home, gate_id)["decisions"] == []
    home.figure(report, f"colleague's e-mail with email_verified {verified}", 1, section=IDENTITY)


def test_an_email_never_overrides_a_subject_link(
    home_for: Callable[..., Home], serve: Callable[[Home], str], idp: StandInIdp, report: Report
) -> None:
    """bob's entry names his IdP subject: another IdP account with bob's (verified) e-mail is not bob."""
    home = home_for(kernel_is="alice")
    link_subjects(home, {"bob": [{"issuer": idp.issuer, "subject": "u-bob"}]})
    oidc_home(home, idp)
    base = serve(home)
    gate_id = alice_requests(home)
    token = idp.sign(sub="u-bob-2", email="bob@example.com", email_verified=True)
    refused = approve(base, token, gate_id)
    assert refused.status_code == 401, refused.text
    assert "bob is linked to other IdP subjects" in refused.json()["detail"]
    assert shown(home, gate_id)["decisions"] == []
    home.figure(report, "verified e-mail against another subject's link", 1, section=IDENTITY)


def test_linked_and_verified_identities_decide_and_the_audit_names_the_subject(
    home_for: Callable[..., Home], serve: Callable[[Home], str], idp: StandInIdp
) -> None:
    home = home_for(kernel_is="alice")
    link_subjects(
        home, {"bob": [{"issuer": idp.issuer + "/", "subject": "u-bob"}]}
    )  # trailing / is one issuer
    oidc_home(home, idp)
    base = serve(home)
    first = alice_requests(home)
    # bob by his subject link; no e-mail, and the IdP's groups claim adds nothing (not configured)
    ok = approve(base, idp.sign(sub="u-bob"), first)
    assert ok.status_code == 200, ok.text
    decision = ok.json()["decisions"][0]
    assert (decision["principal_id"], decision["via"], decision["subject"]) == ("bob", "oidc", "u-bob")
    assert decision["issuer"] == idp.issuer
    described = home.run("show", first).out
    assert f"approve     by bob via oidc (subject u-bob at {idp.issuer})" in described
    entries = [json.loads(line) for line in home.run("audit", "export").out.splitlines()]
    [recorded] = [e for e in entries if e["event"] == "decision.recorded"]
    assert recorded["actor"] == {
        "principal_id": "bob",
        "via": "oidc",
        "email": "bob@example.com",
        "issuer": idp.issuer,
        "subject": "u-bob",
    }
    # carol by an e-mail the IdP marks verified
    second = alice_requests(home)
    verified = approve(base, idp.sign(sub="u-carol", email="Carol@Example.com", email_verified=True), second)
    assert verified.status_code == 200, verified.text
    assert verified.json()["decisions"][0]["principal_id"] == "carol"


def test_an_idp_configured_as_always_verifying_links_by_email(
    home_for: Callable[..., Home], serve: Callable[[Home], str], idp: StandInIdp
) -> None:
    home = home_for(kernel_is="alice")
    oidc_home(home, idp, always_verifies_email=True)
    base = serve(home)
    gate_id = alice_requests(home)
    ok = approve(base, idp.sign(sub="u-carol", email="carol@example.com"), gate_id)
    assert ok.status_code == 200, ok.text
    assert ok.json()["decisions"][0]["principal_id"] == "carol"


def test_the_idp_groups_claim_only_narrows_the_directory(
    home_for: Callable[..., Home], serve: Callable[[Home], str], idp: StandInIdp, report: Report
) -> None:
    """dave (ml-leads in the directory) with data-governance in the IdP's groups claim: not an approver."""
    home = home_for(kernel_is="alice")
    link_subjects(
        home,
        {
            "dave": [{"issuer": idp.issuer, "subject": "u-dave"}],
            "bob": [{"issuer": idp.issuer, "subject": "u-bob"}],
        },
    )
    oidc_home(home, idp, groups_claim="groups")
    base = serve(home)
    gate_id = alice_requests(home)
    refused = approve(base, idp.sign(sub="u-dave", groups=["data-governance", "ml-leads"]), gate_id)
    assert (refused.status_code, refused.json()["code"]) == (403, "not_an_approver"), refused.text
    # the IdP can take a group away (bob left data-governance there) ...
    removed = approve(base, idp.sign(sub="u-bob", groups=["everyone"]), gate_id)
    assert (removed.status_code, removed.json()["code"]) == (403, "not_an_approver"), removed.text
    # ... and with it, bob decides
    assert approve(base, idp.sign(sub="u-bob", groups=["data-governance"]), gate_id).status_code == 200
    home.figure(report, "IdP groups claim adding a group", 1, section=IDENTITY)


def test_a_decision_is_judged_on_the_directory_as_it_is_now(
    home_for: Callable[..., Home], serve: Callable[[Home], str], idp: StandInIdp, report: Report
) -> None:
    """The running service re-reads directory.yaml when it changes: bob, removed from
    data-governance while his access token is still valid, no longer approves."""
    home = home_for(kernel_is="alice")
    link_subjects(home, {"bob": [{"issuer": idp.issuer, "subject": "u-bob"}]})
    oidc_home(home, idp)
    base = serve(home)
    gate_id = alice_requests(home)
    token = idp.sign(sub="u-bob", lifetime_s=600)
    path = home.settings.directory_path
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "groups:\n  - data-governance\n  idp_subjects", "groups: []\n  idp_subjects"
        ),
        encoding="utf-8",
    )
    assert "groups: []\n  idp_subjects" in path.read_text(encoding="utf-8")
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 15  # the service notices the edit at its next sweep (1 s)
    while (
        httpx.get(f"{base}/v1/me", headers=headers, timeout=30).json()["groups"]
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    refused = approve(base, token, gate_id)
    assert (refused.status_code, refused.json()["code"]) == (403, "not_an_approver"), refused.text
    assert shown(home, gate_id)["decisions"] == []
    loaded = [json.loads(line) for line in home.run("audit", "export").out.splitlines()]
    events = [e["event"] for e in loaded]
    assert "directory.loaded" in events[events.index("gate.requested") :]  # the edit is audited
    home.figure(report, "an approver removed from the directory while signed in", 1, section=IDENTITY)
