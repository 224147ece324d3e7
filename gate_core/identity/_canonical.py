"""One canonical form for identities, so that two spellings of one person compare equal everywhere.

    canonical_identity(" Ａlice@Example.COM ")  ->  "alice@example.com"
    identity_key("email", "Alice@Example.com")  ->  "email:alice@example.com"

Every comparison of identities goes through ``canonical_identity``: ``Principal.identity_keys`` and
``person_key`` (who requested a gate, who counts once in a quorum), the directory's e-mail index, and
the self-approval and duplicate-decision checks. Nothing else lower-cases or strips an identity.

Keys are ``<kind>:<canonical value>`` — the format gates have always stored in
``requester_identities`` and decisions in ``person_key``. Keys stored before every value was
canonical (``id:Alice``) are read through ``canonical_key``, so old gates still match their
requesters.

What the form is today: NFKC (compatibility forms such as full-width letters fold to their plain
letters), Unicode case folding (``ß`` → ``ss``, not just ``lower()``), surrounding whitespace trimmed.
A later change adds the UTS #39 confusable skeleton (inside ``canonical_identity``) and e-mail
``+tag`` folding (the ``"email"`` branch of ``identity_key``); both are local to this module.
"""

from __future__ import annotations

import unicodedata
from typing import Literal

IdentityKind = Literal["id", "email"]


def canonical_identity(text: str) -> str:
    """Trimmed, NFKC-normalised and case-folded. Idempotent: canonical text is its own canonical form."""
    # Case folding can leave text that is not NFKC any more (and NFKC can expose whitespace), so
    # normalise on both sides of it; this is Unicode's NFKC_Casefold in effect.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return folded.strip()


def identity_key(kind: IdentityKind, value: str) -> str:
    """The key one identity is matched on: ``id:<canonical id>`` or ``email:<canonical e-mail>``."""
    return f"{kind}:{canonical_identity(value)}"


def canonical_key(key: str) -> str:
    """A stored key in today's canonical form (keys stored by older versions were only partly folded)."""
    kind, _, value = key.partition(":")
    return f"{kind}:{canonical_identity(value)}"


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
