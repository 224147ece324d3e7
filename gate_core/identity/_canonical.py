"""One canonical form for identities, so that two spellings of one person compare equal everywhere.

    canonical_identity(" Ａlice ")               ->  "alice"
    canonical_identity("аlice")  (Cyrillic а)    ->  "alice"
    identity_key("email", "Bob+2@Example.com")   ->  "email:bob@exarnple.corn"   (m → rn: a skeleton)

Every comparison of identities goes through ``canonical_identity``: ``Principal.identity_keys`` and
``person_key`` (who requested a gate, who counts once in a quorum), the directory's e-mail index, and
the self-approval and duplicate-decision checks. Nothing else lower-cases or strips an identity.

Keys are ``<kind>:<canonical value>`` — the format gates have always stored in
``requester_identities`` and decisions in ``person_key``. Keys stored before every value was
canonical (``id:Alice``) are read through ``canonical_key``, so old gates still match their
requesters.

The form: NFKC (compatibility forms such as full-width letters fold to their plain letters),
Unicode case folding (``ß`` → ``ss``, not just ``lower()``), surrounding whitespace trimmed, then
the UTS #39 confusable skeleton (Cyrillic ``а`` and Latin ``a`` are one letter; ``confusables.tsv``
beside this module is Unicode's table, version in its header), repeated until nothing changes so
the form is its own canonical form. E-mail keys also fold the sub-address: ``bob+2@x`` is
``bob@x`` (``canonical_email``). The skeleton is a comparison key, not a name: it may read oddly
(``"paypal"`` and ``"pаypаl"`` share one) and is never shown as who someone is.
"""

from __future__ import annotations

import functools
import unicodedata
from importlib import resources
from typing import Literal

IdentityKind = Literal["id", "email"]


@functools.cache
def _prototypes() -> dict[str, str]:
    table: dict[str, str] = {}
    text = resources.files("gate_core.identity").joinpath("confusables.tsv").read_text("utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            source, target = line.split("\t")
            table[chr(int(source, 16))] = "".join(chr(int(cp, 16)) for cp in target.split())
    return table


def _folded(text: str) -> str:
    # Case folding can leave text that is not NFKC any more (and NFKC can expose whitespace), so
    # normalise on both sides of it; this is Unicode's NFKC_Casefold in effect.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold()).strip()


def _skeleton(text: str) -> str:
    """UTS #39 skeleton: NFD, each character replaced by its prototype, NFD again."""
    table = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(table.get(c, c) for c in decomposed))


@functools.lru_cache(maxsize=8192)  # pure, and on every request's path (token owner, quorum, involved)
def canonical_identity(text: str) -> str:
    """Trimmed, NFKC-normalised, case-folded and reduced to its confusable skeleton. Idempotent:
    canonical text is its own canonical form (folding and skeleton alternate to a fixed point).

    Folding comes first so that every case variant is one identity; the skeleton then joins
    look-alikes across scripts (Cyrillic ``а``, Greek ``ο``) and within one (``1`` and ``l``)."""
    current = _folded(text)
    for _ in range(8):  # a folded prototype may have a prototype of its own: a few rounds at most
        following = _folded(_skeleton(current))
        if following == current:
            return current
        current = following
    return current


@functools.lru_cache(maxsize=8192)
def canonical_email(text: str) -> str:
    """A mailbox's canonical form: ``canonical_identity`` with the sub-address folded
    (``bob+2@example.com`` → ``bob@example.com``): one mailbox, one person."""
    canonical = canonical_identity(text)
    local, at, domain = canonical.rpartition("@")
    if not at:
        return canonical
    return f"{local.partition('+')[0] or local}@{domain}"


def identity_key(kind: IdentityKind, value: str) -> str:
    """The key one identity is matched on: ``id:<canonical id>`` or ``email:<canonical e-mail>``."""
    return f"{kind}:{canonical_email(value) if kind == 'email' else canonical_identity(value)}"


def canonical_key(key: str) -> str:
    """A stored key in today's canonical form (keys stored by older versions were only partly folded)."""
    kind, _, value = key.partition(":")
    return f"{kind}:{canonical_email(value) if kind == 'email' else canonical_identity(value)}"


def person_key(principal_id: str, email: str | None) -> str:
    """One key per real person: the e-mail when known (so the same mailbox under two ids is one
    person), otherwise the id."""
    return identity_key("email", email) if email else identity_key("id", principal_id)


def same_person(id_a: str, email_a: str | None, id_b: str, email_b: str | None) -> bool:
    """The same id, or the same e-mail under two ids (both canonical): one person, who counts once
    and never decides what they asked for."""
    if email_a and email_b and identity_key("email", email_a) == identity_key("email", email_b):
        return True
    return identity_key("id", id_a) == identity_key("id", id_b)
