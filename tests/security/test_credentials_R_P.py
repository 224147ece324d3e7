"""Adversaries R (the requester) and P (a pipeline's token) against THREATS.md property 1 —
*nobody acts as someone else*: a credential is issued to its owner through an authenticated
channel, and a token someone else minted never decides.

Issue 14, attack 1 ("minted tokens"): on the code before issue 14 alice minted a ``decide`` token
for bob (``USER=alice gatehouse token create --principal bob``), opened her own pii export and
approved it over the API "as bob"; ``etl-bot`` minted an ``admin`` token for bob. Each test below
runs that attack through the real CLI and the real ``gatehouse serve``, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import Report
from tests.security.conftest import PII_EXPORT, Home


@pytest.mark.parametrize(
    ("kernel_is", "principal", "scope"),
    [
        ("alice", "bob", "decide"),  # a requester mints her approver's credential
        ("etl-bot", "bob", "admin"),  # a service principal mints a person's admin token
        ("bob", "etl-bot", "request"),  # a person who is not an admin mints the pipeline's token
    ],
)
def test_nobody_mints_a_token_for_someone_else(
    home_for: Callable[..., Home], kernel_is: str, principal: str, scope: str, report: Report
) -> None:
    home = home_for(kernel_is=kernel_is)
    minted = home.run("token", "create", "--principal", principal, "--scope", scope, env={"USER": kernel_is})
    assert minted.code == 1, minted.out
    assert f"{kernel_is} may not create a token for" in minted.err
    assert len(minted.err.strip().splitlines()) == 1
    assert home.sql("SELECT count(*) FROM gh_api_tokens") == [(0,)]  # nothing written, nothing audited
    events = home.run("audit", "export").out
    assert "token.created" not in events
    home.figure(report, f"minting a token for another ({kernel_is} → {principal})", 1)


def test_an_admin_issues_a_pipeline_limited_service_token_and_the_owner_issues_their_own(
    home_for: Callable[..., Home], serve: Callable[[Home], str]
) -> None:
    home = home_for(kernel_is="frank")
    made = home.run(
        "token", "create", "--principal", "etl-bot", "--scope", "request", "--pipeline", "customer_*"
    )
    assert made.code == 0, made.err
    listed = home.run("token", "list").out
    assert "etl-bot" in listed and "by frank via local-os-user" in listed
    bot = made.last_line
    base = serve(home)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {bot}"}, timeout=30) as client:
        ok = client.post(
            "/v1/gates",
            json={
                **PII_EXPORT,
                "requester": "alice",
                "run": {"orchestrator": "airflow", "pipeline": "customer_export"},
            },
        )
        assert ok.status_code == 200, ok.text
        other = client.post(
            "/v1/gates",
            json={
                **PII_EXPORT,
                "requester": "alice",
                "run": {"orchestrator": "airflow", "pipeline": "billing_sync"},
            },
        )
        assert other.status_code == 403
        assert "may open gates only for pipelines customer_*; not for 'billing_sync'" in other.text
    exported = home.run("audit", "export").out
    assert '"issued_by":"frank"' in exported and '"issued_via":"local-os-user"' in exported


def test_a_token_its_principal_did_not_issue_never_decides(
    home_for: Callable[..., Home], serve: Callable[[Home], str], report: Report
) -> None:
    """The whole attack: alice holds a bob ``decide`` token minted the way every older version
    allowed (hand-inserted here exactly as that code stored it), opens her own pii export with her
    own token, and approves it over HTTP as bob. Refused now; the gate stays pending."""
    home = home_for(kernel_is="alice")
    own = home.run("token", "create", "--principal", "alice", "--scope", "request", env={"USER": "alice"})
    assert own.code == 0, own.err
    as_bob = home.legacy_token("bob", "decide", created_by="alice")
    base = serve(home)
    with httpx.Client(base_url=base, timeout=30) as client:
        opened = client.post(
            "/v1/gates", json=PII_EXPORT, headers={"Authorization": f"Bearer {own.last_line}"}
        )
        assert opened.status_code == 200, opened.text
        gate_id = opened.json()["id"]
        decided = client.post(
            f"/v1/gates/{gate_id}/decisions",
            json={"decision": "approve", "comment": "lgtm"},
            headers={"Authorization": f"Bearer {as_bob}"},
        )
        assert decided.status_code == 403, decided.text
        assert "was issued by alice; a token decides only when its own principal created it" in decided.text
        gate = client.get(f"/v1/gates/{gate_id}", headers={"Authorization": f"Bearer {own.last_line}"})
        assert gate.json()["status"] == "PENDING" and gate.json()["decisions"] == []
    home.figure(report, "deciding with a token someone else minted", 1)
