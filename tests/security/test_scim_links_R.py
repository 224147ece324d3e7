"""Adversary R against SCIM subject links: a provisioned person's ``externalId`` is their subject at
the configured IdP (``scim.subject_issuer``), so their sign-ins link by subject, never by an e-mail
alone — and no SCIM client can take over a link the directory file holds, or make one IdP
identity two people by giving two users the same ``externalId``.

The source under test is the real one the service uses (``CombinedSource`` over a change log) and
the claims go through the real ``caller_from_oidc_claims``, as a verified IdP token's would."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gate_core.identity import AuthMethod, Directory, IdpSubject, Principal, PrincipalKind
from gate_core.identity._callers import caller_from_oidc_claims
from gate_core.identity._provisioned import CombinedSource, DirectoryChange, ProvisioningConfig
from tests.conftest import Report

ISSUER = "https://example.okta.com"


@dataclass(frozen=True)
class Rules:
    email_claim: str = "email"
    groups_claim: str | None = None
    always_verifies_email: bool = False


class ChangeLog:
    def __init__(self) -> None:
        self.changes: list[DirectoryChange] = []

    def changes_after(self, version: int, *, until: datetime | None = None) -> list[DirectoryChange]:
        return [c for c in self.changes if c.version > version and (until is None or c.at <= until)]

    def user(self, resource_id: str, user_name: str, external_id: str | None, *, active: bool = True) -> None:
        resource: dict[str, Any] = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": resource_id,
            "userName": user_name,
            "active": active,
            "emails": [{"value": user_name, "primary": True}],
        }
        if external_id is not None:
            resource["externalId"] = external_id
        self.changes.append(
            DirectoryChange(len(self.changes) + 1, datetime.now(UTC), "User", resource_id, resource, "okta")
        )


def _source(log: ChangeLog, *, issuer: str | None = ISSUER) -> CombinedSource:
    carol = Principal(id="carol", email="carol@example.com", groups=frozenset({"data-governance"}))
    bot = Principal(id="etl-bot", kind=PrincipalKind.SERVICE)
    file = Directory([carol, bot], {}, {"carol": (IdpSubject.of(ISSUER, "00u-carol"),)})
    return CombinedSource(file, log, ProvisioningConfig(subject_issuer=issuer))


def _sign_in(source: CombinedSource, sub: str, email: str | None = None, verified: bool = False) -> Any:
    claims: dict[str, Any] = {"iss": ISSUER, "sub": sub}
    if email is not None:
        claims |= {"email": email, "email_verified": verified}
    return caller_from_oidc_claims(source, claims, Rules())


def test_a_provisioned_persons_sign_in_links_by_their_external_id() -> None:
    log = ChangeLog()
    log.user("u1", "bob@example.com", "00u-bob")
    caller = _sign_in(_source(log), "00u-bob")  # no e-mail claim at all: the subject alone names bob
    assert caller.unlinked is None
    assert caller.principal.id == "bob@example.com"
    assert caller.via is AuthMethod.OIDC
    assert caller.subject == IdpSubject.of(ISSUER, "00u-bob")


def test_without_a_configured_issuer_the_external_id_links_nobody() -> None:
    log = ChangeLog()
    log.user("u1", "bob@example.com", "00u-bob")
    caller = _sign_in(_source(log, issuer=None), "00u-bob")
    assert caller.unlinked is not None and "linked to no principal" in caller.unlinked


def test_a_scim_client_cannot_take_over_a_subject_the_file_links(report: Report) -> None:
    log = ChangeLog()
    log.user("u1", "mallory@example.com", "00u-carol")  # carol's subject, claimed by a provisioned user
    caller = _sign_in(_source(log), "00u-carol")
    assert caller.principal.id == "carol"  # the file's link stands; mallory gained nothing
    report("SCIM (R): a provisioned externalId taking over a file's subject link, accepted", 0, "", "0")


def test_one_external_id_on_two_users_links_neither(report: Report) -> None:
    log = ChangeLog()
    log.user("u1", "bob@example.com", "00u-shared")
    log.user("u2", "dave@example.com", "00u-shared")
    caller = _sign_in(_source(log), "00u-shared")
    assert caller.unlinked is not None  # ambiguous: reads, never decides
    report("SCIM (R): one externalId on two provisioned users naming either, accepted", 0, "", "0")
    # each of them can still be named by a verified e-mail, which the IdP vouches for
    assert (
        _sign_in(_source(log), "00u-other", "dave@example.com", verified=True).principal.id
        == "dave@example.com"
    )


def test_a_deactivated_users_external_id_links_nobody_and_its_link_moves_with_the_log() -> None:
    log = ChangeLog()
    log.user("u1", "bob@example.com", "00u-bob")
    source = _source(log)
    assert _sign_in(source, "00u-bob").principal.id == "bob@example.com"
    log.user("u1", "bob@example.com", "00u-bob", active=False)  # Okta deactivates bob
    caller = _sign_in(source, "00u-bob")  # the same source object: the change log is read on lookup
    assert caller.unlinked is not None
