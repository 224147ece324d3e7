"""A policy rule's notify target, ``INSTANCE:ADDRESS``, parsed in one place.

    slack:#data-approvals   instance "slack",      address "#data-approvals"
    teams:governance        instance "teams",      address "governance"
    pager                   instance "pager",      address ""   (the instance needs no address)

The instance is a notifier named in ``service.yaml`` (``notifiers:``); what the address means is
that notifier's business (a Slack channel, a Teams webhook name, nothing at all). The policy is
checked for well-formed targets when it loads; whether an instance exists is known only to the
service, which says so loudly at start-up (a policy loads without any service configuration).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_INSTANCE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MAX_ADDRESS = 200


@dataclass(frozen=True)
class NotifyTarget:
    instance: str
    address: str = ""

    @classmethod
    def parse(cls, text: str) -> NotifyTarget:
        """Instance names are case-insensitive; surrounding blanks are dropped (as always)."""
        instance, _, address = text.partition(":")
        instance, address = instance.strip().lower(), address.strip()
        if not _INSTANCE.match(instance):
            raise ValueError(
                f"notify target {text[:80]!r}: want INSTANCE:ADDRESS where INSTANCE names a notifier "
                "of service.yaml (letters, digits, '-' or '_'), e.g. 'slack:#data-approvals'"
            )
        if len(address) > MAX_ADDRESS:
            raise ValueError(f"notify target {text[:80]!r}: the address is over {MAX_ADDRESS} characters")
        return cls(instance, address)

    def __str__(self) -> str:
        return f"{self.instance}:{self.address}" if self.address else self.instance
