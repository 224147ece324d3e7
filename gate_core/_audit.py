"""The tamper-evident audit trail: hash chain, signed checkpoints, verification, control ids.

Each entry's ``body`` is the canonical JSON of ``{seq, at, event, actor, gate, payload}`` and

    hash(n) = SHA-256( hash(n-1) + "\\n" + body(n) ),   hash(0) = 64 × "0"

so editing, deleting, inserting or reordering any entry breaks every later hash. A checkpoint
signs ``(size, head hash, time)`` with an Ed25519 key kept outside the database; a log cut back
behind a checkpoint, or rewritten wholesale into a self-consistent forgery, no longer matches a
signed checkpoint, which anyone holding the public key can check.

Bodies never hold dataset contents or secrets: requests are recorded by name, tag and hash, and
parameters whose names look like credentials are replaced by a marker (the binding hash still
covers their real values).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gate_core._errors import AuditError
from gate_core._hash_worker import entry_hash
from gate_core._merkle import EMPTY_ROOT, NODE_LEVEL, fold
from gate_core._models import Actor, canonical_json, run_key
from gate_core._passkeys import PasskeyLedger

GENESIS_HASH = "0" * 64
CHECKPOINT_DOMAIN = "gatehouse-audit-checkpoint/v1"
# v2 also signs the RFC 9162 Merkle root at the checkpoint's size: the trusted anchor proofs are
# built against, so the stored tree (gh_audit_tree) is checked against it, never trusted itself.
CHECKPOINT_DOMAIN_V2 = "gatehouse-audit-checkpoint/v2"

_SECRET_NAME = re.compile(r"(pass(word|wd)?|secret|token|api[_-]?key|private[_-]?key|credential|auth)", re.I)
REDACTED = "[redacted]"


class Event:
    """Audit event names. Stable: exports and control mappings key on them."""

    GATE_REQUESTED = "gate.requested"
    POLICY_EVALUATED = "policy.evaluated"
    DECISION_RECORDED = "decision.recorded"
    DECISION_REFUSED = "decision.refused"
    GATE_APPROVED = "gate.approved"
    GATE_REJECTED = "gate.rejected"
    GATE_EXPIRED = "gate.expired"
    GATE_CANCELLED = "gate.cancelled"
    GATE_CONSUMED = "gate.consumed"
    POLICY_LOADED = "policy.loaded"
    DIRECTORY_LOADED = "directory.loaded"
    DIRECTORY_CHANGED = "directory.changed"  # one SCIM change: what changed, and the content after
    ACCESS_REFUSED = "access.refused"  # a departed person's credential or session, refused
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"
    PASSKEY_REGISTERED = "passkey.registered"
    PASSKEY_REMOVED = "passkey.removed"
    PASSKEY_RESET = "passkey.reset"


# Which controls each event evidences. Every entry also evidences the log's own integrity
# (NIST AU-9 protection of audit information, AU-10 non-repudiation), added by control_ids().
CONTROL_IDS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    Event.GATE_REQUESTED: {"soc2": ("CC8.1",), "iso27001": ("A.8.32",), "nist80053": ("CM-3",)},
    Event.POLICY_EVALUATED: {"soc2": ("CC6.1",), "iso27001": ("A.5.15",), "nist80053": ("AC-3", "AC-6")},
    Event.DECISION_RECORDED: {
        "soc2": ("CC6.3", "CC8.1"),
        "iso27001": ("A.5.18", "A.8.32"),
        "nist80053": ("AC-6", "CM-3"),
    },
    Event.DECISION_REFUSED: {
        "soc2": ("CC6.1", "CC6.3"),
        "iso27001": ("A.5.15",),
        "nist80053": ("AC-5", "AC-6"),
    },
    Event.GATE_APPROVED: {"soc2": ("CC8.1",), "iso27001": ("A.8.32",), "nist80053": ("CM-3",)},
    Event.GATE_REJECTED: {"soc2": ("CC8.1",), "iso27001": ("A.8.32",), "nist80053": ("CM-3",)},
    Event.GATE_EXPIRED: {"soc2": ("CC8.1",), "iso27001": ("A.8.32",), "nist80053": ("CM-3",)},
    Event.GATE_CANCELLED: {"soc2": ("CC8.1",), "iso27001": ("A.8.32",), "nist80053": ("CM-3",)},
    Event.GATE_CONSUMED: {"soc2": ("CC8.1",), "iso27001": ("A.8.32",), "nist80053": ("CM-3", "CM-5")},
    Event.POLICY_LOADED: {"soc2": ("CC6.1", "CC8.1"), "iso27001": ("A.5.15",), "nist80053": ("AC-3", "CM-3")},
    Event.DIRECTORY_LOADED: {
        "soc2": ("CC6.2", "CC6.3"),
        "iso27001": ("A.5.16", "A.5.18"),
        "nist80053": ("AC-2",),
    },
    Event.DIRECTORY_CHANGED: {
        "soc2": ("CC6.2", "CC6.3"),
        "iso27001": ("A.5.16", "A.5.18"),
        "nist80053": ("AC-2", "AC-2(4)"),
    },
    Event.ACCESS_REFUSED: {
        "soc2": ("CC6.1", "CC6.2"),
        "iso27001": ("A.5.18",),
        "nist80053": ("AC-2", "AC-3"),
    },
    Event.TOKEN_CREATED: {"soc2": ("CC6.1", "CC6.2"), "iso27001": ("A.5.17",), "nist80053": ("IA-5", "AC-2")},
    Event.TOKEN_REVOKED: {"soc2": ("CC6.2", "CC6.3"), "iso27001": ("A.5.17",), "nist80053": ("IA-5", "AC-2")},
    Event.PASSKEY_REGISTERED: {
        "soc2": ("CC6.1", "CC6.2"),
        "iso27001": ("A.5.17",),
        "nist80053": ("IA-2", "IA-5"),
    },
    Event.PASSKEY_REMOVED: {
        "soc2": ("CC6.2", "CC6.3"),
        "iso27001": ("A.5.17",),
        "nist80053": ("IA-5", "AC-2"),
    },
    Event.PASSKEY_RESET: {"soc2": ("CC6.2", "CC6.3"), "iso27001": ("A.5.17",), "nist80053": ("IA-5", "AC-2")},
    # An extension's event (area "lineage."): what a run touched beyond its approval, found after
    # the fact from the orchestrator's own OpenLineage events (monitoring and detection controls).
    "lineage.out_of_scope": {
        "soc2": ("CC6.1", "CC7.2"),
        "iso27001": ("A.5.15", "A.8.16"),
        "nist80053": ("AC-6", "AU-6", "SI-4"),
    },
}
_ALWAYS = {"nist80053": ("AU-9", "AU-10")}


def control_ids(event: str) -> dict[str, tuple[str, ...]]:
    mapped = CONTROL_IDS.get(event, {})
    out: dict[str, tuple[str, ...]] = {}
    for framework in ("soc2", "iso27001", "nist80053"):
        out[framework] = tuple(mapped.get(framework, ())) + _ALWAYS.get(framework, ())
    return out


def redact_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Replace values whose key names look like credentials, at any depth."""

    def walk(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: (REDACTED if _SECRET_NAME.search(str(k)) else walk(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return dict(walk(parameters))


@dataclass(frozen=True, slots=True)
class AuditDraft:
    """An event to append; the store assigns its sequence number and chains it."""

    event: str
    at: datetime
    actor: Actor
    gate_id: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    event: str
    actor: str
    gate_id: str | None
    body: str
    prev_hash: str
    hash: str

    def decoded(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


def entry_body(seq: int, draft: AuditDraft) -> str:
    return canonical_json(
        {
            "seq": seq,
            "at": draft.at.isoformat(),
            "event": draft.event,
            "actor": draft.actor.model_dump(mode="json"),
            "gate": draft.gate_id,
            "payload": draft.payload,
        }
    )


def chain_hash(prev_hash: str, body: str) -> str:
    return entry_hash(prev_hash, body)


def chain(prev_seq: int, prev_hash: str, drafts: Iterable[AuditDraft]) -> list[AuditEntry]:
    entries = []
    for offset, draft in enumerate(drafts, start=1):
        seq = prev_seq + offset
        body = entry_body(seq, draft)
        digest = chain_hash(prev_hash, body)
        entries.append(
            AuditEntry(
                seq, draft.at, draft.event, draft.actor.principal_id, draft.gate_id, body, prev_hash, digest
            )
        )
        prev_hash = digest
    return entries


# ---------------------------------------------------------------- checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    size: int
    head_hash: str
    at: datetime
    key_id: str
    signature: str  # hex
    root: str | None = None  # hex RFC 9162 root at ``size``; None on checkpoints signed before v2

    def message(self) -> bytes:
        return checkpoint_message(self.size, self.head_hash, self.at, self.root)

    def to_json(self) -> str:
        fields: dict[str, Any] = {
            "size": self.size,
            "head_hash": self.head_hash,
            "at": self.at.isoformat(),
            "key_id": self.key_id,
            "signature": self.signature,
        }
        if self.root is not None:
            fields["root"] = self.root
        return canonical_json(fields)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        data = json.loads(text)
        root = data.get("root")
        return cls(
            int(data["size"]),
            data["head_hash"],
            datetime.fromisoformat(data["at"]),
            data["key_id"],
            data["signature"],
            None if root is None else str(root),
        )


# The empty log's head: the checkpoint a signer extends when it has signed nothing yet.
GENESIS = Checkpoint(0, GENESIS_HASH, datetime.fromtimestamp(0, UTC), "", "")


def read_checkpoints(path: Path) -> list[Checkpoint]:
    """Checkpoints kept one JSON object a line (the witness file, an auditor's copy); none if
    the file does not exist, AuditError naming the line if one cannot be read."""
    if not path.exists():
        return []
    marks = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                marks.append(Checkpoint.from_json(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise AuditError(f"{path}:{number}: unreadable checkpoint ({exc})") from exc
    return marks


def checkpoint_message(size: int, head_hash: str, at: datetime, root: str | None = None) -> bytes:
    if root is None:
        return f"{CHECKPOINT_DOMAIN}\n{size}\n{head_hash}\n{at.isoformat()}\n".encode()
    return f"{CHECKPOINT_DOMAIN_V2}\n{size}\n{head_hash}\n{root}\n{at.isoformat()}\n".encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class CheckpointSigner:
    """Signs checkpoints with an Ed25519 key stored as PEM files outside the database."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls, private_path: Path, public_path: Path) -> CheckpointSigner:
        key = Ed25519PrivateKey.generate()
        private_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        private_path.chmod(0o600)
        public_path.write_bytes(public_pem(key.public_key()))
        return cls(key)

    @classmethod
    def load(cls, private_path: Path) -> CheckpointSigner:
        try:
            key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise AuditError(f"cannot load the audit signing key {private_path}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditError(f"{private_path} is not an Ed25519 private key")
        return cls(key)

    def sign_bytes(self, message: bytes) -> bytes:
        """The one operation a signer needs (an HSM or KMS signer implements just this)."""
        return self._key.sign(message)

    def sign(self, size: int, head_hash: str, at: datetime, root: bytes | None = None) -> Checkpoint:
        """Sign ``(size, head hash, time)`` and, given it, the Merkle root at ``size`` (v2)."""
        root_hex = None if root is None else root.hex()
        signature = self.sign_bytes(checkpoint_message(size, head_hash, at, root_hex)).hex()
        return Checkpoint(size, head_hash, at, self.key_id, signature, root_hex)


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot load the audit public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"{path} is not an Ed25519 public key")
    return key


def signature_valid(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    try:
        public_key.verify(bytes.fromhex(checkpoint.signature), checkpoint.message())
    except (InvalidSignature, ValueError):
        return False
    return True


# ---------------------------------------------------------------- verification


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    entries: int
    head_hash: str
    checkpoints_checked: int
    first_bad_seq: int | None = None
    problem: str = ""
    gate: str | None = None  # the gate whose stored state disagrees with the log, if that is the problem
    signed_decisions: int = 0  # passkey-signed decisions whose signature verified (gate_core._passkeys)
    witnessed_size: int | None = None  # the newest checkpoint a quorum of witnesses cosigned
    witnesses: tuple[str, ...] = ()  # who cosigned it
    # The RFC 9162 root recomputed from the entries at every checkpoint's size (on success): the
    # witness check needs roots at the sizes they cosigned, which are checkpoints' sizes.
    roots: Mapping[int, bytes] = field(default_factory=dict, repr=False, compare=False)

    def summary(self) -> str:
        if self.ok:
            witnessed = ""
            if self.witnessed_size is not None:
                witnessed = f", cosigned at size {self.witnessed_size} by {', '.join(self.witnesses)}"
                if self.entries > self.witnessed_size:
                    witnessed += f" ({self.entries - self.witnessed_size} newer entries not witnessed yet)"
            return (
                f"audit log intact: {self.entries} entries, head {self.head_hash[:16]}…, "
                f"{self.checkpoints_checked} signed checkpoint(s) verified, gate states match the log"
                + (
                    f", {self.signed_decisions} passkey-signed decision(s) verified"
                    if self.signed_decisions
                    else ""
                )
                + witnessed
            )
        if self.first_bad_seq is None and self.gate is None:
            return f"audit log NOT WITNESSED or TAMPERED: {self.problem}"
        if self.first_bad_seq is None:
            return f"audit log TAMPERED at gate {self.gate}: {self.problem}"
        return f"audit log TAMPERED at entry {self.first_bad_seq}: {self.problem}"


def _gate_json(gate_id: str | None) -> str:
    if gate_id is None:
        return "null"
    if gate_id.isalnum() and gate_id.isascii():  # every id the core makes: nothing to escape
        return f'"{gate_id}"'
    return _json_string(gate_id)


def _verdict(body: str, payload_at: int) -> str:
    """A decision entry's verdict: the payload's ``"verdict":"…"`` read in place (strings cannot
    hold an unescaped quote, so the pattern is a key), parsed in full only if it is not there."""
    start = body.find('"verdict":"', payload_at)
    if start >= 0:
        end = body.find('"', start + 11)
        value = body[start + 11 : end]
        if value.isalpha():
            return value
    return str(json.loads(body)["payload"].get("verdict"))


def _json_string(text: str) -> str:
    """``text`` as canonical_json writes it: json.dumps escapes non-ASCII where canonical bodies
    keep it, so it is the same only for ASCII — which is also where it is fast."""
    return json.dumps(text) if text.isascii() else canonical_json(text)


def _column_problem(body: str, seq: int, event: str, gate_id: str | None) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        return "entry body is not JSON"
    if (decoded.get("seq"), decoded.get("event"), decoded.get("gate")) != (seq, event, gate_id):
        return "indexed columns disagree with the hashed body"
    return "entry body is not in canonical form"


# The status each event leaves a gate in: replaying a gate's entries gives the status the
# database must show. A gate with no entry at all was never requested through the core.
STATUS_AFTER: Mapping[str, str] = {
    Event.GATE_REQUESTED: "PENDING",
    Event.GATE_APPROVED: "APPROVED",
    Event.GATE_REJECTED: "REJECTED",
    Event.GATE_EXPIRED: "EXPIRED",
    Event.GATE_CANCELLED: "CANCELLED",
    Event.GATE_CONSUMED: "CONSUMED",
}


_USABLE = frozenset({"APPROVED", "CONSUMED"})  # the only states a consumption may follow


@dataclass(frozen=True, slots=True)
class StoredState:
    """What the database says: every gate's status and its decisions counted by verdict
    (``gate id → status``, ``(gate id, verdict) → count``)."""

    statuses: Mapping[str, str]
    decisions: Mapping[tuple[str, str], int]
    moving: frozenset[str] = frozenset()  # gates that changed while the log was read: not judged
    runs: Mapping[str, str | None] | None = None  # gate id → stored run key (None: not checked)
    terms: Mapping[str, Terms] | None = None  # gate id → what its approval stands on (None: not checked)


class Terms(NamedTuple):
    """What a gate's approval stands on, fixed when it opened: the payload it binds (binding
    hash), the rule, how many distinct approvals it needs, from which groups (and a multi-group
    rule's requirements), who may break the glass, how a decider must have signed in, whether a
    decision must be signed (a passkey), and when it expires. The store reads them on every decision and
    consumption, and the log recorded them (``gate.requested``, ``policy.evaluated``): a store
    that disagrees was edited (a quorum lowered, an expiry pushed out, another payload bound to
    the approval). None: not in the log (nothing to compare). A tuple: ~150,000 gates compare at
    C speed when they agree."""

    binding_hash: str | None
    rule: str | None
    required_approvals: int | None
    expires_at: datetime | None
    approver_groups: str | None  # JSON text of the list
    signature: str | None  # the signature rule a decision must satisfy ("" for none)
    break_glass_groups: str | None  # JSON text of the list
    requirements: str | None  # JSON text of the list: a multi-group rule's groups and counts
    identified_by: str | None  # JSON text of the list: how a decider must have signed in

    def differs(self, logged: Terms) -> str | None:
        """The first term this (stored) one has otherwise than ``logged``, named."""
        if self == logged:
            return None
        for name, mine, theirs in zip(self._fields, self, logged, strict=True):
            if theirs is None or mine == theirs:
                continue
            if name in _JSON_TERMS and _same_json(mine, theirs):
                continue  # the same list, written another way
            return name
        return None


_JSON_TERMS = frozenset({"approver_groups", "break_glass_groups", "requirements", "identified_by"})


def _same_json(one: object, other: object) -> bool:
    try:
        return isinstance(one, str) and isinstance(other, str) and orjson.loads(one) == orjson.loads(other)
    except orjson.JSONDecodeError:
        return False


def settle(before: StoredState, after: StoredState) -> StoredState:
    """``after`` with every gate that differs from ``before`` marked as moving."""
    if before.statuses == after.statuses and before.decisions == after.decisions:
        return after  # nothing moved (every offline verify): no per-gate comparison
    changed = {
        g
        for g in set(before.statuses) | set(after.statuses)
        if before.statuses.get(g) != after.statuses.get(g)
    }
    changed |= {
        key[0]
        for key in set(before.decisions) | set(after.decisions)
        if before.decisions.get(key) != after.decisions.get(key)
    }
    return StoredState(after.statuses, after.decisions, frozenset(changed), after.runs, after.terms)


def check_state(
    replayed: Mapping[str, str],
    decided: Mapping[tuple[str, str], int],
    stored: StoredState,
    logged_runs: Mapping[str, str | None] | None = None,
    logged_terms: Mapping[str, Terms] | None = None,
) -> tuple[str, str] | None:
    """The first gate whose stored status or decisions disagree with the replayed log, and why:
    ``replayed`` is the status each gate's entries lead to, ``decided`` its ``decision.recorded``
    entries counted by verdict. A status the log never led to (APPROVED or CONSUMED without the
    entries that approve it) or a decision row without its entry means the state was edited
    behind the log's back.

    Compared in one pass over the gates; only the ones that disagree are sorted, to name the
    first (a million-entry log has ~150,000 gates, nearly always all in agreement)."""
    statuses, moving, stored_decisions = stored.statuses, stored.moving, stored.decisions
    wrong = [g for g, status in replayed.items() if statuses.get(g) != status and g not in moving]
    wrong += [g for g in statuses.keys() - replayed.keys() if g not in moving]
    if wrong:
        gate_id = min(wrong)
        status = statuses.get(gate_id)
        logged = replayed.get(gate_id)
        if status is None:
            return gate_id, f"gate {gate_id} is in the log but missing from the database"
        if logged is None:
            return gate_id, f"gate {gate_id} is {status} in the database but has no entry in the log"
        return gate_id, (
            f"gate {gate_id} is {status} in the database but {logged} by its log entries "
            f"(no audited decision made it {status})"
        )
    if logged_runs is not None and stored.runs is not None:
        runs = stored.runs
        moved = [g for g, key in logged_runs.items() if runs.get(g, key) != key and g not in moving]
        if moved:
            gate_id = min(moved)
            return gate_id, (
                f"gate {gate_id} is stored in another run than its logged request names (run_key "
                "edited: the lineage scope check finds a run's gates by it)"
            )
    if logged_terms is not None and stored.terms is not None:
        terms = stored.terms
        edited = {
            g: name
            for g, logged in logged_terms.items()
            if g in terms and g not in moving and (name := terms[g].differs(logged)) is not None
        }
        if edited:
            gate_id = min(edited)
            return gate_id, (
                f"gate {gate_id}'s stored {edited[gate_id]} is not the one its log entries record "
                "(edited: its approval would stand on other terms)"
            )
    if decided == stored_decisions:
        return None
    differ = [
        key
        for key in decided.keys() | stored_decisions.keys()
        if decided.get(key, 0) != stored_decisions.get(key, 0) and key[0] not in moving
    ]
    if differ:
        gate_id, verdict = key = min(differ)
        return gate_id, (
            f"gate {gate_id} has {stored_decisions.get(key, 0)} {verdict} decision(s) in the database "
            f"but {decided.get(key, 0)} in the log"
        )
    return None


_LOGGED_RUN = '"run":{"orchestrator":'
_DECODER = json.JSONDecoder()


def _logged_run_key(body: str) -> str | None:
    """The run key of a ``gate.requested`` entry's request. Found without parsing the body: in
    its canonical layout the request's ``run`` is the last key but ``target`` (a string, which
    cannot hold an unescaped quote), so the last ``"run":{"orchestrator":`` is the request's own,
    whatever its ``parameters`` hold. A body not in that layout gives None (nothing to compare)."""
    at = body.rfind(_LOGGED_RUN)
    if at < 0:
        return None
    try:
        run, _ = _DECODER.raw_decode(body, at + 6)
        return run_key(run["orchestrator"], run["pipeline"], run["run_id"])
    except (ValueError, KeyError, TypeError):
        return None


_BINDING = '{"binding_hash":"'


def _logged_binding(body: str, payload_at: int) -> str | None:
    """A ``gate.requested`` entry's binding hash: its payload's first key (canonical layout)."""
    if not body.startswith(_BINDING, payload_at):
        return None
    start = payload_at + len(_BINDING)
    return body[start : body.find('"', start)]


def _logged_terms(body: str, payload_at: int, binding_hash: str | None) -> Terms:
    """A ``policy.evaluated`` entry's terms (its payload, parsed: one small object per gate), with
    the binding hash its ``gate.requested`` entry logged."""
    try:
        payload = orjson.loads(body[payload_at : body.rindex(',"seq":')])
        quorum = payload.get("required_approvals")
        expires = payload.get("expires_at")
        rule = payload.get("rule")
        signature = payload.get("signature")
        return Terms(
            binding_hash,
            rule if isinstance(rule, str) else None,
            quorum if isinstance(quorum, int) and not isinstance(quorum, bool) else None,
            datetime.fromisoformat(expires).astimezone(UTC) if isinstance(expires, str) else None,
            terms_json(payload.get("approver_groups")),
            signature if isinstance(signature, str) else None,  # logged only when the rule has one
            terms_json(payload.get("break_glass_groups")),  # logged since these were compared
            terms_json(payload.get("requirements")),
            terms_json(payload.get("identified_by")),
        )
    except (ValueError, AttributeError, TypeError, OverflowError):
        return Terms(binding_hash, None, None, None, None, None, None, None, None)


def terms_json(value: object) -> str | None:
    """A list term as the JSON text ``Terms`` compares (the logged and the stored one alike), or
    None if it is not a list or cannot be written as JSON."""
    try:
        return orjson.dumps(value).decode() if isinstance(value, list) else None
    except orjson.JSONEncodeError:
        return None


def verify_chain(
    rows: Iterable[tuple[int, str, str | None, str, str, str]],
    checkpoints: Iterable[Checkpoint],
    public_key: Ed25519PublicKey | None,
    state: Callable[[], StoredState] | None = None,
    tree_nodes: Callable[[], Iterable[tuple[int, int, bytes]]] | None = None,
    hashed_elsewhere: Callable[[int], tuple[int, str] | None] | None = None,
) -> VerifyReport:
    """Verify rows ``(seq, event, gate_id, body, prev_hash, hash)`` in seq order against checkpoints.

    Names the first bad sequence number. Checkpoints are checked for their signature and against
    the chain: a checkpoint larger than the log means the tail was cut; one whose head hash — or,
    signed since v2, RFC 9162 Merkle root, recomputed here from the entries — differs from the log
    at its size means the log was rewritten. Without a public key there is nothing to trust the
    checkpoints by, so that is an error, never a skip: a self-consistent forgery recomputes every
    hash. With ``state``, every gate's stored status and decisions are checked against the
    replayed log; with ``tree_nodes`` (``(level, index, hash)`` of the stored Merkle tree), every
    stored node is checked against the tree recomputed from the entries: proofs are served from
    those nodes, so an edited one is evidence of tampering even though no proof built on it
    would verify. With ``hashed_elsewhere`` (``gate_core._hash_worker``: another process re-hashed
    the same rows), the rows' own hashes are not recomputed here; given the last entry that matters,
    it answers the first entry up to it whose hash does not match, as ``(seq, its prev_hash)``.
    """
    if public_key is None:
        raise AuditError(
            "no trust root: verifying needs the log's public key (--public-key or "
            "$GATEHOUSE_HOME/audit-signing.pub); without it a rewritten log recomputes every hash"
        )
    # The same checkpoint held twice (the database's and the witness file's copy, as the CLI
    # passes both) is checked once: one Ed25519 verification costs about as much as a hundred entries.
    marks = list(dict.fromkeys(checkpoints))
    wanted = {c.size for c in marks}
    hash_at: dict[int, str] = {0: GENESIS_HASH}
    root_at: dict[int, bytes] = {0: EMPTY_ROOT}
    # The state the log leads to, as plain dicts of strings (no object per gate for the
    # collector to walk): each gate's status, and its decision entries counted by verdict.
    replayed: dict[str, str] = {}
    decided: dict[tuple[str, str], int] = {}
    logged_runs: dict[str, str | None] = {}  # each gate's run key, from its gate.requested entry
    logged_bindings: dict[str, str | None] = {}  # and its binding hash
    logged_terms: dict[str, Terms] = {}  # what its approval stands on, from policy.evaluated
    evaluated = Event.POLICY_EVALUATED
    requested = Event.GATE_REQUESTED
    expected_seq = 1
    prev = GENESIS_HASH
    sha256 = hashlib.sha256
    status_after = STATUS_AFTER
    consumed, recorded = Event.GATE_CONSUMED, Event.DECISION_RECORDED
    passkeys = PasskeyLedger()
    passkey_events = PasskeyLedger.INTERESTING
    # The Merkle tree's right edge (one perfect subtree per set bit of the size, largest first)
    # and, per level from NODE_LEVEL up, every completed subtree's hash in index order: what
    # gh_audit_tree must hold. Kept as concatenated 32-byte digests, 1/8 of the leaf count.
    edge: list[bytes] = []
    push, pop = edge.append, edge.pop
    completed = [bytearray() for _ in range(64)]
    node_level = NODE_LEVEL
    # The column check: the indexed columns must be the hashed body's own. Checked by position in
    # the canonical layout ``{"actor":{…},"at":"…","event":…,"gate":…,"payload":{…},"seq":N}``
    # instead of parsing a million bodies: JSON strings cannot hold an unescaped quote, so the
    # first ``},"at":"`` ends the actor object, and event, gate and payload must follow the
    # timestamp exactly. The pieces are prepared: each event's ``,"event":…`` once, the gate's
    # ``,"gate":…,"payload":`` once per run of entries of one gate.
    event_parts: dict[str, str] = {}
    last_gate: str | None = None
    gate_part = ',"gate":null,"payload":'
    hash_here = hashed_elsewhere is None
    edited = "content does not match its hash (entry edited)"

    def bad(last_seen: int, report: VerifyReport) -> VerifyReport:
        """``report``, unless the hashes checked elsewhere found a bad entry at or before
        ``last_seen`` — the one this loop would have stopped at first."""
        found = None if hashed_elsewhere is None else hashed_elsewhere(last_seen)
        if found is None:
            return report
        return VerifyReport(False, found[0] - 1, found[1], 0, found[0], edited)

    for seq, event, gate_id, body, prev_hash, digest in rows:
        if seq != expected_seq:
            missing = expected_seq if seq > expected_seq else seq
            return bad(
                expected_seq - 1,
                VerifyReport(
                    False, expected_seq - 1, prev, 0, missing, f"expected entry {expected_seq}, found {seq}"
                ),
            )
        if prev_hash != prev:
            return bad(
                seq - 1,
                VerifyReport(
                    False, seq - 1, prev, 0, seq, "previous-hash link does not match the entry before it"
                ),
            )
        data = body.encode()
        if hash_here and sha256(prev.encode() + b"\n" + data).hexdigest() != digest:
            return VerifyReport(False, seq - 1, prev, 0, seq, edited)
        if gate_id != last_gate:
            last_gate = gate_id
            gate_part = f',"gate":{_gate_json(gate_id)},"payload":'
        event_part = event_parts.get(event)
        if event_part is None:
            event_part = event_parts[event] = f',"event":{_json_string(event)}'
        payload_at = -1
        at_value = body.find('},"at":"')
        if at_value >= 0 and body.endswith(f',"seq":{seq}}}'):
            at_end = body.find('"', at_value + 8) + 1
            if body.startswith(event_part, at_end):
                gate_at = at_end + len(event_part)
                if body.startswith(gate_part, gate_at):
                    payload_at = gate_at + len(gate_part)
        if payload_at < 0:
            columns = _column_problem(body, seq, event, gate_id)
            return bad(seq, VerifyReport(False, seq - 1, prev, 0, seq, columns))
        node = sha256(b"\x00" + data).digest()
        index = seq - 1
        level = 0
        while index & 1:
            node = sha256(b"\x01" + pop() + node).digest()
            index >>= 1
            level += 1
            if level >= node_level:
                completed[level] += node
        push(node)
        if gate_id is not None:
            if event == requested:
                logged_runs[gate_id] = _logged_run_key(body)
                logged_bindings[gate_id] = _logged_binding(body, payload_at)
            elif event == evaluated:
                logged_terms[gate_id] = _logged_terms(body, payload_at, logged_bindings.get(gate_id))
            after = status_after.get(event)
            if after is not None:
                logged = replayed.get(gate_id)
                if logged is not None and event == consumed and logged not in _USABLE:
                    after = f"consumed while {logged}, never approved"
                replayed[gate_id] = after
            elif event == recorded and gate_id in replayed:
                key = (gate_id, _verdict(body, payload_at))
                decided[key] = decided.get(key, 0) + 1
        if event in passkey_events and passkeys.wants(event, gate_id, body):
            problem = passkeys.feed(event, gate_id, body)
            if problem is not None:
                return bad(seq, VerifyReport(False, seq - 1, prev, 0, seq, problem))
        prev = digest
        if seq in wanted:
            hash_at[seq] = digest
            root_at[seq] = fold(edge)
        expected_seq += 1
    size = expected_seq - 1
    if hashed_elsewhere is not None and (found := hashed_elsewhere(size)) is not None:
        return VerifyReport(False, found[0] - 1, found[1], 0, found[0], edited)
    checked = 0
    if size and not marks:
        return VerifyReport(
            False, size, prev, 0, 1, "no signed checkpoint covers this log (checkpoints deleted?)"
        )
    for mark in sorted(marks, key=lambda c: c.size):
        if not signature_valid(mark, public_key):
            return VerifyReport(
                False,
                size,
                prev,
                checked,
                min(mark.size, size + 1) or 1,
                f"checkpoint at size {mark.size} has an invalid signature (forged or signed by another key)",
            )
        if mark.size > size:
            return VerifyReport(
                False,
                size,
                prev,
                checked,
                size + 1,
                f"log has {size} entries but a signed checkpoint covers {mark.size}: "
                f"entries {size + 1}…{mark.size} were removed",
            )
        if hash_at.get(mark.size) != mark.head_hash:
            return VerifyReport(
                False,
                size,
                prev,
                checked,
                mark.size or 1,
                f"entry {mark.size} does not match the signed checkpoint (log rewritten)",
            )
        if mark.root is not None and root_at[mark.size].hex() != mark.root:
            return VerifyReport(
                False,
                size,
                prev,
                checked,
                mark.size or 1,
                f"the Merkle root of the first {mark.size} entries does not match the signed checkpoint "
                "(log rewritten)",
            )
        checked += 1
    if tree_nodes is not None:
        wrong_node = _check_nodes(tree_nodes(), completed)
        if wrong_node is not None:
            return VerifyReport(False, size, prev, checked, wrong_node[0], wrong_node[1])
    if state is not None:
        wrong = check_state(replayed, decided, state(), logged_runs, logged_terms)
        if wrong is not None:
            return VerifyReport(False, size, prev, checked, None, wrong[1], gate=wrong[0])
    return VerifyReport(True, size, prev, checked, signed_decisions=passkeys.signed_decisions, roots=root_at)


def _check_nodes(
    stored: Iterable[tuple[int, int, bytes]], completed: Sequence[bytearray]
) -> tuple[int, str] | None:
    """The first stored Merkle node that is not the subtree the entries hash to: ``(first entry it
    covers, why)``. Nodes past the recomputed tree (written for entries since removed) count too."""
    for level, index, digest in stored:
        expected = completed[level][32 * index : 32 * index + 32] if 0 <= level < len(completed) else b""
        if expected != digest:
            first = (index << level) + 1
            last = (index + 1) << level
            why = "covers entries the log does not have" if not expected else "does not match them"
            return first, (
                f"stored Merkle tree node (level {level}, index {index}) over entries {first}…{last} {why} "
                "(gh_audit_tree edited; proofs built from it fail)"
            )
    return None


def extends(
    rows: Iterable[tuple[int, str, str | None, str, str, str]],
    last: Checkpoint,
    each_new_body: Callable[[str], object] | None = None,
) -> tuple[int, str]:
    """The head ``(size, hash)`` recomputed from a checkpoint over the rows after it, or an
    AuditError if the log no longer extends it: the row at the checkpoint's size must carry its
    head hash, and every later row must chain on from there. What a signer checks before it
    signs, so it never signs a head that rewrote or cut what it signed before; O(new entries).
    ``each_new_body`` sees every new entry's body once it is checked (the signer grows its
    Merkle tree from them)."""
    size, prev = last.size, last.head_hash
    reached = last.size == 0
    for seq, _event, _gate, body, prev_hash, digest in rows:
        if seq < last.size:
            continue
        if seq == last.size:
            reached = digest == last.head_hash
            if not reached:
                break
            continue
        if not reached or seq != size + 1 or prev_hash != prev or _chain(prev, body) != digest:
            reached = False
            break
        size, prev = seq, digest
        if each_new_body is not None:
            each_new_body(body)
    if reached:
        return size, prev
    raise AuditError(
        f"refusing to sign: the log no longer extends the last checkpoint (size {last.size}, head "
        f"{last.head_hash[:16]}…); it was rewritten or cut — run `gatehouse audit verify`"
    )


def _chain(prev: str, body: str) -> str:
    return hashlib.sha256(f"{prev}\n{body}".encode()).hexdigest()


# ---------------------------------------------------------------- export

EXPORT_COLUMNS = (
    "seq",
    "at",
    "event",
    "actor",
    "gate",
    "soc2",
    "iso27001",
    "nist80053",
    "payload",
    "prev_hash",
    "hash",
)


def export_record(entry: AuditEntry) -> dict[str, Any]:
    """One exported event: the hashed body, its chain links and the controls it evidences."""
    body = entry.decoded()
    return {
        "seq": entry.seq,
        "at": body["at"],
        "event": entry.event,
        "actor": body["actor"],
        "gate": entry.gate_id,
        "payload": body["payload"],
        "controls": {k: list(v) for k, v in control_ids(entry.event).items()},
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def jsonl_lines(entries: Iterable[AuditEntry]) -> Iterator[str]:
    for entry in entries:
        yield canonical_json(export_record(entry)) + "\n"


def csv_lines(entries: Iterable[AuditEntry]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(EXPORT_COLUMNS)
    yield flush()
    for entry in entries:
        record = export_record(entry)
        actor = record["actor"]
        controls = record["controls"]
        writer.writerow(
            [
                record["seq"],
                record["at"],
                record["event"],
                f"{actor['principal_id']} ({actor['via']})",
                record["gate"] or "",
                " ".join(controls["soc2"]),
                " ".join(controls["iso27001"]),
                " ".join(controls["nist80053"]),
                canonical_json(record["payload"]),
                record["prev_hash"],
                record["hash"],
            ]
        )
        yield flush()


def export_jsonl(entries: Iterable[AuditEntry], out: TextIO) -> int:
    return _write(jsonl_lines(entries), out)


def export_csv(entries: Iterable[AuditEntry], out: TextIO) -> int:
    return _write(csv_lines(entries), out) - 1  # minus the header row


def _write(lines: Iterator[str], out: TextIO) -> int:
    count = 0
    for line in lines:
        out.write(line)
        count += 1
    return count
