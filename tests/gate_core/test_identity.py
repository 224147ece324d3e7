"""gate_core.identity: the identity-source port and its YAML directory, the one canonical form of an
identity, and "who is this caller" for every channel (token, OIDC claims, proxy, Slack, OS account).

Adversaries (THREATS.md): R and A spell an identity they control differently to pass as someone
else or as two people; N names a principal the source does not know. Each must be refused."""

from __future__ import annotations

import os
import pwd
import unicodedata
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gate_core
from gate_core import (
    AuthenticationFailed,
    AuthMethod,
    DirectoryError,
    DuplicateDecision,
    GateRequest,
    GateStatus,
    PermissionDenied,
    Principal,
    PrincipalKind,
    Scope,
    SelfApprovalRefused,
    Settings,
    UnknownPrincipal,
)
from gate_core._eligibility import is_requester
from gate_core.identity import (
    Caller,
    Directory,
    IdentitySource,
    caller_from_oidc_claims,
    caller_from_os_account,
    caller_from_proxy,
    caller_from_slack_email,
    caller_from_teams_member,
    caller_from_token,
    canonical_identity,
    canonical_key,
    claim_groups,
    identity_key,
    load_source,
    local_actor_name,
    os_account,
    person_key,
    same_person,
)
from gate_core.testing import actor, example_directory, example_gatekeeper
from tests.gate_core.conftest import pii_export, prod_redeploy

DIRECTORY_YAML = """\
principals:
  - id: alice
    email: Alice@Example.com
    groups: [data-engineering]
    aliases: [asmith]
  - id: bob
    email: bob@example.com
    groups: [data-governance]
  - id: etl-bot
    kind: service
"""


@pytest.fixture
def directory() -> Directory:
    return Directory.parse(DIRECTORY_YAML)


class _Claims:
    """The two claim names the OIDC channel reads (the service's OidcConfig has the same)."""

    email_claim = "email"
    groups_claim = "groups"


# ---------------------------------------------------------------- the port and the YAML source


class _InMemorySource:
    """Another IdentitySource, written the way a SCIM-backed one would be: the Gatekeeper runs on it."""

    def __init__(self, principals: list[Principal]) -> None:
        self._by_id = {p.id: p for p in principals}

    def __iter__(self) -> Iterator[Principal]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def content_hash(self) -> str:
        return "in-memory:" + ",".join(sorted(self._by_id))

    def get(self, principal_id: str) -> Principal:
        found = self.find(principal_id)
        if found is None:
            raise UnknownPrincipal(principal_id)
        return found

    def find(self, principal_id: str) -> Principal | None:
        by_email = {canonical_identity(p.email): p for p in self if p.email}
        return self._by_id.get(principal_id) or by_email.get(canonical_identity(principal_id))

    def by_email(self, email: str) -> Principal:
        return self.get(email)


def test_the_gatekeeper_runs_on_any_identity_source() -> None:
    source: IdentitySource = _InMemorySource(list(example_directory()))
    gk = example_gatekeeper(directory=source)
    gate = gk.open(pii_export(), submitted_by=actor("alice"))
    with pytest.raises(SelfApprovalRefused):
        gk.approve(gate.id, actor=actor("alice"))
    assert gk.approve(gate.id, actor=actor("bob")).status is GateStatus.APPROVED


def test_the_directory_file_is_the_public_directory() -> None:
    assert gate_core.Directory is Directory
    source: IdentitySource = example_directory()  # the YAML source satisfies the port
    assert len(source) == len(list(source)) == 7  # frank (gatehouse-admins) joined with issue 14


def test_directory_looks_up_by_id_alias_and_canonical_email(directory: Directory) -> None:
    assert directory.get("alice").id == "alice"
    assert directory.get("asmith").id == "alice"
    # \uff21 is a full-width A, which NFKC folds to A
    for spelling in ("alice@example.com", " ALICE@EXAMPLE.COM ", "\uff21lice@example.com"):
        assert directory.get(spelling).id == "alice"
        assert directory.by_email(spelling).id == "alice"
    assert directory.find("mallory") is None
    with pytest.raises(UnknownPrincipal, match=r"'mallory@example\.com' is not a principal"):
        directory.by_email("mallory@example.com")
    with pytest.raises(UnknownPrincipal):
        directory.get("Alice")  # ids and aliases are looked up as written


def test_content_hash_follows_the_principals(directory: Directory) -> None:
    assert directory.content_hash == Directory.parse(DIRECTORY_YAML).content_hash
    changed = Directory.parse(DIRECTORY_YAML.replace("[data-governance]", "[data-governance, sre]"))
    assert changed.content_hash != directory.content_hash


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("principals: [", "<string>: not valid YAML"),
        ("principals:\n  - id: 'has space'\n", "<string>: principals.0.id: String should match pattern"),
        ("principals:\n  - id: a\n    colour: red\n", "<string>: principals.0.colour: Extra inputs"),
        ("principals:\n  - id: a\n  - id: a\n", "principal id 'a' appears twice"),
        ("people: []\n", "<string>: principals: Field required"),
    ],
)
def test_invalid_directories_are_refused_with_a_message(text: str, message: str) -> None:
    with pytest.raises(DirectoryError, match=message.replace(".", r"\.")):
        Directory.parse(text)


def test_load_source_reads_the_homes_directory_file(tmp_path: Path) -> None:
    settings = Settings.from_env({"GATEHOUSE_HOME": str(tmp_path)})
    with pytest.raises(DirectoryError, match="cannot read directory file"):
        load_source(settings)
    settings.directory_path.write_text(DIRECTORY_YAML, encoding="utf-8")
    assert load_source(settings).get("asmith").id == "alice"


# ---------------------------------------------------------------- the one canonical form


@given(st.text(max_size=40))
def test_canonical_identity_is_idempotent(text: str) -> None:
    once = canonical_identity(text)
    assert canonical_identity(once) == once
    assert once == once.strip()


_IDENTITY_TEXT = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@._+-"),
    max_size=30,
)


@given(_IDENTITY_TEXT, st.sampled_from(["", " ", "\t", "\u3000", "\n "]))
def test_case_width_and_whitespace_variants_are_one_identity(text: str, pad: str) -> None:
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in text)  # full-width forms: NFKC folds them back
    for variant in (text.upper(), text.lower(), text.swapcase(), full_width, f"{pad}{text}{pad}"):
        assert canonical_identity(variant) == canonical_identity(text)
        assert identity_key("email", variant) == identity_key("email", text)


@given(st.text(max_size=20))
def test_canonically_equivalent_text_is_one_identity(text: str) -> None:
    assert canonical_identity(unicodedata.normalize("NFD", text)) == canonical_identity(text)


def test_canonical_form_examples() -> None:
    # issue 14: the UTS #39 skeleton is part of the form (m → rn), so the e-mail reads oddly
    assert canonical_identity(" \uff21lice@Example.COM\n") == "alice@exarnple.corn"
    assert (
        canonical_identity("Straße") == canonical_identity("STRASSE") == "strasse"
    )  # case folding, not lower()
    assert identity_key("id", "Alice") == "id:alice"
    assert person_key("alice", "Alice@Example.com") == "email:alice@exarnple.corn"
    assert person_key("alice", None) == "id:alice"
    assert same_person("alice", None, "ALICE ", "alice@example.com")  # same id
    assert same_person("alice", "A@x.org", "bob", "a@X.ORG")  # same mailbox under two ids
    assert not same_person("alice", "a@x.org", "bob", None)
    # issue 14: look-alikes across scripts and e-mail sub-addresses are one identity
    assert canonical_identity("\u0430lice") == canonical_identity("alice")  # Cyrillic a
    assert same_person("bob", "bob@example.com", "bob2", "Bob+2@Example.com")
    assert identity_key("id", "bob+2") == "id:bob+2"  # only mailboxes fold a sub-address


def test_principal_keys_are_canonical() -> None:
    alice = Principal(id="Alice", email=" ALICE@example.com")
    assert alice.identity_keys == ("id:alice", "email:alice@exarnple.corn")
    assert alice.person_key == "email:alice@exarnple.corn"
    assert alice.is_same_person(Principal(id="alice-admin", email="alice@EXAMPLE.com"))
    assert alice.is_same_person(Principal(id="ALICE"))
    assert not alice.is_same_person(Principal(id="bob", email="bob@example.com"))


def test_keys_stored_before_canonical_forms_still_match_their_requester() -> None:
    # A gate opened by an older version stored "id:Alice" / "email:ALICE@…" as written.
    assert canonical_key("email:ALICE@Example.com ") == "email:alice@exarnple.corn"
    gk = example_gatekeeper()
    gate = gk.open(pii_export(), submitted_by=actor("alice"))
    old = gate.model_copy(update={"requester_identities": ("id:Alice", "email:ALICE@Example.COM")})
    assert is_requester(old, Principal(id="alice"))
    assert is_requester(old, Principal(id="someone-else", email="alice@example.com"))
    assert not is_requester(old, Principal(id="bob", email="bob@example.com"))


def _directory_with(*extra: Principal) -> Directory:
    return Directory([*example_directory(), *extra])


def test_a_second_spelling_of_the_requesters_mailbox_cannot_approve() -> None:
    # adversary R: a governance account whose mailbox is alice's, spelled in full-width capitals
    twin = Principal(id="a-liddell", email="\uff21LICE@EXAMPLE.COM", groups=frozenset({"data-governance"}))
    gk = example_gatekeeper(directory=_directory_with(twin))
    gate = gk.open(pii_export(), submitted_by=actor("alice"))
    with pytest.raises(SelfApprovalRefused):
        gk.approve(gate.id, actor=actor("a-liddell"))


def test_one_person_under_two_spellings_counts_once() -> None:
    # adversary A: bob again, as another id with his mailbox in other case and padding
    bob_again = Principal(id="robert", email=" BOB@example.com ", groups=frozenset({"ml-leads"}))
    gk = example_gatekeeper(directory=_directory_with(bob_again))
    gate = gk.open(prod_redeploy(), submitted_by=actor("alice"))
    gk.approve(gate.id, actor=actor("bob"))
    with pytest.raises(DuplicateDecision, match="one person counts once"):
        gk.approve(gate.id, actor=actor("robert"))
    assert gk.get(gate.id).approvals_missing() == 1


# ---------------------------------------------------------------- who is this caller


def test_api_token_caller() -> None:
    gk = example_gatekeeper()
    token, secret = gk.tokens.create("etl-bot", Scope.REQUEST, created_by=actor("frank"))
    caller = caller_from_token(gk.tokens, secret)
    assert (caller.principal.id, caller.via, caller.scope) == ("etl-bot", AuthMethod.API_TOKEN, Scope.REQUEST)
    caller.require(Scope.REQUEST)
    with pytest.raises(
        PermissionDenied, match="api-token credential has scope 'request'; 'decide' is needed"
    ):
        caller.require(Scope.DECIDE)
    with pytest.raises(AuthenticationFailed, match="invalid API token"):
        caller_from_token(gk.tokens, secret[:-2] + "xx")
    gk.tokens.revoke(token.id, actor=actor("frank"))
    with pytest.raises(AuthenticationFailed, match="expired or revoked"):
        caller_from_token(gk.tokens, secret)


def test_api_token_of_a_principal_no_longer_in_the_source() -> None:
    gk = example_gatekeeper()
    _, secret = gk.tokens.create("bob", Scope.DECIDE, created_by=actor("bob"), expires_in=timedelta(days=1))
    gk.directory = Directory([p for p in example_directory() if p.id != "bob"])
    with pytest.raises(AuthenticationFailed, match="no longer in the directory"):
        caller_from_token(gk.tokens, secret)


def test_oidc_claims_of_a_known_mailbox_are_that_principal_with_the_idps_groups(directory: Directory) -> None:
    claims = {"sub": "u-1", "email": "ALICE@example.com", "groups": ["auditors", 7]}
    caller = caller_from_oidc_claims(directory, claims, _Claims())
    assert caller.principal.id == "alice"
    assert caller.principal.groups == {"data-engineering", "auditors"}
    assert (caller.via, caller.scope) == (AuthMethod.OIDC, Scope.DECIDE)
    assert caller.actor.principal_id == "alice" and caller.actor.via is AuthMethod.OIDC


def test_oidc_claims_of_an_unknown_person_are_the_idps_person(directory: Directory) -> None:
    caller = caller_from_oidc_claims(
        directory, {"sub": "u-2", "email": "zoe@example.com", "name": "Zoe", "groups": "ops"}, _Claims()
    )
    assert caller.principal == Principal(
        id="oidc:u-2", email="zoe@example.com", display_name="Zoe", groups=frozenset({"ops"})
    )
    # an e-mail claim that is a directory id (or alias) names nobody: only mailboxes map
    assert caller_from_oidc_claims(directory, {"sub": "u-3", "email": "asmith"}, _Claims()).principal.id == (
        "oidc:u-3"
    )
    assert caller_from_oidc_claims(directory, {"sub": "u-4"}, _Claims()).principal.display_name == "u-4"


def test_claim_groups_keeps_only_strings() -> None:
    assert claim_groups({"g": ["a", 1, None, "b"]}, "g") == {"a", "b"}
    assert claim_groups({"g": "a"}, "g") == {"a"}
    assert claim_groups({"g": {"a": 1}}, "g") == frozenset()
    assert claim_groups({}, "g") == frozenset()


def test_proxy_user_by_id_alias_or_email(directory: Directory) -> None:
    for user in ("alice", "asmith", "alice@EXAMPLE.com"):
        caller = caller_from_proxy(directory, user)
        assert (caller.principal.id, caller.via, caller.scope) == (
            "alice",
            AuthMethod.PROXY_HEADER,
            Scope.DECIDE,
        )
    assert caller_from_proxy(directory, "bob", ["sre"]).principal.groups == {"data-governance", "sre"}
    with pytest.raises(AuthenticationFailed, match=r"'mallory' \(from the proxy\) is not in the directory"):
        caller_from_proxy(directory, "mallory")


def test_slack_user_by_the_email_slack_vouches_for(directory: Directory) -> None:
    caller = caller_from_slack_email(directory, "Bob@Example.com")
    assert (caller.principal.id, caller.via, caller.scope) == ("bob", AuthMethod.SLACK, Scope.DECIDE)
    with pytest.raises(
        AuthenticationFailed, match=r"Slack e-mail mallory@example\.com is not in the directory"
    ):
        caller_from_slack_email(directory, "mallory@example.com")
    with pytest.raises(AuthenticationFailed):
        caller_from_slack_email(directory, "bob")  # an id is not a mailbox


def test_teams_member_by_mailbox_else_sign_in_name_never_two_people(directory: Directory) -> None:
    caller = caller_from_teams_member(directory, "Bob@Example.com", "bob@tenant.onmicrosoft.com")
    assert (caller.principal.id, caller.via, caller.scope) == ("bob", AuthMethod.TEAMS, Scope.DECIDE)
    assert caller_from_teams_member(directory, None, "alice@example.com").principal.id == "alice"
    assert (
        caller_from_teams_member(directory, "nobody@else.example", "alice@example.com").principal.id
        == "alice"
    )
    with pytest.raises(AuthenticationFailed, match=r"name different principals \(alice, bob\)"):
        caller_from_teams_member(directory, "bob@example.com", "alice@example.com")
    with pytest.raises(AuthenticationFailed, match=r"\(mallory@example\.com\) is not in the directory"):
        caller_from_teams_member(directory, "mallory@example.com", "mallory@example.com")
    with pytest.raises(AuthenticationFailed, match="no e-mail or user principal name"):
        caller_from_teams_member(directory, None, None)
    with pytest.raises(AuthenticationFailed):
        caller_from_teams_member(directory, "bob", "bob")  # an id is not a mailbox


def test_os_account_is_the_kernels_record_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: ``$USER``/``$LOGNAME`` used to be the identity (old behaviour, wrong: any shell
    could say ``USER=bob``). Now the effective uid's passwd entry, whatever the environment says."""
    kernel = pwd.getpwuid(os.geteuid()).pw_name
    monkeypatch.setenv("USER", "asmith")
    monkeypatch.setenv("LOGNAME", "bob")
    assert os_account() == kernel
    monkeypatch.delenv("USER")
    monkeypatch.delenv("LOGNAME")
    assert os_account() == kernel


def test_the_clis_os_account_caller(monkeypatch: pytest.MonkeyPatch, directory: Directory) -> None:
    from gate_core.identity import _callers

    monkeypatch.setattr(_callers, "os_account", lambda: "asmith")
    caller = caller_from_os_account(directory)
    assert caller == Caller(directory.get("alice"), AuthMethod.LOCAL_OS_USER, Scope.ADMIN)
    assert caller.actor.email == "Alice@Example.com"
    monkeypatch.setattr(_callers, "os_account", lambda: "mallory")
    with pytest.raises(AuthenticationFailed, match="identified by your operating-system account"):
        caller_from_os_account(directory)
    monkeypatch.setattr(_callers, "os_account", lambda: "")
    with pytest.raises(AuthenticationFailed, match="cannot tell who you are"):
        caller_from_os_account(directory)
    assert caller_from_os_account(directory, "bob").principal.id == "bob"


def test_lineages_local_actor_is_named_by_the_directory_or_as_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from gate_core.identity import _callers

    settings = Settings.from_env({"GATEHOUSE_HOME": str(tmp_path)})
    monkeypatch.setattr(_callers, "os_account", lambda: "asmith")
    assert local_actor_name(settings) == "asmith"  # no directory: the OS name as is
    broken = Settings.from_env({"GATEHOUSE_HOME": str(tmp_path), "GATEHOUSE_DIRECTORY": str(tmp_path / "b")})
    (tmp_path / "b").write_text("principals: [", encoding="utf-8")
    assert local_actor_name(broken) == "asmith"  # unusable directory: as is, never an error
    named = Settings.from_env({"GATEHOUSE_HOME": str(tmp_path), "GATEHOUSE_DIRECTORY": str(tmp_path / "d")})
    (tmp_path / "d").write_text(DIRECTORY_YAML, encoding="utf-8")
    assert local_actor_name(named) == "alice"  # the alias, as the directory names it
    monkeypatch.setattr(_callers, "os_account", lambda: "somebody-else")
    assert local_actor_name(named) == "somebody-else"


def test_the_os_account_is_one_function(
    monkeypatch: pytest.MonkeyPatch, directory: Directory, tmp_path: Path
) -> None:
    """The kernel's account is read in ``os_account`` only: the CLI's caller and lineage's local
    actor both follow it, and $USER changes neither."""
    from gate_core.identity import _callers

    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setattr(_callers, "os_account", lambda: "bob")
    assert caller_from_os_account(directory).principal.id == "bob"
    settings = Settings.from_env(
        {"GATEHOUSE_HOME": str(tmp_path), "GATEHOUSE_DIRECTORY": str(tmp_path / "d")}
    )
    (tmp_path / "d").write_text(DIRECTORY_YAML, encoding="utf-8")
    assert local_actor_name(settings) == "bob"


def test_a_service_principal_is_resolved_but_never_decides() -> None:
    gk = example_gatekeeper()
    caller = caller_from_proxy(gk.directory, "etl-bot")
    assert caller.principal.kind is PrincipalKind.SERVICE
    gate = gk.open(GateRequest(action="export", requester="alice"), submitted_by=actor("alice"))
    with pytest.raises(gate_core.ServicePrincipalRefused):
        gk.approve(gate.id, actor=caller.actor)
