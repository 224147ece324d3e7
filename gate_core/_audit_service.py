"""AuditService: the audit trail as the application sees it — append an extension's event, sign
checkpoints, verify the chain, read entries for export and the console. A sibling of the
Gatekeeper on the same store (``gatekeeper.audit``); the Gatekeeper appends its own entries
inside each gate's transaction and asks this service to sign when enough have piled up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gate_core._audit import (
    AuditDraft,
    AuditEntry,
    Checkpoint,
    CheckpointSigner,
    Event,
    VerifyReport,
    verify_chain,
)
from gate_core._errors import InvalidInput
from gate_core._models import Actor, require_storable
from gate_core._ports import AuditLog, Clock

_EXTENSION_EVENT = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*$")
# Extensions append under their own area ("lineage."), never the core's ("gate.", "decision."…).
_CORE_AREAS = frozenset(v.split(".")[0] for k, v in vars(Event).items() if k.isupper())


class AuditService:
    def __init__(
        self,
        log: AuditLog,
        clock: Clock,
        *,
        signer: CheckpointSigner | None = None,
        witness_path: Path | None = None,
        checkpoint_every: int = 256,
    ) -> None:
        self.log = log
        self.clock = clock
        self.signer = signer
        self.witness_path = witness_path
        self.checkpoint_every = checkpoint_every
        self._checkpointed_at: int | None = None  # log.appended when this process last signed
        self._signed_size = -1  # the head size this process last signed (checkpoint_if_moved)

    def record(
        self, event: str, *, actor: Actor, payload: Mapping[str, Any], gate_id: str | None = None
    ) -> None:
        """Append an extension's event (e.g. ``lineage.retention_purged``) to the audit trail,
        chained and checkpointed like the core's own. The core's areas are refused, so no
        caller can forge a gate's history; the payload must be JSON and must not hold secrets
        or contents (it is hashed into the chain and exported as is)."""
        if not _EXTENSION_EVENT.match(event) or event.split(".")[0] in _CORE_AREAS:
            raise InvalidInput(
                f"audit event {event!r} must be 'area.name' in lower case, in an area that is not "
                f"the core's own ({', '.join(sorted(_CORE_AREAS))})"
            )
        require_storable(dict(payload), "audit payload")
        self.log.append_audit([AuditDraft(event, self.clock.now(), actor, gate_id, dict(payload))])
        self.maybe_checkpoint()

    # ------------------------------------------------------------ signing

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head. Also appended to the witness file, outside the database."""
        if self.signer is None:
            return None
        size, head = self.log.audit_head()
        checkpoint = self.signer.sign(size, head, self.clock.now())
        self.log.add_checkpoint(checkpoint)
        if self.witness_path is not None:
            with self.witness_path.open("a", encoding="utf-8") as witness:
                witness.write(checkpoint.to_json() + "\n")
        self._checkpointed_at = self.log.appended
        self._signed_size = size
        return checkpoint

    def maybe_checkpoint(self) -> None:
        """Sign when the log has none yet, then after every ``checkpoint_every`` entries this
        process appended (counted in memory: no read on the hot path). The service's sweeper
        also signs whenever the head moved (``checkpoint_if_moved``), so no tail stays unsigned
        for long."""
        if self.signer is None:
            return
        if self._checkpointed_at is None:
            if not self.log.checkpoints():
                self.checkpoint()
                return
            self._checkpointed_at = 0
        if self.log.appended - self._checkpointed_at >= self.checkpoint_every:
            self.checkpoint()

    def checkpoint_if_moved(self) -> Checkpoint | None:
        """Sign the head if it moved (on any replica) since this process last signed it."""
        if self.signer is None or self.log.audit_head()[0] == self._signed_size:
            return None
        return self.checkpoint()

    # ------------------------------------------------------------ reading

    def verify(
        self, extra_checkpoints: Iterable[Checkpoint] = (), *, public_key: Ed25519PublicKey | None = None
    ) -> VerifyReport:
        """Recompute the chain and check every checkpoint (stored ones and ``extra_checkpoints``,
        e.g. a witness file's) with ``public_key``, by default the signer's."""
        key = public_key or (self.signer.public_key if self.signer else None)
        marks = list(self.log.checkpoints()) + list(extra_checkpoints)
        return verify_chain(self.log.audit_rows(), marks, key)

    def entries(self, after_seq: int = 0) -> Iterator[AuditEntry]:
        """Every entry after ``after_seq``, oldest first (a generator holding a read connection
        until it is exhausted or closed)."""
        return self.log.audit_entries(after_seq=after_seq)

    def size(self) -> int:
        """How many entries the trail holds."""
        return self.log.audit_head()[0]
