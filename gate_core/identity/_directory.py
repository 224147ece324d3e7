"""The directory file: one IdentitySource, principals with their e-mail, groups and kind, from YAML.

    principals:
      - id: alice
        email: alice@example.com
        display_name: Alice Liddell
        groups: [data-engineering]
        aliases: [alice.l]          # other names the same principal signs in with (OS user, SSO login)
        idp_subjects:               # her accounts at identity providers: issuer + the IdP's `sub`
          - {issuer: https://login.example.com, subject: 00u1a2b3c4}
      - id: etl-bot
        kind: service

An identity presented by any channel (OS user, token, OIDC subject/e-mail, Slack e-mail) resolves
to exactly one principal here or is refused — there is no implicit principal. Ids and aliases are
looked up as written; e-mails in their canonical form (``_canonical.py``), whatever their spelling;
IdP subjects by issuer (without a trailing ``/``) and the exact ``sub``.

A file in which two principals share one canonical identity — ``bob@example.com`` and
``bob+2@example.com``, ``alice`` and a Cyrillic ``аlice``, an alias that is another's id — is
refused at load, naming both: one person is one principal, or a two-person rule is one person.
Two principals linked to one IdP subject are refused the same way.
(Directories built in code are not checked, so the core's own refusals can be tested against one.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gate_core._errors import DirectoryError, UnknownPrincipal
from gate_core._hashing import canonical_json, sha256_hex
from gate_core.identity._canonical import canonical_email, identity_key
from gate_core.identity._principal import IdpSubject, Principal, PrincipalKind


class _Link(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issuer: str = Field(min_length=1, max_length=500, pattern=r"^https?://\S+$")
    subject: str = Field(min_length=1, max_length=255)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._@+-]+$")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    display_name: str = ""
    groups: list[str] = []
    kind: PrincipalKind = PrincipalKind.HUMAN
    aliases: list[str] = []
    idp_subjects: list[_Link] = []


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    principals: list[_Entry]


class Directory:
    """An immutable lookup of principals by id, alias or e-mail: the ``IdentitySource`` a
    ``directory.yaml`` file describes (``Directory.load``), or one built in code for tests."""

    def __init__(
        self,
        principals: Iterable[Principal],
        aliases: dict[str, str] | None = None,
        subjects: Mapping[str, Iterable[IdpSubject]] | None = None,
    ) -> None:
        self._by_id: dict[str, Principal] = {}
        self._by_email: dict[str, Principal] = {}
        for principal in principals:
            if principal.id in self._by_id:
                raise DirectoryError(f"principal id {principal.id!r} appears twice")
            self._by_id[principal.id] = principal
            if principal.email:
                self._by_email.setdefault(canonical_email(principal.email), principal)
        self._aliases = dict(aliases or {})
        for alias, target in self._aliases.items():
            if target not in self._by_id:
                raise DirectoryError(f"alias {alias!r} points at unknown principal {target!r}")
        self._subjects: dict[str, tuple[IdpSubject, ...]] = {}
        self._by_subject: dict[IdpSubject, Principal] = {}
        for owner, links in (subjects or {}).items():
            if owner not in self._by_id:
                raise DirectoryError(f"IdP subjects are linked to unknown principal {owner!r}")
            normalised = tuple(dict.fromkeys(IdpSubject.of(s.issuer, s.subject) for s in links))
            for link in normalised:
                other = self._by_subject.setdefault(link, self._by_id[owner])
                if other.id != owner:
                    raise DirectoryError(
                        f"principals {other.id!r} and {owner!r} are both linked to IdP {link}: "
                        "one IdP account is one person"
                    )
            if normalised:
                self._subjects[owner] = normalised

    @classmethod
    def load(cls, path: str | Path) -> Directory:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DirectoryError(f"{path}: cannot read directory file: {exc.strerror or exc}") from exc
        return cls.parse(text, source=str(path))

    @classmethod
    def parse(cls, text: str, *, source: str = "<string>") -> Directory:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DirectoryError(f"{source}: not valid YAML: {exc}") from exc
        try:
            parsed = _File.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise DirectoryError(f"{source}: {where}: {first['msg']}") from exc
        principals = [
            Principal(
                id=e.id, email=e.email, display_name=e.display_name, groups=frozenset(e.groups), kind=e.kind
            )
            for e in parsed.principals
        ]
        aliases = {alias: e.id for e in parsed.principals for alias in e.aliases}
        subjects = {
            e.id: [IdpSubject.of(link.issuer, link.subject) for link in e.idp_subjects]
            for e in parsed.principals
            if e.idp_subjects
        }
        _refuse_shared_identities(parsed.principals, source)
        try:
            return cls(principals, aliases, subjects)
        except DirectoryError as exc:
            raise DirectoryError(f"{source}: {exc}") from exc

    @property
    def aliases(self) -> dict[str, str]:
        """Alias -> principal id, as the file lists them."""
        return dict(self._aliases)

    def __iter__(self) -> Iterator[Principal]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def content_hash(self) -> str:
        rows = [p.model_dump(mode="json") for p in sorted(self, key=lambda p: p.id)]
        content: dict[str, object] = {"principals": rows, "aliases": self._aliases}
        if self._subjects:  # only when there are links, so a directory without any keeps its hash
            content["idp_subjects"] = {
                pid: sorted([s.issuer, s.subject] for s in links)
                for pid, links in sorted(self._subjects.items())
            }
        return sha256_hex(canonical_json(content))

    def get(self, principal_id: str) -> Principal:
        """By id, alias or — since orchestrators often name people by mailbox (Dagster+'s
        launching user, an SSO login) — by e-mail."""
        principal = self._by_id.get(principal_id) or self._by_id.get(self._aliases.get(principal_id, ""))
        if principal is None and "@" in principal_id:
            principal = self._by_email.get(canonical_email(principal_id))
        if principal is None:
            raise UnknownPrincipal(principal_id)
        return principal

    def find(self, principal_id: str) -> Principal | None:
        try:
            return self.get(principal_id)
        except UnknownPrincipal:
            return None

    def departed(self, name: str) -> bool:
        """A file's principals never depart: they are removed from the file instead."""
        return False

    def by_email(self, email: str) -> Principal:
        principal = self._by_email.get(canonical_email(email))
        if principal is None:
            raise UnknownPrincipal(email, "e-mail")
        return principal

    def by_subject(self, issuer: str, subject: str) -> Principal | None:
        return self._by_subject.get(IdpSubject.of(issuer, subject))

    @property
    def subject_links(self) -> dict[str, tuple[IdpSubject, ...]]:
        """Each principal's IdP subject links (a copy), to build a directory that extends this one."""
        return dict(self._subjects)

    def subjects_of(self, principal_id: str) -> tuple[IdpSubject, ...]:
        principal = self.find(principal_id)
        return self._subjects.get(principal.id, ()) if principal is not None else ()


def _refuse_shared_identities(entries: list[_Entry], source: str) -> None:
    owners: dict[str, str] = {}
    for entry in entries:
        keys = {identity_key("id", name) for name in (entry.id, *entry.aliases)}
        if entry.email:
            keys.add(identity_key("email", entry.email))
        for key in sorted(keys):
            other = owners.setdefault(key, entry.id)
            if other != entry.id:
                raise DirectoryError(
                    f"{source}: principals {other!r} and {entry.id!r} share one canonical identity "
                    f"({key}): one person must be one principal (merge them, or make one an alias)"
                )
