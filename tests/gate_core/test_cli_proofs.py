"""`gatehouse audit prove | consistency | verify-proof` as an auditor runs them: a real CLI
subprocess on SQLite and PostgreSQL; the bundle checks with nothing but the public key, agrees
with an independent RFC 9162 implementation (pymerkle), and fails for any changed byte."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymerkle import InmemoryTree
from sqlalchemy import create_engine, text

from gate_core import CheckpointSigner, verify_bundle
from gate_core._audit import load_public_key
from gate_core._errors import AuditError
from gate_core._merkle import verify_consistency
from gate_core._proofs import open_note
from tests.conftest import Report
from tests.gate_core.test_cli import Run, gatehouse, home  # noqa: F401 - test_cli's fixtures


@pytest.fixture
def history(gatehouse: Run) -> Run:  # noqa: F811 - the fixture imported above
    opened = gatehouse("request", "--action", "export", "--target", "s3://x", "--dataset", "w/c#pii")
    gate = opened.out.strip().splitlines()[-1]
    assert gatehouse("approve", gate, user="alice").code == 1
    assert gatehouse("approve", gate, "--comment", "ok", user="bob").code == 0
    return gatehouse


def _bodies(database_url: str) -> list[bytes]:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT body FROM gh_audit_log ORDER BY seq")).all()
    engine.dispose()
    return [row[0].encode() for row in rows]


def test_an_auditor_checks_one_decision_without_the_database(
    history: Run,
    home: Path,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    database_url: str,
    report: Report,
) -> None:
    auditor_key = tmp_path / "auditor.pub"
    shutil.copy(home / "audit-signing.pub", auditor_key)
    bodies = _bodies(database_url)
    seq = next(n for n, b in enumerate(bodies, start=1) if b'"event":"decision.refused"' in b)
    out = tmp_path / "proof.json"
    assert history("audit", "prove", str(seq), "-o", str(out)).code == 0
    bundle = json.loads(out.read_text())
    assert bundle["entry"].encode() == bodies[seq - 1]

    checked = history(
        "audit",
        "verify-proof",
        str(out),
        "--public-key",
        str(auditor_key),
        env={"GATEHOUSE_HOME": "/nonexistent"},
    )
    assert checked.code == 0, checked.err
    assert f"proof OK: entry {seq} (decision.refused" in checked.out

    # The independent implementation: the same root for the same leaves, the same path.
    tree = InmemoryTree(algorithm="sha256")
    for body in bodies[: bundle["size"]]:
        tree.append_entry(body)
    note = open_note(bundle["checkpoint"], load_public_key(auditor_key))
    assert note.size == bundle["size"] == len(bodies)
    assert tree.get_root(note.size) == note.root
    theirs = tree.prove_inclusion(seq, note.size).serialize()["path"][1:]
    assert [base64.b64decode(p).hex() for p in bundle["proof"]] == theirs

    # Any changed byte of the entry, the proof or the checkpoint's signed lines fails.
    key = load_public_key(auditor_key)
    text_bundle = out.read_text()
    tried = 0
    for field in ("entry", "checkpoint"):
        value = bundle[field]
        stop = len(value) if field == "entry" else value.index("\n\n")
        for i in range(stop):
            if value[i] == "\n":
                continue
            flipped = chr(ord(value[i]) ^ 1)
            changed = json.dumps({**bundle, field: value[:i] + flipped + value[i + 1 :]})
            tried += 1
            with pytest.raises(AuditError):
                verify_bundle(changed, key)
    for n, step in enumerate(bundle["proof"]):
        raw = base64.b64decode(step)
        for i in range(len(raw)):
            proof = list(bundle["proof"])
            proof[n] = base64.b64encode(raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1 :]).decode()
            tried += 1
            with pytest.raises(AuditError):
                verify_bundle(json.dumps({**bundle, "proof": proof}), key)
    assert verify_bundle(text_bundle, key)["seq"] == seq
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps({**bundle, "entry": bundle["entry"].replace("alice", "carol")}))
    rejected = history("audit", "verify-proof", str(edited), "--public-key", str(auditor_key))
    assert rejected.code == 1
    assert "proof REJECTED" in rejected.err

    impostor = tmp_path / "impostor.pub"
    signer = CheckpointSigner.generate(tmp_path / "impostor.key", impostor)
    assert signer.key_id
    assert history("audit", "verify-proof", str(out), "--public-key", str(impostor)).code == 1
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    report(
        f"Tamper O ({backend}): inclusion bundle with one byte changed (entry, proof, checkpoint)",
        f"{tried}/{tried} rejected",
        "",
        "all rejected",
    )


def test_consistency_proves_the_log_only_grew(
    history: Run,
    home: Path,  # noqa: F811 - the fixture imported above
    database_url: str,
) -> None:
    bodies = _bodies(database_url)
    grown = json.loads(history("audit", "consistency", "2").out)
    assert grown["old_size"] == 2
    new = grown["new_size"]
    key = load_public_key(home / "audit-signing.pub")
    note = open_note(grown["checkpoint"], key)
    assert note.size == new and base64.b64encode(note.root).decode() == grown["new_root"]
    proof = [base64.b64decode(p) for p in grown["proof"]]
    tree = InmemoryTree(algorithm="sha256")
    for body in bodies[:new]:
        tree.append_entry(body)
    assert tree.get_root(2) == base64.b64decode(grown["old_root"])
    assert verify_consistency(2, new, proof, tree.get_root(2), note.root)
    assert not verify_consistency(2, new, proof, tree.get_root(3), note.root)
    assert history("audit", "consistency", "99").code == 1


def test_a_note_signed_by_another_key_is_refused() -> None:
    from gate_core._proofs import NoteCheckpoint, sign_note

    ours = CheckpointSigner(Ed25519PrivateKey.generate())
    theirs = CheckpointSigner(Ed25519PrivateKey.generate())
    note = sign_note(NoteCheckpoint("gatehouse.local/x", 3, b"\x00" * 32), theirs)
    with pytest.raises(AuditError, match="no signature by the given key"):
        open_note(note, ours.public_key)
    assert open_note(note, theirs.public_key).size == 3
