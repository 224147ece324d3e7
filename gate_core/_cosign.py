"""Witness cosignatures on the log's checkpoints, as the C2SP specs write them.

- **signed-note**: a text ending in a newline, a blank line, then signature lines
  ``— <key name> base64(4-byte key ID ‖ signature)``; a verifier ignores lines from keys it does
  not know and must reject a line from a known key that does not verify.
- **Verifier keys** (vkeys): ``<name>+<key ID as 8 hex digits>+base64(type byte ‖ public key)``,
  key ID = SHA-256(name ‖ "\\n" ‖ type byte ‖ public key)[:4]. Type 0x01 is a plain Ed25519 note
  signature (the log's own), 0x04 a timestamped Ed25519 witness cosignature.
- **tlog-cosignature** (``cosignature/v1``): the witness signs ``cosignature/v1\\n`` ``time T\\n``
  and the checkpoint's note text; the signature is ``u64 big-endian T ‖ Ed25519 signature``. It
  states: as of T, the largest consistent tree the witness has seen for this origin has this root.
- **tlog-witness** ``add-checkpoint`` request body: ``old <size>\\n``, up to 63 consistency-proof
  hashes one per line in base64, a blank line, then the signed checkpoint note.

Pure functions: the witness server, the log's submitter and `gatehouse audit verify` share them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gate_core._errors import AuditError
from gate_core._proofs import NoteCheckpoint, origin_for

EM_DASH = "\u2014"
NOTE_ED25519 = 0x01  # signed-note: the log's own Ed25519 signature
COSIGNATURE_V1 = 0x04  # tlog-cosignature: a witness's timestamped Ed25519 cosignature
MAX_PROOF_LINES = 63  # tlog-witness: a client MUST NOT send more
MAX_SIGNATURES = 32  # signed-note: verifiers MUST accept at least 16
MAX_NOTE_BYTES = 16_384
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,18})$")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
        raise AuditError(f"{text[:40]!r} is not base64") from exc


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def valid_key_name(name: str) -> bool:
    """signed-note: a key name is non-empty, with no Unicode space and no plus."""
    return bool(name) and not any(c.isspace() or c == "+" for c in name) and not _CONTROL.search(name)


def key_id(name: str, signature_type: int, raw_public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + raw_public_key).digest()[:4]


def parse_decimal(text: str, what: str) -> int:
    """An ASCII decimal with no leading zeroes (tlog-checkpoint, tlog-witness), below 2**63."""
    if not _DECIMAL.match(text) or int(text) >= 2**63:
        raise AuditError(f"{what} {text[:30]!r} is not a decimal size without leading zeroes")
    return int(text)


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A note verifier key: who signs (name), which key (ID) and how (signature type)."""

    name: str
    key_id: bytes
    signature_type: int
    public_key: Ed25519PublicKey

    @classmethod
    def for_key(cls, name: str, public_key: Ed25519PublicKey, signature_type: int) -> VerifierKey:
        if not valid_key_name(name):
            raise AuditError(f"{name!r} is not a note key name (non-empty, no spaces, no '+')")
        return cls(name, key_id(name, signature_type, _raw(public_key)), signature_type, public_key)

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """``name+hex key ID+base64(type ‖ key)``; AuditError says what is wrong."""
        parts = text.strip().split("+", 2)  # the base64 key may itself hold "+"
        if len(parts) != 3 or not valid_key_name(parts[0]) or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise AuditError(f"{text.strip()[:80]!r} is not a verifier key NAME+KEYID+BASE64")
        name, hex_id, material = parts[0], parts[1], _unb64(parts[2])
        if len(material) != 33 or material[0] not in (NOTE_ED25519, COSIGNATURE_V1):
            raise AuditError(
                f"verifier key {name}: only Ed25519 note (0x01) and cosignature/v1 (0x04) keys are supported"
            )
        if key_id(name, material[0], material[1:]).hex() != hex_id:
            raise AuditError(f"verifier key {name}: its key ID does not match its key (altered?)")
        return cls(name, bytes.fromhex(hex_id), material[0], Ed25519PublicKey.from_public_bytes(material[1:]))

    def text(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([self.signature_type]) + _raw(self.public_key))}"


def log_verifier_key(public_key: Ed25519PublicKey) -> VerifierKey:
    """The log's own note key: named by its origin, type 0x01 (what a witness is configured with)."""
    return VerifierKey.for_key(origin_for(public_key), public_key, NOTE_ED25519)


def read_verifier_keys(text: str, source: str) -> list[VerifierKey]:
    """One vkey a line; blank lines and ``#`` comments skipped."""
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                keys.append(VerifierKey.parse(line))
            except AuditError as exc:
                raise AuditError(f"{source}:{number}: {exc}") from None
    return keys


# ---------------------------------------------------------------- notes


@dataclass(frozen=True, slots=True)
class SignatureLine:
    name: str
    key_id: bytes
    signature: bytes

    def text(self) -> str:
        return f"{EM_DASH} {self.name} {_b64(self.key_id + self.signature)}"


@dataclass(frozen=True, slots=True)
class Note:
    text: str  # the signed text, ending in a newline
    signatures: tuple[SignatureLine, ...]


def parse_signature_line(line: str) -> SignatureLine:
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != EM_DASH or not valid_key_name(parts[1]):
        raise AuditError(f"{line[:60]!r} is not a note signature line")
    blob = _unb64(parts[2])
    if len(blob) < 5:
        raise AuditError(f"the signature by {parts[1]} is too short")
    return SignatureLine(parts[1], blob[:4], blob[4:])


def parse_note(note: str) -> Note:
    """A signed note, strictly: UTF-8 text without control characters but newlines, split at its
    last blank line, at most MAX_SIGNATURES signature lines. Nothing in it is trusted yet."""
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise AuditError(f"note larger than {MAX_NOTE_BYTES} bytes")
    if _CONTROL.search(note):
        raise AuditError("note holds control characters")
    if not note.endswith("\n"):
        raise AuditError("note does not end in a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise AuditError("note has no blank line before its signatures")
    text, lines = note[: cut + 1], note[cut + 2 : -1].split("\n")
    if not text.strip() or len(lines) > MAX_SIGNATURES:
        raise AuditError("note has no text or too many signatures")
    return Note(text, tuple(parse_signature_line(line) for line in lines))


def parse_checkpoint_text(text: str) -> NoteCheckpoint:
    """tlog-checkpoint's note text: origin, size, base64 root hash (extension lines refused)."""
    lines = text.split("\n")
    if len(lines) != 4 or lines[3] != "" or not lines[0]:
        raise AuditError("a checkpoint is exactly three lines: origin, size, root hash")
    root = _unb64(lines[2])
    if len(root) != 32:
        raise AuditError("the checkpoint root hash is not 32 bytes")
    return NoteCheckpoint(lines[0], parse_decimal(lines[1], "checkpoint size"), root)


def has_valid_signature(note: Note, key: VerifierKey) -> bool:
    """Does the note carry a valid plain Ed25519 signature by ``key``? Lines under other keys are
    ignored; a line under this key that does not verify is an AuditError (a forgery)."""
    if key.signature_type != NOTE_ED25519:
        raise AuditError(f"{key.name} is not a note signing key")
    found = False
    for line in note.signatures:
        if (line.name, line.key_id) != (key.name, key.key_id):
            continue
        try:
            key.public_key.verify(line.signature, note.text.encode())
        except InvalidSignature:
            raise AuditError(f"the signature by {key.name} does not verify (forged or altered)") from None
        found = True
    return found


# ---------------------------------------------------------------- cosignatures


def cosignature_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


def cosign(text: str, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> SignatureLine:
    """A cosignature/v1 on the checkpoint note text ``text`` by the witness ``name``."""
    if not 0 <= timestamp < 2**63:
        raise AuditError("cosignature timestamp out of range")
    signature = private_key.sign(cosignature_message(text, timestamp))
    return SignatureLine(
        name,
        key_id(name, COSIGNATURE_V1, _raw(private_key.public_key())),
        timestamp.to_bytes(8, "big") + signature,
    )


@dataclass(frozen=True, slots=True)
class Cosigned:
    """What a set of cosignature lines proves about one checkpoint."""

    valid: dict[str, int]  # witness name → timestamp of its valid cosignature
    forged: tuple[str, ...]  # known witnesses whose line does not verify

    def missing(self, trusted: Sequence[VerifierKey]) -> list[str]:
        return [k.name for k in trusted if k.name not in self.valid]


def check_cosignatures(
    text: str, lines: Iterable[SignatureLine], trusted: Sequence[VerifierKey], *, now: int | None = None
) -> Cosigned:
    """Which trusted witnesses cosigned the checkpoint note text ``text``. Lines from keys not in
    ``trusted`` are ignored (their name or ID differs); a line from a trusted key that does not
    verify, or is dated more than a day ahead of ``now``, is reported as forged."""
    by_id = {(k.name, k.key_id): k for k in trusted if k.signature_type == COSIGNATURE_V1}
    valid: dict[str, int] = {}
    forged: list[str] = []
    for line in lines:
        key = by_id.get((line.name, line.key_id))
        if key is None:
            continue
        if len(line.signature) != 72:
            forged.append(key.name)
            continue
        timestamp = int.from_bytes(line.signature[:8], "big")
        try:
            key.public_key.verify(line.signature[8:], cosignature_message(text, timestamp))
        except InvalidSignature:
            forged.append(key.name)
            continue
        if timestamp >= 2**63 or (now is not None and timestamp > now + 86_400):
            forged.append(key.name)
            continue
        valid[key.name] = max(timestamp, valid.get(key.name, 0))
    return Cosigned(valid, tuple(dict.fromkeys(n for n in forged if n not in valid)))


# ---------------------------------------------------------------- tlog-witness add-checkpoint


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    old: int
    proof: tuple[bytes, ...]
    note: str


def add_checkpoint_body(old: int, proof: Sequence[bytes], note: str) -> bytes:
    lines = [f"old {old}", *(_b64(p) for p in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """The request body, strictly (AuditError → 400 Bad Request)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AuditError("the request body is not UTF-8") from exc
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise AuditError("no blank line between the old size and proof, and the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise AuditError("the body must start with 'old <size>'")
    old = parse_decimal(lines[0][4:], "old size")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise AuditError(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = tuple(_unb64(line) for line in lines[1:])
    if any(len(p) != 32 for p in proof):
        raise AuditError("a consistency proof line is not a 32-byte hash")
    return AddCheckpoint(old, proof, note)


@dataclass(frozen=True, slots=True)
class StoredCosignature:
    """One witness's cosignature as the log keeps it beside its checkpoints."""

    size: int
    root: bytes
    witness: str
    key_id: bytes
    cosigned_at: int
    line: str  # the signature line as the witness answered it
    note: str  # the log-signed checkpoint note it cosigned

    def signature_line(self) -> SignatureLine:
        return parse_signature_line(self.line)
