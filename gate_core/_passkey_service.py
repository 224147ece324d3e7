"""PasskeyService: the passkeys people register to sign decisions (issue 19).

Every change is an audit event committed with the row: ``passkey.registered`` carries the
credential id, the COSE public key, the relying party id and the origin, so the audit log alone
holds every key that can sign a decision (``gate_core._passkeys.PasskeyLedger`` verifies from it);
``passkey.removed`` and ``passkey.reset`` (an admin clearing a person's passkeys) end a key's
validity from that point of the log on. Registration's WebAuthn ceremony is checked by the
console adapter; this service receives the verified credential.
"""

from __future__ import annotations

from gate_core._audit import AuditDraft, Event
from gate_core._audit_service import AuditService
from gate_core._errors import InvalidInput, PermissionDenied
from gate_core._models import Actor, Principal, PrincipalKind, require_storable
from gate_core._passkeys import Passkey
from gate_core._ports import Clock, GateStore

MAX_PASSKEYS_PER_PERSON = 20
MAX_NAME = 100


def clean_name(name: str) -> str:
    name = " ".join(name.split())
    require_storable(name, "passkey name")
    if not name or len(name) > MAX_NAME:
        raise InvalidInput(f"a passkey's name is 1 to {MAX_NAME} characters")
    return name


class PasskeyService:
    def __init__(self, store: GateStore, clock: Clock, audit: AuditService) -> None:
        self.store = store
        self.clock = clock
        self.audit = audit

    def of(self, principal_id: str) -> list[Passkey]:
        return self.store.passkeys_of(principal_id)

    def get(self, credential_id: str) -> Passkey | None:
        return self.store.get_passkey(credential_id)

    def register(self, key: Passkey, *, actor: Actor) -> Passkey:
        """Keep a verified credential for ``key.principal_id`` (the signed-in person only)."""
        if actor.principal_id != key.principal_id:
            raise InvalidInput("a passkey is registered by its owner, signed in")
        key = Passkey(
            credential_id=key.credential_id,
            principal_id=key.principal_id,
            name=clean_name(key.name),
            public_key=key.public_key,
            sign_count=key.sign_count,
            rp_id=key.rp_id,
            origin=key.origin,
            created_at=self.clock.now(),
        )
        if len(self.of(key.principal_id)) >= MAX_PASSKEYS_PER_PERSON:
            raise InvalidInput(f"at most {MAX_PASSKEYS_PER_PERSON} passkeys per person; remove one first")
        event = AuditDraft(Event.PASSKEY_REGISTERED, key.created_at, actor, None, key.record())
        self.store.add_passkey(key, [event])
        self.audit.maybe_checkpoint()
        return key

    def rename(self, principal_id: str, credential_id: str, name: str) -> bool:
        return self.store.rename_passkey(principal_id, credential_id, clean_name(name))

    def remove(self, principal_id: str, credential_id: str, *, actor: Actor) -> bool:
        """The owner removes one of their passkeys; it signs nothing from this entry on."""
        now = self.clock.now()
        payload = {"credential_id": credential_id, "principal": principal_id}
        event = AuditDraft(Event.PASSKEY_REMOVED, now, actor, None, payload)
        removed = self.store.remove_passkeys(principal_id, credential_id, now, [event])
        self.audit.maybe_checkpoint()
        return removed > 0

    def reset(self, principal_id: str, *, actor: Actor, admin: Principal, reason: str = "") -> int:
        """An administrator (``ADMIN_GROUP``) clears every passkey of a person (a lost device);
        audited. ``admin`` is the verified principal behind ``actor``."""
        from gate_core._token_service import ADMIN_GROUP

        if (
            admin.id != actor.principal_id
            or admin.kind is not PrincipalKind.HUMAN
            or ADMIN_GROUP not in admin.groups
        ):
            raise PermissionDenied(
                f"{actor.principal_id} may not reset passkeys: only members of {ADMIN_GROUP} do"
            )
        require_storable(reason, "reason")
        now = self.clock.now()
        payload = {"principal": principal_id, "reason": reason}
        event = AuditDraft(Event.PASSKEY_RESET, now, actor, None, payload)
        removed = self.store.remove_passkeys(principal_id, None, now, [event])
        self.audit.maybe_checkpoint()
        return removed


__all__ = ["MAX_PASSKEYS_PER_PERSON", "PasskeyService", "clean_name"]
