"""The identity-source port: where principals come from, as the Gatekeeper and every channel see it.

    IdentitySource ◄── Directory        the directory.yaml file (today's only source), with
                                        each principal's IdP subject links (issuer + sub)
                   ◄── (later) SCIM provisioning from the IdP

A source answers "which principal is this name?" for ids, aliases and e-mails, lists its
principals (the console's sign-in list, the configuration audit) and has a content hash, audited
whenever the principals in force change. An IdP identity (issuer + ``sub``) names a principal only
through the source's link (``by_subject``); ``subjects_of`` lets a channel refuse an e-mail match
for a principal that names other subjects at the same IdP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from gate_core.identity._directory import Directory
from gate_core.identity._principal import IdpSubject, Principal

if TYPE_CHECKING:
    from gate_core._home import Settings


class IdentitySource(Protocol):
    """Principals by id, alias or e-mail. Lookups of an unknown identity raise ``UnknownPrincipal``
    (``get``, ``by_email``) or return None (``find``); there is no implicit principal."""

    def __iter__(self) -> Iterator[Principal]: ...

    def __len__(self) -> int: ...

    @property
    def content_hash(self) -> str:
        """SHA-256 of the principals in force, so the audit records each version once."""
        ...

    def get(self, principal_id: str) -> Principal:
        """By id, alias or e-mail."""
        ...

    def find(self, principal_id: str) -> Principal | None: ...

    def by_email(self, email: str) -> Principal:
        """By e-mail only, compared in canonical form (the channels that prove a mailbox use it)."""
        ...

    def by_subject(self, issuer: str, subject: str) -> Principal | None:
        """The principal linked to this IdP identity (issuer without a trailing ``/``, exact ``sub``)."""
        ...

    def subjects_of(self, principal_id: str) -> tuple[IdpSubject, ...]:
        """The IdP identities a principal is linked to (none when unknown)."""
        ...


def load_source(settings: Settings) -> IdentitySource:
    """The identity source a Gatehouse home configures: today its directory file. Raises
    ``DirectoryError`` when the file is missing or invalid."""
    return Directory.load(settings.directory_path)
