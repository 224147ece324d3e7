"""People and groups an identity provider provisions (SCIM 2.0), as a versioned change log, and the
identity source that combines them with the directory file.

    DirectoryChange       one version: a User or Group resource as it now is (None: deleted)
    ProvisionedDirectory  the fold of the changes up to a version: SCIM resources by id
    DirectoryChanges      the port the store implements: the changes after a version, in order
    CombinedSource        IdentitySource: the file's principals (service principals, small teams)
                          + every *active* provisioned user, with the groups that hold them
    PinnedSource          the same as of one read of the log (``CombinedSource.pinned``)

The log is the directory's history: the state at any past moment is the fold of the changes
made until then (``ProvisionedDirectory.at``), so "who was in data-governance when bob approved?"
has an answer. ``CombinedSource`` reads the log's new versions before every lookup (one indexed
query), so a deactivation or a group change takes effect on the very next request on every
replica — there is no cache to wait out. Work judged as of one moment reads it once
(``PinnedSource``): a batch of decisions, read after its last request arrived, answers every
lookup of the batch from that read (it was one query per lookup, three per decision).

Groups map to policy approver groups by display name, or through ``ProvisioningConfig.groups``
(an explicit IdP-name → policy-group mapping; with a mapping, unmapped IdP groups grant nothing).
A provisioned person who shares a canonical identity with a file principal is refused at the
SCIM boundary; should one reach the log anyway (a file edited later), the file's principal wins
and the provisioned one is left out, so one person is never two principals.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from gate_core._hashing import canonical_json, sha256_hex
from gate_core.identity._canonical import identity_key
from gate_core.identity._directory import Directory
from gate_core.identity._principal import IdpSubject, Principal, PrincipalKind

ResourceKind = Literal["User", "Group"]
ADMIN_GROUP = "gatehouse-admins"  # the token service's administrators (gate_core._token_service)
PRINCIPAL_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@+-")


class ProvisioningConfig(BaseModel):
    """``scim:`` in service.yaml: turns the SCIM endpoint on and says how IdP groups map."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: dict[str, str] = Field(
        default_factory=dict,
        description="IdP group display name -> policy group; when set, only mapped groups count",
    )
    subject_issuer: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description=(
            "the OIDC issuer whose tokens' `sub` is the SCIM user's externalId (Okta: the user id; "
            "Entra ID only if externalId is mapped to the claim its tokens carry as sub): sign-ins "
            "there link to the provisioned person by subject, not by e-mail"
        ),
    )
    max_users: int = Field(default=20_000, ge=1, le=1_000_000)
    max_groups: int = Field(default=2_000, ge=1, le=100_000)
    max_members: int = Field(default=20_000, ge=1, le=1_000_000)

    def policy_group(self, display_name: str) -> str | None:
        """The policy group an IdP group grants. By display name, except ``gatehouse-admins``
        (token administration): that one only through an explicit mapping, so a SCIM credential
        cannot make more administrators by naming a group."""
        if not self.groups:
            return None if display_name == ADMIN_GROUP else display_name
        return self.groups.get(display_name)


@dataclass(frozen=True, slots=True)
class DirectoryChange:
    """One version of the provisioned directory: ``resource`` is the SCIM JSON the resource now has,
    None when it was deleted."""

    version: int
    at: datetime
    kind: ResourceKind
    resource_id: str
    resource: Mapping[str, Any] | None
    actor: str


class DirectoryChanges(Protocol):
    """The store's side: the change log, oldest first."""

    def changes_after(self, version: int, *, until: datetime | None = None) -> list[DirectoryChange]: ...


@dataclass
class ProvisionedDirectory:
    """SCIM resources by id, as of ``version`` (the fold of the change log)."""

    users: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    groups: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    version: int = 0

    def apply(self, changes: Iterable[DirectoryChange]) -> None:
        for change in changes:
            table = self.users if change.kind == "User" else self.groups
            if change.resource is None:
                table.pop(change.resource_id, None)
            else:
                table[change.resource_id] = change.resource
            self.version = change.version

    def copy(self) -> ProvisionedDirectory:
        return ProvisionedDirectory(dict(self.users), dict(self.groups), self.version)

    @classmethod
    def at(cls, changes: DirectoryChanges, moment: datetime | None = None) -> ProvisionedDirectory:
        """The directory as it was at ``moment`` (now when None)."""
        state = cls()
        state.apply(changes.changes_after(0, until=moment))
        return state

    def groups_of(self, user_id: str) -> list[str]:
        """Display names of the groups holding ``user_id`` directly."""
        return sorted(
            str(g.get("displayName", ""))
            for g in self.groups.values()
            if any(m.get("value") == user_id for m in g.get("members") or ())
        )

    def principals(self, config: ProvisioningConfig) -> list[Principal]:
        """One principal per *active* user: id = userName, primary (else first) e-mail, groups
        mapped to policy groups. Deactivated users are no principals: they decide nothing."""
        out: list[Principal] = []
        for user_id, user in sorted(self.users.items()):
            if not is_active(user):
                continue
            mapped = {config.policy_group(name) for name in self.groups_of(user_id)}
            out.append(
                Principal(
                    id=str(user["userName"]),
                    email=primary_email(user),
                    display_name=display_name(user),
                    groups=frozenset(g for g in mapped if g),
                    kind=PrincipalKind.HUMAN,
                )
            )
        return out

    def content(self, config: ProvisioningConfig) -> dict[str, Any]:
        """What an auditor needs of this version: every user (active or not, with its IdP links)
        and every group with its members' user names."""
        names = {uid: str(u.get("userName")) for uid, u in self.users.items()}
        return {
            "version": self.version,
            "users": [
                {
                    "id": uid,
                    "userName": names[uid],
                    "externalId": u.get("externalId"),
                    "active": is_active(u),
                    "emails": [e.get("value") for e in u.get("emails") or () if e.get("value")],
                    "displayName": display_name(u),
                }
                for uid, u in sorted(self.users.items())
            ],
            "groups": [
                {
                    "id": gid,
                    "displayName": g.get("displayName"),
                    "externalId": g.get("externalId"),
                    "policyGroup": config.policy_group(str(g.get("displayName", ""))),
                    "members": sorted(
                        names.get(str(m.get("value")), str(m.get("value"))) for m in g.get("members") or ()
                    ),
                }
                for gid, g in sorted(self.groups.items())
            ],
        }

    def content_hash(self, config: ProvisioningConfig) -> str:
        return sha256_hex(canonical_json(self.content(config)))

    def departed_keys(self) -> frozenset[str]:
        """The identity keys (userName, every e-mail) of every provisioned user now inactive."""
        return frozenset(
            key
            for user in self.users.values()
            if not is_active(user)
            for key in (
                identity_key("id", str(user.get("userName"))),
                *(identity_key("email", str(e["value"])) for e in user.get("emails") or () if e.get("value")),
            )
        )


def is_active(user: Mapping[str, Any]) -> bool:
    active = user.get("active", True)
    return active is not False  # SCIM: absent means active


def primary_email(user: Mapping[str, Any]) -> str | None:
    emails = [e for e in user.get("emails") or () if e.get("value")]
    chosen = next((e for e in emails if e.get("primary") is True), emails[0] if emails else None)
    return str(chosen["value"]) if chosen else None


def display_name(user: Mapping[str, Any]) -> str:
    name = user.get("name") or {}
    return str(user.get("displayName") or name.get("formatted") or "")


def identity_keys_of_user(user: Mapping[str, Any]) -> set[str]:
    """Every canonical key a SCIM user would claim: its userName (also as a mailbox when it is
    e-mail shaped, as Entra's UPNs are: lookups by e-mail would otherwise find it) and its e-mails."""
    user_name = str(user.get("userName", ""))
    keys = {identity_key("id", user_name)}
    if "@" in user_name:
        keys.add(identity_key("email", user_name))
    keys |= {identity_key("email", str(e["value"])) for e in user.get("emails") or () if e.get("value")}
    return keys


class PinnedSource:
    """The combined source as one read of the change log left it: every lookup, departure and the
    content hash answered from that read, without another query. Work judged as of one moment
    takes one (``CombinedSource.pinned``): a batch of decisions, read after each of them arrived,
    so a deactivation committed before a request still refuses it. Immutable: a newer read builds
    a new one."""

    def __init__(self, file: Directory, state: ProvisionedDirectory, config: ProvisioningConfig) -> None:
        self.file = file
        self.state = state  # never mutated: CombinedSource applies changes to a copy
        self.config = config
        self.merged = _merge(file, state, config)
        # Computed once per read, so a departure is one set intersection per name.
        self.departed_keys = state.departed_keys()

    def departed(self, name: str) -> bool:
        """Whether ``name`` (a userName or e-mail) was provisioned and is now inactive."""
        if not self.departed_keys:
            return False
        keys = {identity_key("id", name)} | ({identity_key("email", name)} if "@" in name else set())
        return not keys.isdisjoint(self.departed_keys)

    def __iter__(self) -> Iterator[Principal]:
        return iter(self.merged)

    def __len__(self) -> int:
        return len(self.merged)

    @property
    def content_hash(self) -> str:
        file_hash = self.file.content_hash
        if self.state.version == 0:  # nothing provisioned: the file's own version
            return file_hash
        provisioned = self.state.content_hash(self.config)
        return sha256_hex(canonical_json({"file": file_hash, "provisioned": provisioned}))

    def get(self, principal_id: str) -> Principal:
        return self.merged.get(principal_id)

    def find(self, principal_id: str) -> Principal | None:
        return self.merged.find(principal_id)

    def by_email(self, email: str) -> Principal:
        return self.merged.by_email(email)

    def by_subject(self, issuer: str, subject: str) -> Principal | None:
        return self.merged.by_subject(issuer, subject)

    def subjects_of(self, principal_id: str) -> tuple[IdpSubject, ...]:
        return self.merged.subjects_of(principal_id)


def _merge(file: Directory, state: ProvisionedDirectory, config: ProvisioningConfig) -> Directory:
    taken = {key for p in file for key in p.identity_keys}
    taken |= {identity_key("id", alias) for alias in file.aliases}
    people = [p for p in state.principals(config) if not taken & set(p.identity_keys)]
    return Directory([*file, *people], file.aliases, _subject_links(file, state, people, config))


def _subject_links(
    file: Directory, state: ProvisionedDirectory, people: list[Principal], config: ProvisioningConfig
) -> dict[str, tuple[IdpSubject, ...]]:
    """The file's links plus, with ``subject_issuer`` configured, each provisioned person's
    externalId as their subject there. A subject the file links already, or that two
    provisioned people carry, links nobody new: one IdP identity is never two people, and a
    SCIM client cannot take over a link the file holds."""
    links = file.subject_links
    issuer = config.subject_issuer
    if issuer is None:
        return links
    held = {subject for subjects in links.values() for subject in subjects}
    present = {p.id for p in people}
    claims: dict[IdpSubject, list[str]] = {}
    for user in state.users.values():
        external, name = user.get("externalId"), str(user.get("userName"))
        if isinstance(external, str) and external.strip() and name in present:
            claims.setdefault(IdpSubject.of(issuer, external.strip()), []).append(name)
    for subject, names in claims.items():
        if len(names) == 1 and subject not in held:
            links[names[0]] = (*links.get(names[0], ()), subject)
    return links


class CombinedSource:
    """The file's principals plus the active provisioned people, refreshed from the change log
    before every lookup (``IdentitySource``)."""

    def __init__(self, file: Directory, changes: DirectoryChanges, config: ProvisioningConfig) -> None:
        self.file = file
        self.changes = changes
        self.config = config
        self._lock = threading.Lock()
        self._pinned = PinnedSource(file, ProvisionedDirectory(), config)
        self._refresh()

    # -- the log ---------------------------------------------------------------------------
    def _refresh(self) -> PinnedSource:
        with self._lock:
            current = self._pinned
            new = self.changes.changes_after(current.state.version)
            if new:
                state = current.state.copy()  # a PinnedSource handed out keeps the state it was read with
                state.apply(new)
                self._pinned = PinnedSource(self.file, state, self.config)
            return self._pinned

    def pinned(self) -> PinnedSource:
        """The source as of one read of the change log, now: for work judged as of one moment."""
        return self._refresh()

    def replace_file(self, file: Directory) -> None:
        """Put a new version of the directory file in force (the service re-reads an edited file),
        keeping the provisioned people: SCIM and the file are two sources of one directory."""
        with self._lock:
            self.file = file
            self._pinned = PinnedSource(file, self._pinned.state, self.config)

    def snapshot(self) -> ProvisionedDirectory:
        """The provisioned directory as of now (a copy)."""
        return self._refresh().state.copy()

    def file_claims(self, keys: set[str]) -> str | None:
        """The file principal (id) holding any of these canonical keys, if one does."""
        for principal in self.file:
            if keys & set(principal.identity_keys):
                return principal.id
        for alias, target in self.file.aliases.items():
            if identity_key("id", alias) in keys:
                return target
        return None

    def departed(self, name: str) -> bool:
        return self._refresh().departed(name)

    # -- IdentitySource --------------------------------------------------------------------
    def __iter__(self) -> Iterator[Principal]:
        return iter(self._refresh())

    def __len__(self) -> int:
        return len(self._refresh())

    @property
    def content_hash(self) -> str:
        return self._refresh().content_hash

    def get(self, principal_id: str) -> Principal:
        return self._refresh().get(principal_id)

    def find(self, principal_id: str) -> Principal | None:
        return self._refresh().find(principal_id)

    def by_email(self, email: str) -> Principal:
        return self._refresh().by_email(email)

    def by_subject(self, issuer: str, subject: str) -> Principal | None:
        return self._refresh().by_subject(issuer, subject)

    def subjects_of(self, principal_id: str) -> tuple[IdpSubject, ...]:
        return self._refresh().subjects_of(principal_id)


__all__: Sequence[str] = (
    "CombinedSource",
    "DirectoryChange",
    "DirectoryChanges",
    "PinnedSource",
    "ProvisionedDirectory",
    "ProvisioningConfig",
    "directory_view",
)


def directory_view(source: object, moment: datetime | None = None) -> dict[str, Any]:
    """Who existed and who was in which group at ``moment`` (now when None): the provisioned
    people as the change log had them then, and the directory file's principals (the file's
    history is its audited hash: ``directory.loaded``). Groups are the policy groups."""
    file_principals: list[Principal] = []
    provisioned = ProvisionedDirectory()
    config = ProvisioningConfig()
    if isinstance(source, CombinedSource):
        file_principals = list(source.file)
        provisioned = ProvisionedDirectory.at(source.changes, moment)
        config = source.config
    elif isinstance(source, Directory):
        file_principals = list(source)
    people: list[dict[str, Any]] = [
        {
            "id": p.id,
            "email": p.email,
            "kind": p.kind.value,
            "groups": sorted(p.groups),
            "source": "file",
            "active": True,
        }
        for p in file_principals
    ]
    active = {p.id: p for p in provisioned.principals(config)}
    for user_id, user in sorted(provisioned.users.items()):
        name = str(user.get("userName"))
        mapped = {config.policy_group(g) for g in provisioned.groups_of(user_id)}
        people.append(
            {
                "id": name,
                "email": primary_email(user),
                "kind": PrincipalKind.HUMAN.value,
                "groups": sorted(g for g in mapped if g),
                "source": "scim",
                "active": name in active,
                "externalId": user.get("externalId"),
            }
        )
    groups: dict[str, list[str]] = {}
    for person in people:
        if person["active"]:
            for group in person["groups"]:
                groups.setdefault(group, []).append(person["id"])
    return {
        "at": moment.isoformat() if moment else None,
        "version": provisioned.version,
        "principals": sorted(people, key=lambda p: str(p["id"])),
        "groups": {g: sorted(m) for g, m in sorted(groups.items())},
    }
