"""C2SP signed notes, verifier keys, cosignature/v1 and the tlog-witness request body, checked
against the specs' own vectors, and the witness's rules (in process; the attacks over HTTP are in
tests/security/test_witness_O.py)."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate_core._cosign import (
    COSIGNATURE_V1,
    NOTE_ED25519,
    VerifierKey,
    add_checkpoint_body,
    check_cosignatures,
    cosign,
    has_valid_signature,
    parse_add_checkpoint,
    parse_checkpoint_text,
    parse_note,
)
from gate_core._errors import AuditError
from gate_core._merkle import consistency_proof, leaf_hash, root
from gate_core._proofs import NoteCheckpoint
from gate_core.witness import Refused, Witness, WitnessState

# The signed-note example of golang.org/x/mod/sumdb/note (the reference implementation the C2SP
# signed-note spec was written from): a verifier key and a note it signed.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_the_reference_implementations_note_verifies() -> None:
    key = VerifierKey.parse(GO_VKEY)
    assert (key.name, key.key_id.hex(), key.signature_type) == ("PeterNeumann", "c74f20a3", NOTE_ED25519)
    assert key.text() == GO_VKEY
    assert has_valid_signature(parse_note(GO_NOTE), key)
    altered = GO_NOTE.replace("problem,", "problem;")
    with pytest.raises(AuditError, match="does not verify"):
        has_valid_signature(parse_note(altered), key)


@pytest.mark.parametrize(
    "text",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # key ID off by one
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # a space in the name
        "PeterNeumann+c74f20a3+AhRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # not base64 of 33 bytes
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # hex in capitals
        "PeterNeumann+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_malformed_or_altered_verifier_keys_are_refused(text: str) -> None:
    with pytest.raises(AuditError):
        VerifierKey.parse(text)


def test_a_cosignature_verifies_only_over_its_checkpoint_by_its_key() -> None:
    witness = Ed25519PrivateKey.generate()
    key = VerifierKey.for_key("witness.test/w1", witness.public_key(), COSIGNATURE_V1)
    assert VerifierKey.parse(key.text()) == key
    text = NoteCheckpoint("log.test/a", 7, bytes(range(32))).body()
    line = cosign(text, "witness.test/w1", witness, 1_700_000_000)
    assert line.signature[:8] == (1_700_000_000).to_bytes(8, "big") and len(line.signature) == 72
    assert check_cosignatures(text, [line], [key]).valid == {"witness.test/w1": 1_700_000_000}
    other = NoteCheckpoint("log.test/a", 8, bytes(range(32))).body()
    assert check_cosignatures(other, [line], [key]).forged == ("witness.test/w1",)
    stranger = VerifierKey.for_key(
        "witness.test/w1", Ed25519PrivateKey.generate().public_key(), COSIGNATURE_V1
    )
    assert check_cosignatures(text, [line], [stranger]).valid == {}  # another key ID: ignored
    future = cosign(text, "witness.test/w1", witness, 1_700_000_000 + 2 * 86_400)
    assert check_cosignatures(text, [future], [key], now=1_700_000_000).forged == ("witness.test/w1",)


def test_the_add_checkpoint_body_round_trips_and_malformed_ones_are_refused() -> None:
    note = "log.test/a\n3\n" + base64.b64encode(bytes(32)).decode() + "\n\n\u2014 log.test/a AAAAAAA=\n"
    body = add_checkpoint_body(2, [bytes(32), bytes([1]) * 32], note)
    assert body.startswith(b"old 2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
    parsed = parse_add_checkpoint(body)
    assert (parsed.old, len(parsed.proof), parsed.note) == (2, 2, note)
    assert parse_checkpoint_text(parse_note(note).text) == NoteCheckpoint("log.test/a", 3, bytes(32))
    for bad in (
        b"old 02\n\n" + note.encode(),
        b"old -1\n\n" + note.encode(),
        b"new 2\n\n" + note.encode(),
        b"old 2\n" + b"AAAA\n\n" + note.encode(),  # a proof line that is not 32 bytes
        b"old 2\n" + b"".join([base64.b64encode(bytes(32)) + b"\n"] * 64) + b"\n" + note.encode(),
        b"old 2" + note.encode(),
        b"old 2\n\n\xff",
    ):
        with pytest.raises(AuditError):
            parse_note(parse_add_checkpoint(bad).note)


def _log(size: int, key: Ed25519PrivateKey) -> tuple[list[bytes], VerifierKey]:
    return [leaf_hash(f"e{i}".encode()) for i in range(size)], VerifierKey.for_key(
        "log.test/a", key.public_key(), NOTE_ED25519
    )


def _note(leaves: list[bytes], key: Ed25519PrivateKey) -> str:
    text = NoteCheckpoint("log.test/a", len(leaves), root(leaves)).body()
    blob = VerifierKey.for_key("log.test/a", key.public_key(), NOTE_ED25519).key_id + key.sign(text.encode())
    return f"{text}\n\u2014 log.test/a {base64.b64encode(blob).decode()}\n"


def test_concurrent_submissions_never_roll_the_witness_back(tmp_path: Path) -> None:
    """tlog-witness's race: two submissions from the same old size; whichever lands second must be
    refused, so the stored size only ever grows."""
    log_key = Ed25519PrivateKey.generate()
    leaves, vkey = _log(64, log_key)
    witness = Witness(
        "witness.test/w1", Ed25519PrivateKey.generate(), {"log.test/a": vkey}, WitnessState(tmp_path / "w.db")
    )
    witness.add_checkpoint(add_checkpoint_body(0, [], _note(leaves[:8], log_key)))
    outcomes: dict[int, str] = {}

    def submit(size: int) -> None:
        body = add_checkpoint_body(8, consistency_proof(leaves[:size], 8), _note(leaves[:size], log_key))
        try:
            witness.add_checkpoint(body)
            outcomes[size] = "cosigned"
        except Refused as refused:
            outcomes[size] = str(refused.status)

    threads = [threading.Thread(target=submit, args=(size,)) for size in range(9, 41)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cosigned = [size for size, outcome in outcomes.items() if outcome == "cosigned"]
    assert len(cosigned) == 1, outcomes
    assert set(outcomes.values()) == {"cosigned", "409"}
    assert witness.state.latest()["log.test/a"].size == cosigned[0]
