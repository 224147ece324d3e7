"""Proofs an auditor checks without the database: C2SP signed-note checkpoints over the RFC 9162
tree of the audit log, and inclusion bundles (one entry, its proof, a checkpoint).

A checkpoint note (C2SP tlog-checkpoint) is three lines — origin, tree size, base64 root hash —
followed by a blank line and one signature line per signer (C2SP signed-note, Ed25519)::

    gatehouse.example/3f1a…
    42
    qLt3…=

    — gatehouse.example/3f1a… BASE64(key hash[4] ‖ Ed25519 signature over the three lines)

The key hash is the first four bytes of SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key). A bundle is
JSON ``{"entry", "index", "size", "proof", "checkpoint"}``; :func:`verify_bundle` needs only it
and the log's public key: `gatehouse audit verify-proof BUNDLE --public-key F` is the same check.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gate_core._audit import CheckpointSigner
from gate_core._errors import AuditError
from gate_core._merkle import leaf_hash, verify_inclusion

_EM_DASH = "\u2014"


def origin_for(public_key: Ed25519PublicKey) -> str:
    """The log's origin line: stable for its key, so two logs never share checkpoints."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"gatehouse.local/{hashlib.sha256(raw).hexdigest()[:16]}"


def _key_hash(name: str, public_key: Ed25519PublicKey) -> bytes:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]


@dataclass(frozen=True, slots=True)
class NoteCheckpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def sign_note(checkpoint: NoteCheckpoint, signer: CheckpointSigner) -> str:
    body = checkpoint.body()
    signature = signer.sign_bytes(body.encode())
    blob = base64.b64encode(_key_hash(checkpoint.origin, signer.public_key) + signature).decode()
    return f"{body}\n{_EM_DASH} {checkpoint.origin} {blob}\n"


def open_note(note: str, public_key: Ed25519PublicKey) -> NoteCheckpoint:
    """Parse a signed checkpoint note and check the log's signature on it; AuditError otherwise
    (a note without a valid signature by this key is never trusted, whatever else it carries)."""
    body, sep, signatures = note.partition("\n\n")
    lines = body.split("\n")
    if not sep or len(lines) < 3:
        raise AuditError("not a signed checkpoint note (origin, size, root, blank line, signatures)")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit():
        raise AuditError(f"checkpoint size {size_text!r} is not a number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError as exc:
        raise AuditError("checkpoint root is not base64") from exc
    signed = (body + "\n").encode()
    wanted = _key_hash(origin, public_key)
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _EM_DASH or parts[1] != origin:
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError:
            continue
        if blob[:4] != wanted:
            continue
        try:
            public_key.verify(blob[4:], signed)
        except InvalidSignature:
            raise AuditError(f"the checkpoint's signature by {origin} is invalid") from None
        return NoteCheckpoint(origin, int(size_text), root)
    raise AuditError(f"the checkpoint carries no signature by the given key (origin {origin})")


def bundle(entry: str, index: int, size: int, proof: list[bytes], note: str) -> str:
    return json.dumps(
        {
            "entry": entry,
            "index": index,
            "size": size,
            "proof": [base64.b64encode(p).decode() for p in proof],
            "checkpoint": note,
        },
        indent=2,
    )


def verify_bundle(text: str, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Check one audit entry against a signed checkpoint, without the database: the note is
    signed by ``public_key``, its size is the proof's, and the entry's RFC 9162 leaf hash is
    at ``index`` under the note's root. Returns the decoded entry; AuditError names what failed."""
    try:
        data = json.loads(text)
        entry, index, size = str(data["entry"]), int(data["index"]), int(data["size"])
        proof = [base64.b64decode(p, validate=True) for p in data["proof"]]
        note = str(data["checkpoint"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"not an inclusion bundle: {exc}") from exc
    checkpoint = open_note(note, public_key)
    if checkpoint.size != size:
        raise AuditError(f"the proof is for a tree of {size} but the checkpoint covers {checkpoint.size}")
    if not verify_inclusion(leaf_hash(entry.encode()), index, size, proof, checkpoint.root):
        raise AuditError(f"entry {index + 1} is not in the log under this checkpoint (proof fails)")
    try:
        decoded = json.loads(entry)
    except ValueError as exc:
        raise AuditError("the entry is not JSON") from exc
    if not isinstance(decoded, dict) or decoded.get("seq") != index + 1:
        raise AuditError(f"the entry does not claim sequence number {index + 1}")
    return decoded
