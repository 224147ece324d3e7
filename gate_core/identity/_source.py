"""The identity-source port: where principals come from, as the Gatekeeper and every channel see it.

    IdentitySource ◄── Directory        the directory.yaml file, with each principal's IdP
                                        subject links (issuer + sub)
                   ◄── CombinedSource   the file + the people an IdP provisions over SCIM
                                        (``_provisioned.py``), read from the store's change log

A source answers "which principal is this name?" for ids, aliases and e-mails, lists its
principals (the console's sign-in list, the configuration audit) and has a content hash, audited
whenever the principals in force change. An IdP identity (issuer + ``sub``) names a principal only
through the source's link (``by_subject``); ``subjects_of`` lets a channel refuse an e-mail match
for a principal that names other subjects at the same IdP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol, cast

import yaml
from pydantic import ValidationError

from gate_core._errors import ConfigError
from gate_core.identity._directory import Directory
from gate_core.identity._principal import IdpSubject, Principal
from gate_core.identity._provisioned import CombinedSource, DirectoryChanges, ProvisioningConfig

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


def has_departed(source: IdentitySource, name: str) -> bool:
    """Whether ``name`` (id or e-mail) is a person the IdP deactivated or deleted: every channel
    refuses them, even one whose proof (an IdP token, a session) would still name them. An optional
    capability of a source (``departed(name)``): sources without it know no departures."""
    departed = getattr(source, "departed", None)
    return bool(departed(name)) if callable(departed) else False


def pinned(source: IdentitySource) -> IdentitySource:
    """``source`` as of one reading, for work judged as of one moment (a batch of decisions, one
    gate's opening): a source that reads a change log before every lookup (``CombinedSource``)
    gives a view answering from one read; any other source is already fixed and is returned."""
    pin = getattr(source, "pinned", None)
    return cast(IdentitySource, pin()) if callable(pin) else source


def load_source(settings: Settings, provisioned: DirectoryChanges | None = None) -> IdentitySource:
    """The identity source a Gatehouse home configures: its directory file, combined with the
    people an IdP provisions (SCIM) when the store's change log is given. Raises
    ``DirectoryError`` when the file is missing or invalid."""
    directory = Directory.load(settings.directory_path)
    if provisioned is None:
        return directory
    return CombinedSource(directory, provisioned, provisioning_config(settings))


def provisioning_config(settings: Settings) -> ProvisioningConfig:
    """``scim:`` of ``$GATEHOUSE_HOME/service.yaml`` (the group mapping the CLI and the service
    must agree on); defaults when the file or the section is absent."""
    path = settings.home / "service.yaml"
    if not path.is_file():
        return ProvisioningConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    section = data.get("scim") if isinstance(data, dict) else None
    try:
        return ProvisioningConfig.model_validate(section or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: scim.{where}: {first['msg']}") from exc
