"""Adversaries N (anyone on the network) and C (a caller with a valid credential) against /scim/v2,
over a real socket on SQLite and PostgreSQL.

- N: no token, a decide token, an admin token — none reaches /scim/v2; the SCIM token reaches
  nothing else (decisions, /v1/me, the audit export).
- C with the SCIM credential: a look-alike of a file principal (Cyrillic ``b\u043eb``, a sub-addressed
  mailbox) is refused as the same person (409 uniqueness), so provisioning can never mint a second
  bob who meets a two-person rule; oversized payloads are refused with SCIM errors; nothing is
  stored by a refused request.
- Only a member of gatehouse-admins creates a SCIM credential, and only for themselves."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gate_core import PermissionDenied, Scope
from gate_core.testing import actor
from tests.conftest import Report
from tests.service.scim_rig import SCIM_MEDIA, USER_SCHEMA, ScimRig, person_token


def _user(user_name: str, email: str, **extra: object) -> dict[str, object]:
    return {
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "emails": [{"value": email, "primary": True}],
        **extra,
    }


def _versions(rig: ScimRig) -> int:
    return len(rig.audit("directory.changed"))


def test_only_the_scim_credential_opens_scim_and_it_opens_nothing_else(
    scim_rig: ScimRig, report: Report
) -> None:
    rig = scim_rig
    rig.create_user("carol", "carol@example.com")
    person_token(rig, "carol")  # a decide token
    _, admin = rig.gatekeeper.tokens.create("frank", Scope.ADMIN, created_by=actor("frank"))
    url = f"{rig.base_url}/scim/v2/Users"
    anonymous = httpx.get(url, timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith(SCIM_MEDIA)
    assert anonymous.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    for token in (rig.tokens["carol"], admin, "gh_000000000000_forged"):
        refused = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert refused.status_code in (401, 403), refused.text
        assert refused.headers["content-type"].startswith(SCIM_MEDIA)
    created = httpx.post(
        url,
        headers={"Authorization": f"Bearer {admin}", "Content-Type": SCIM_MEDIA},
        content=json.dumps(_user("mallory", "mallory@example.com")),
        timeout=30,
    )
    assert created.status_code == 403
    assert "mallory" not in {p.id for p in rig.gatekeeper.directory}

    gate_id = rig.open_gate()
    scim = {"Authorization": f"Bearer {rig.scim_token}"}
    for method, path, body in (
        ("POST", f"/v1/gates/{gate_id}/decisions", {"decision": "approve"}),
        ("GET", "/v1/me", None),
        ("GET", "/v1/audit/export", None),
        ("POST", "/v1/gates", {"action": "export", "target": "x", "requester": "alice"}),
    ):
        response = httpx.request(method, f"{rig.base_url}{path}", headers=scim, json=body, timeout=30)
        assert response.status_code == 401, (path, response.text)
        assert "SCIM credential" in response.text
    assert not rig.gatekeeper.get(gate_id).approvals
    report(
        "SCIM (N): other credentials at /scim/v2 and the SCIM credential elsewhere, accepted", 0, "of 9", "0"
    )


def test_only_an_admin_creates_a_scim_credential_and_only_for_themselves(scim_rig: ScimRig) -> None:
    rig = scim_rig
    rig.create_user("carol", "carol@example.com")
    with pytest.raises(PermissionDenied):
        rig.gatekeeper.tokens.create("carol", Scope.SCIM, created_by=actor("carol"))  # not an admin
    with pytest.raises(PermissionDenied):
        rig.gatekeeper.tokens.create("carol", Scope.SCIM, created_by=actor("frank"))  # not for another
    with pytest.raises(PermissionDenied):
        rig.gatekeeper.tokens.create("etl-bot", Scope.SCIM, created_by=actor("frank"))  # not a service


@pytest.mark.parametrize(
    ("user_name", "email"),
    [
        ("b\u043eb", "someone-else@example.com"),  # a Cyrillic o: provisioned bob's look-alike
        ("alice", "alice2@example.com"),  # the file's id itself
        ("\u0430lice", "a@example.com"),  # a Cyrillic a: alice's look-alike
        ("alice.l", "alice+scim@example.com"),  # a sub-address of alice's mailbox
        ("ALICE@EXAMPLE.COM", "x@example.com"),  # alice's mailbox as a userName
    ],
)
def test_a_look_alike_of_an_existing_person_is_refused_as_the_same_person(
    scim_rig: ScimRig, user_name: str, email: str, report: Report
) -> None:
    rig = scim_rig
    rig.create_user("bob", "bob@example.com")
    before = _versions(rig)
    response = rig.send("POST", "/Users", _user(user_name, email))
    assert response.status_code == 409, response.text
    assert response.json()["scimType"] == "uniqueness"
    assert _versions(rig) == before
    assert {p.id for p in rig.gatekeeper.directory} == {"alice", "frank", "etl-bot", "bob"}
    report(f"SCIM (R): a second principal for one person ({user_name!a}), accepted", 0, "", "0")


def test_a_look_alike_cannot_take_over_by_changing_an_email_either(scim_rig: ScimRig) -> None:
    rig = scim_rig
    rig.create_user("bob", "bob@example.com")
    eve = rig.create_user("eve", "eve@example.com")
    response = rig.patch(
        f"/Users/{eve}", {"op": "replace", "path": "emails", "value": [{"value": "Bob+gates@Example.com"}]}
    )
    assert response.status_code == 409 and response.json()["scimType"] == "uniqueness", response.text
    assert rig.gatekeeper.directory.get("eve").email == "eve@example.com"


def test_oversized_and_malformed_payloads_are_refused_with_scim_errors_and_nothing_stored(
    scim_rig: ScimRig,
) -> None:
    rig = scim_rig
    bob = rig.create_user("bob", "bob@example.com")
    before = _versions(rig)
    many_mails = [{"value": f"bob{i}@mail{i}.example.com"} for i in range(21)]
    cases: list[tuple[str, str, Any, int]] = [
        ("POST", "/Users", _user("zed", "zed@example.com", emails=many_mails), 400),
        ("POST", "/Users", _user("x" * 201, "long@example.com"), 400),
        ("POST", "/Users", _user("semi;colon", "semi@example.com"), 400),
        ("POST", "/Users", {"schemas": [USER_SCHEMA]}, 400),  # no userName
        (
            "POST",
            "/Groups",
            {
                "schemas": [USER_SCHEMA.replace("User", "Group")],
                "displayName": "g",
                "members": [{"value": "no-such-user"}],
            },
            400,
        ),
        (
            "PATCH",
            f"/Users/{bob}",
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "displayName", "value": "b"}] * 201,
            },
            413,
        ),
        (
            "PATCH",
            f"/Users/{bob}",
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "explode", "path": "displayName"}],
            },
            400,
        ),
        ("GET", "/Users?filter=userName%20eq", None, 400),
        ("GET", "/Users/does-not-exist", None, 404),
    ]
    for method, path, body, status in cases:
        response = rig.send(method, path, body)
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"].startswith(SCIM_MEDIA)
        error = response.json()
        assert (
            error["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
            and int(error["status"]) == status
        )
    with rig.scim() as scim:
        huge = scim.post("/Users", content=b"{" + b" " * 2_000_000 + b"}")
    assert huge.status_code == 413
    assert _versions(rig) == before
    assert rig.gatekeeper.audit.verify().ok
