"""The ports of the gate core: what it needs from the outside world, as protocols.

    Gatekeeper ──uses──► GateStore   (SQLAlchemy adapter: SqlStore, SQLite or PostgreSQL)
               ──uses──► Clock       (SystemClock; tests use gate_core.testing.ManualClock)
               ──uses──► IdentitySource (gate_core.identity: the directory file is one source)
               ──has───► TokenService (API tokens) and AuditService (checkpoints, verify, export)

``GateStore`` is the sum of smaller ports, one per kind of record — ``Gates``, ``AuditLog``,
``TokenStore``, ``NotificationLog``, ``ConfigVersions`` — so each reads on its own and the sibling
services ask only for the one they use; SqlStore implements them all on one database.

A store runs each ``mutate`` as one atomic unit: lock the gate, let the core judge it, write the
outcome and its audit entries, commit — or write nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from gate_core._audit import AuditDraft, AuditEntry, Checkpoint, StoredState
from gate_core._cosign import StoredCosignature
from gate_core._errors import GatehouseError
from gate_core._hash_worker import Rehash
from gate_core._models import Decision, Gate, GateStatus
from gate_core._passkeys import Passkey
from gate_core._tokens import ApiToken


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Mutation:
    """What the core decided to do to one gate, for the store to apply atomically.

    ``status`` moves the gate (compare-and-set from the status it was read in); ``raise_after``
    is raised once the rest is committed — so a refused decision is audited, yet still refused.
    """

    events: Sequence[AuditDraft] = ()
    status: GateStatus | None = None
    decided_at: datetime | None = None
    decided_by: tuple[str, ...] | None = None
    consumed_at: datetime | None = None
    decision: Decision | None = None
    person_key: str | None = None
    raise_after: GatehouseError | None = None


@dataclass(frozen=True, slots=True)
class GateFilter:
    status: GateStatus | None = None
    action: str | None = None
    dataset: str | None = None
    requester: str | None = None
    limit: int = 200
    ids: tuple[str, ...] = field(default=())
    runs: tuple[str, ...] = field(default=())  # RunContext.key() of each run: the gates of these runs


@dataclass(frozen=True, slots=True)
class GateState:
    """What a waiter needs to know of a gate each cycle — not the whole Gate (see gate_states)."""

    status: GateStatus
    expires_at: datetime


class NotificationRef(BaseModel):
    """Where a gate's request was posted, so the message can be updated with the outcome."""

    model_config = ConfigDict(frozen=True)

    gate_id: str
    target: str
    channel: str
    message_ref: str
    kind: str
    sent_at: datetime


class Gates(Protocol):
    """The gates themselves: created once, changed only through ``mutate``, read as stored."""

    def create_gate(self, gate: Gate, events: Sequence[AuditDraft]) -> tuple[Gate, bool]:
        """Insert a gate with its audit entries, or return the gate its idempotency key already
        names for the same submitter (``created`` False) — never a second gate for one key of
        one submitter, and never another submitter's gate."""
        ...

    def mutate(self, gate_id: str, change: Callable[[Gate], Mutation]) -> Gate: ...

    def mutate_many(
        self, changes: Sequence[tuple[str, Callable[[Gate], Mutation]]]
    ) -> list[Gate | GatehouseError]:
        """Many changes in one atomic unit (group commit), each judged after the ones before it."""
        ...

    def get_gate(self, gate_id: str) -> Gate: ...

    def list_gates(self, query: GateFilter) -> list[Gate]: ...

    def gate_states(self, ids: Sequence[str]) -> dict[str, GateState]:
        """Status and expiry of each known gate among ``ids`` (unknown ids are left out): one narrow
        read, so a waiter holding thousands of gates does not load them whole every cycle."""
        ...

    def due_for_expiry(self, now: datetime, limit: int = 500) -> list[str]: ...

    def claim_reminders(self, now: datetime, limit: int = 100) -> list[str]:
        """Ids of pending gates whose reminder is due, each claimed by exactly one caller (so one
        replica alone sends it)."""
        ...


class AuditLog(Protocol):
    """The append-only, hash-chained audit trail and its signed checkpoints."""

    appended: int  # audit entries appended through this store object (drives checkpoint cadence)

    def append_audit(self, events: Sequence[AuditDraft]) -> list[AuditEntry]: ...

    def audit_head(self) -> tuple[int, str]: ...

    def audit_rows(self, from_seq: int = 1) -> Generator[tuple[int, str, str | None, str, str, str]]: ...

    def stored_state(self) -> StoredState: ...

    # Another process re-checking the chain's hashes while verify scans (None: hash in process).
    def rehash_elsewhere(self) -> Rehash | None: ...

    def audit_entries(self, after_seq: int = 0) -> Iterator[AuditEntry]: ...

    def checkpoints(self) -> list[Checkpoint]: ...

    def latest_checkpoints(self, limit: int) -> list[Checkpoint]: ...

    def add_checkpoint(
        self, checkpoint: Checkpoint, nodes: Sequence[tuple[int, int, bytes]] = ()
    ) -> None: ...

    # The stored RFC 9162 tree (gate_core._tree): read by proofs, checked by verify, never trusted.
    def tree_nodes(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]: ...

    def tree_rows(self) -> Iterator[tuple[int, int, bytes]]: ...

    def audit_bodies(self, first_seq: int, last_seq: int) -> dict[int, str]: ...

    def add_cosignatures(self, cosignatures: Sequence[StoredCosignature], at: datetime) -> None: ...

    def cosignatures(self, size: int | None = None) -> list[StoredCosignature]: ...

    def cosigned_sizes(self) -> dict[str, int]: ...


class TokenStore(Protocol):
    """API tokens: only the hash of each secret is kept; creation and revocation are audited."""

    def add_token(self, token: ApiToken, secret_hash: str, events: Sequence[AuditDraft]) -> None: ...

    def get_token(self, token_id: str) -> tuple[ApiToken, str] | None: ...

    def list_tokens(self) -> list[ApiToken]: ...

    def revoke_token(self, token_id: str, at: datetime, events: Sequence[AuditDraft]) -> bool: ...


class PasskeyStore(Protocol):
    """Passkeys people registered to sign decisions; every change is audited with the key."""

    def add_passkey(self, key: Passkey, events: Sequence[AuditDraft]) -> None: ...

    def passkeys_of(self, principal_id: str) -> list[Passkey]: ...

    def get_passkey(self, credential_id: str) -> Passkey | None: ...

    def remove_passkeys(
        self, principal_id: str, credential_id: str | None, at: datetime, events: Sequence[AuditDraft]
    ) -> int: ...

    def advance_sign_count(self, credential_id: str, previous: int, new: int) -> bool: ...

    def rename_passkey(self, principal_id: str, credential_id: str, name: str) -> bool: ...


class NotificationLog(Protocol):
    """Where each gate's request was posted, so its messages can be updated later."""

    def add_notification(self, ref: NotificationRef) -> None: ...

    def notifications_for(self, gate_id: str) -> list[NotificationRef]: ...


class ConfigVersions(Protocol):
    def record_config(self, kind: str, content_hash: str, source: str, content: str, at: datetime) -> bool:
        """Remember a policy or directory version; False when this exact version was seen before."""
        ...


@dataclass(frozen=True, slots=True)
class StoreFigures:
    """What the store holds, counted in one read for monitoring (the service's ``/metrics``):
    the same on every replica, because it comes from the database, not from a process."""

    gates: dict[tuple[GateStatus, str], int]  # (status, rule) → gates
    expiring_undecided: dict[str, int]  # rule → PENDING gates nobody has decided, expiring soon
    audit_entries: int
    checkpoint_size: int  # entries the newest checkpoint covers (0: none yet)
    checkpoint_at: datetime | None  # when the newest checkpoint was signed


class Figures(Protocol):
    def figures(self, expiring_before: datetime) -> StoreFigures:
        """Counts for monitoring; ``expiring_before`` bounds "expiring soon"."""
        ...


class GateStore(
    Gates, AuditLog, TokenStore, PasskeyStore, NotificationLog, ConfigVersions, Figures, Protocol
):
    """Every port at once, on one database (SqlStore): a gate's change and its audit entries
    commit together, which is why the ports share one store object."""

    def close(self) -> None: ...
