"""Adversary O holds the log's signing key. Property 5: history can't be rewritten quietly as long
as one witness is honest — an independent `gatehouse witness` (its own process, home, key and
state) cosigns a checkpoint only with a valid consistency proof from the one it holds, refuses a
rewritten history and keeps the old checkpoint; `gatehouse audit verify` then requires a quorum of
witness cosignatures on the newest checkpoint and exits 1 naming what is missing.

Everything as the adversary meets it: the real `gatehouse` CLI in subprocesses for the history, the
re-signing and the verdict; the witness over real HTTP; SQL by hand on the SQLite file and on
PostgreSQL as the table owner; request bodies and signatures built by hand for the witness."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from gate_core import Gatekeeper, Settings, SqlStore
from gate_core._cosign import COSIGNATURE_V1, VerifierKey, cosign
from gate_core._merkle import consistency_proof, leaf_hash, root
from gate_core._witnessing import WitnessPolicy
from gate_core.testing import actor
from tests.conftest import Report
from tests.gate_core.conftest import prod_redeploy
from tests.security._operator import Body, cut_tail, rewrite, run_sql
from tests.security._witness import WitnessProcess
from tests.security.conftest import PII_EXPORT
from tests.service.conftest import launch_server, stop_server

GATEHOUSE = [sys.executable, "-m", "gate_core.cli"]
EM_DASH = "\u2014"


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Log:
    home: Path
    database_url: str
    engine: Engine
    witnesses: list[WitnessProcess] = field(default_factory=list)
    gate: str = ""

    def gatehouse(self, *args: str, user: str = "alice") -> Result:
        env = {**os.environ, "GATEHOUSE_HOME": str(self.home), "GATEHOUSE_DATABASE_URL": self.database_url}
        proc = subprocess.run(
            [*GATEHOUSE, "--as", user, *args], capture_output=True, text=True, env=env, timeout=120
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def verify(self, *args: str) -> tuple[int, dict[str, object]]:
        done = self.gatehouse("audit", "verify", "--json", *args)
        assert done.out.strip(), done.err
        return done.code, dict(json.loads(done.out))

    @property
    def log_key(self) -> str:
        return self.gatehouse("audit", "log-key").out.strip()

    @property
    def origin(self) -> str:
        return self.log_key.split("+")[0]

    def configure(self, quorum: int, *witnesses: WitnessProcess) -> None:
        document = {"quorum": quorum, "witnesses": [w.entry() for w in witnesses]}
        (self.home / "witnesses.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")

    def size(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT max(seq) FROM gh_audit_log")).scalar_one())

    def backend(self) -> str:
        return "SQLite" if self.database_url.startswith("sqlite") else "PostgreSQL"


MakeLog = Callable[..., Log]


def _reattribute(entries: list[Body]) -> list[Body]:
    """Drop alice's refused self-approval and make carol, not bob, the approver."""
    out = []
    for body in entries:
        if body["event"] == "decision.refused":
            continue
        if body["actor"]["principal_id"] == "bob":
            body["actor"] = {**body["actor"], "principal_id": "carol", "display_name": "carol"}
        if body["event"] == "gate.approved":
            body["payload"] = {**body["payload"], "by": ["carol"]}
        out.append(body)
    return out


@pytest.fixture
def make_log(tmp_path: Path, database_url: str) -> Iterator[MakeLog]:
    made: list[Log] = []

    def make(*names: str, quorum: int = 1, start: bool = True) -> Log:
        url = database_url.replace("postgresql://", "postgresql+psycopg://")
        log = Log(tmp_path / "home", database_url, create_engine(url))
        assert log.gatehouse("init", "--example").code == 0
        for name in names:
            witness = WitnessProcess.create(tmp_path / f"witness-{len(log.witnesses)}", name, log.log_key)
            log.witnesses.append(witness.start() if start else witness)
        if names:
            log.configure(quorum, *log.witnesses)
        made.append(log)
        return log

    yield make
    for log in made:
        for witness in log.witnesses:
            witness.stop()
        log.engine.dispose()


def _history(log: Log) -> None:
    """A pii export requested by alice, her refused self-approval, bob's approval."""
    opened = log.gatehouse(
        "request", "--action", "export", "--target", "s3://x/c.csv", "--dataset", "warehouse/customers#pii"
    )
    assert opened.code == 0, opened.err
    log.gate = opened.out.strip().splitlines()[-1]
    assert log.gatehouse("approve", log.gate, user="alice").code == 1
    assert log.gatehouse("approve", log.gate, user="bob").code == 0


def _key_file(tmp_path: Path, *witnesses: WitnessProcess) -> Path:
    path = tmp_path / "auditor-witnesses.keys"
    path.write_text("".join(f"{w.verifier_key}\n" for w in witnesses), encoding="utf-8")
    return path


# ---------------------------------------------------------------- the decisive attack


def test_rewrite_resigned_with_the_log_key_is_refused_by_the_honest_witness(
    make_log: MakeLog, tmp_path: Path, report: Report
) -> None:
    log: Log = make_log("witness.test/w1")
    witness = log.witnesses[0]
    _history(log)
    code, verdict = log.verify()
    assert code == 0, verdict
    size = log.size()
    assert verdict["witnessed_size"] == size and verdict["witnesses"] == ["witness.test/w1"]
    assert witness.held_size(log.origin) == size

    # O lifts the triggers, rewrites the separation-of-duties evidence, deletes every checkpoint,
    # cosignature and the checkpoint file, and goes on using the log: the CLI signs the forged head
    # with the log's own key and submits it, with a proof from the size the witness holds.
    rewrite(log.engine, _reattribute)
    run_sql(log.engine, "DELETE FROM gh_audit_checkpoints", "DELETE FROM gh_audit_cosignatures")
    (log.home / "audit-checkpoints.jsonl").unlink()
    more = log.gatehouse("request", "--action", "export", "--target", "s3://x/d.csv")
    assert more.code == 0, more.err
    assert log.size() > size
    resigned = log.gatehouse("audit", "checkpoint")
    assert resigned.code == 0, resigned.err  # the log key signs the forgery…
    assert "not witnessed" in resigned.err and "HTTP 422" in resigned.err, resigned.err  # …the witness not
    assert witness.held_size(log.origin) == size  # it kept the old checkpoint
    assert any("(422)" in r for r in witness.refusals())  # and the forged submission, as evidence

    code, verdict = log.verify()
    assert code == 1, verdict
    assert "not cosigned by witness.test/w1" in str(verdict["problem"]), verdict
    # an auditor with the witness's key from a copy they trust, and the home's config gone
    (log.home / "witnesses.yaml").unlink()
    code, verdict = log.verify("--witness-key", str(_key_file(tmp_path, witness)), "--quorum", "1")
    assert code == 1 and "not cosigned by witness.test/w1" in str(verdict["problem"]), verdict
    summary = log.gatehouse("audit", "verify", "--witness-key", str(_key_file(tmp_path, witness)))
    assert summary.code == 1 and "NOT WITNESSED" in summary.out
    report(
        f"Tamper O ({log.engine.dialect.name}): rewrite re-signed with the log key, one honest witness",
        "detected",
        "",
        "detected",
    )


def test_rewrite_keeping_the_cosignatures_names_the_witnessed_size(make_log: MakeLog, report: Report) -> None:
    """O leaves the stored cosignatures alone: they no longer verify over the log's own root."""
    log: Log = make_log("witness.test/w1")
    _history(log)
    size = log.size()
    rewrite(log.engine, _reattribute)
    run_sql(log.engine, "DELETE FROM gh_audit_checkpoints")
    (log.home / "audit-checkpoints.jsonl").unlink()
    log.gatehouse("audit", "checkpoint")
    code, verdict = log.verify()
    assert code == 1, verdict
    problem = str(verdict["problem"])
    assert "witness witness.test/w1 cosigned the log at size" in problem, problem
    assert "history was rewritten after it was witnessed" in problem
    assert log.witnesses[0].held_size(log.origin) == size
    report(
        f"Tamper O ({log.engine.dialect.name}): rewrite under stored cosignatures",
        "detected",
        "",
        "detected",
    )


def test_forged_and_foreign_cosignatures_do_not_count(
    make_log: MakeLog, tmp_path: Path, report: Report
) -> None:
    """O forges the witness's cosignature on the re-signed forgery: a line under the witness's
    name and key ID with a made-up signature is rejected as forged; a real cosignature by a key
    O made under the same name (another key ID) is ignored, so the quorum is not met."""
    log: Log = make_log("witness.test/w1")
    witness = log.witnesses[0]
    _history(log)
    rewrite(log.engine, _reattribute)
    run_sql(log.engine, "DELETE FROM gh_audit_checkpoints", "DELETE FROM gh_audit_cosignatures")
    (log.home / "audit-checkpoints.jsonl").unlink()
    witness.stop()  # nobody to refuse the forgery this time: O fills the cosignature in
    log.gatehouse("audit", "checkpoint")
    size = log.size()
    leaves = [leaf_hash(b.encode()) for b in _bodies(log.engine)]
    text_ = f"{log.origin}\n{size}\n{base64.b64encode(root(leaves)).decode()}\n"
    real_id = base64.b64decode(witness.verifier_key.split("+", 2)[2])  # type ‖ key
    key_id = hashlib.sha256(b"witness.test/w1\n" + real_id).digest()[:4]
    made_up = base64.b64encode(key_id + (1).to_bytes(8, "big") + os.urandom(64)).decode()
    _insert_cosignature(log, size, root(leaves), key_id, f"{EM_DASH} witness.test/w1 {made_up}", text_)
    code, verdict = log.verify()
    assert code == 1 and "does not verify (forged)" in str(verdict["problem"]), verdict

    run_sql(log.engine, "DELETE FROM gh_audit_cosignatures")
    own = Ed25519PrivateKey.generate()  # O's own "witness.test/w1"
    raw = own.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    own_id = hashlib.sha256(b"witness.test/w1\n\x04" + raw).digest()[:4]
    message = f"cosignature/v1\ntime 1700000000\n{text_}".encode()
    blob = own_id + (1_700_000_000).to_bytes(8, "big") + own.sign(message)
    line = f"{EM_DASH} witness.test/w1 {base64.b64encode(blob).decode()}"
    _insert_cosignature(log, size, root(leaves), own_id, line, text_)
    code, verdict = log.verify()
    assert code == 1 and "not cosigned by witness.test/w1" in str(verdict["problem"]), verdict
    report(
        f"Tamper O ({log.engine.dialect.name}): forged witness cosignature, or one by a key not trusted",
        "rejected",
        "",
        "rejected",
    )


def _bodies(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(text("SELECT body FROM gh_audit_log ORDER BY seq"))]


def _insert_cosignature(log: Log, size: int, tree_root: bytes, key_id: bytes, line: str, note: str) -> None:
    with log.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO gh_audit_cosignatures (size, root, witness, key_id, cosigned_at, line, note, "
                "received_at) VALUES (:s, :r, 'witness.test/w1', :k, 1, :l, :n, CURRENT_TIMESTAMP)"
            ),
            {"s": size, "r": base64.b64encode(tree_root).decode(), "k": key_id.hex(), "l": line, "n": note},
        )


def test_quorum_of_two_with_one_witness_fails_until_the_second_cosigns(
    make_log: MakeLog, tmp_path: Path, report: Report
) -> None:
    log: Log = make_log("witness.test/w1", "witness.test/w2", quorum=2, start=False)
    first, second = log.witnesses
    first.start()
    _history(log)  # w2 is down: every submission to it fails, logged, and the commands still work
    code, verdict = log.verify()
    assert code == 1, verdict
    assert "1 valid witness cosignature(s), 2 required; not cosigned by witness.test/w2" in str(
        verdict["problem"]
    )
    second.start()
    log.gatehouse("list")  # any later command retries the witness that missed the newest checkpoint
    code, verdict = log.verify()
    assert code == 0, verdict
    assert verdict["witnesses"] == ["witness.test/w1", "witness.test/w2"]
    report(
        f"Tamper O ({log.engine.dialect.name}): quorum 2 with one witness", "refused (exit 1)", "", "refused"
    )


def test_a_restarted_witness_keeps_its_state_and_refuses_a_rollback(
    make_log: MakeLog, tmp_path: Path, report: Report
) -> None:
    log: Log = make_log("witness.test/w1")
    witness = log.witnesses[0]
    _history(log)
    keep = log.size()
    second = log.gatehouse("request", "--action", "export", "--target", "s3://x/d.csv")
    gate = second.out.strip().splitlines()[-1]
    size = log.size()
    witness.stop()
    witness.start()
    assert witness.held_size(log.origin) == size
    # O cuts the second request out of the log (and its gate out of the database), deletes every
    # later checkpoint and cosignature: what is left is a prefix the witness once cosigned…
    cut_tail(log.engine, keep)
    run_sql(log.engine, "DELETE FROM gh_audit_checkpoints WHERE size > :k", k=keep)
    run_sql(log.engine, "DELETE FROM gh_audit_cosignatures WHERE size > :k", k=keep)
    with log.engine.begin() as conn:
        conn.execute(text("DELETE FROM gh_gate_datasets WHERE gate_id = :g"), {"g": gate})
        conn.execute(text("DELETE FROM gh_gates WHERE id = :g"), {"g": gate})
    checkpoints = log.home / "audit-checkpoints.jsonl"
    kept = [line for line in checkpoints.read_text().splitlines() if json.loads(line)["size"] <= keep]
    checkpoints.write_text("".join(line + "\n" for line in kept))
    # …but the restarted witness still holds more, and verify asks it
    code, verdict = log.verify()
    assert code == 1, verdict
    assert f"witness witness.test/w1 holds a checkpoint of size {size}" in str(verdict["problem"]), verdict
    other = log.gatehouse("request", "--action", "export", "--target", "s3://x/e.csv")
    assert "not witnessed" in other.err and "refused with HTTP 409" in other.err, other.err
    assert witness.held_size(log.origin) == size
    code, verdict = log.verify()
    assert code == 1, verdict
    report(
        f"Tamper O ({log.engine.dialect.name}): witness restarted, log cut back", "detected", "", "detected"
    )


def test_cosignatures_are_append_only(make_log: MakeLog) -> None:
    log: Log = make_log("witness.test/w1")
    _history(log)
    for statement in ("UPDATE gh_audit_cosignatures SET size = 1", "DELETE FROM gh_audit_cosignatures"):
        with pytest.raises(Exception, match="append-only"), log.engine.begin() as conn:
            conn.execute(text(statement))


# ---------------------------------------------------------------- the witness, by hand


@dataclass
class HandLog:
    """A log built by hand: leaves, an Ed25519 key, C2SP notes signed with it."""

    key: Ed25519PrivateKey
    origin: str
    leaves: list[bytes]

    @property
    def raw(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def vkey(self) -> str:
        material = b"\x01" + self.raw
        key_id = hashlib.sha256(self.origin.encode() + b"\n" + material).digest()[:4]
        return f"{self.origin}+{key_id.hex()}+{base64.b64encode(material).decode()}"

    def note(self, size: int, tree_root: bytes | None = None, key: Ed25519PrivateKey | None = None) -> str:
        signer = key or self.key
        signer_raw = signer.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        body = f"{self.origin}\n{size}\n{base64.b64encode(tree_root or root(self.leaves[:size])).decode()}\n"
        key_id = hashlib.sha256(self.origin.encode() + b"\n\x01" + signer_raw).digest()[:4]
        signature = base64.b64encode(key_id + signer.sign(body.encode())).decode()
        return f"{body}\n{EM_DASH} {self.origin} {signature}\n"


def _post(witness: WitnessProcess, old: int, proof: list[bytes], note: str) -> httpx.Response:
    lines = [f"old {old}", *(base64.b64encode(p).decode() for p in proof)]
    body = ("\n".join(lines) + "\n\n" + note).encode()
    return httpx.post(f"{witness.url}/add-checkpoint", content=body, timeout=10)


def test_rollback_and_malformed_submissions_to_the_witness_directly(tmp_path: Path, report: Report) -> None:
    """O talks to the witness itself, with bodies and signatures built by hand: every way of
    rolling it back or slipping another history past it is refused with the spec's status, and
    it still holds what it held."""
    log = HandLog(
        Ed25519PrivateKey.generate(), "log.test/hand", [leaf_hash(f"e{i}".encode()) for i in range(40)]
    )
    witness = WitnessProcess.create(tmp_path / "w", "witness.test/w1", log.vkey()).start()
    tried = 0
    try:
        first = _post(witness, 0, [], log.note(20))
        assert first.status_code == 200, first.text
        assert first.text.startswith(f"{EM_DASH} witness.test/w1 ")
        grown = _post(witness, 20, consistency_proof(log.leaves[:30], 20), log.note(30))
        assert grown.status_code == 200, grown.text

        forked = [*log.leaves[:25], *(leaf_hash(f"forged{i}".encode()) for i in range(15))]
        attacks = {
            "older checkpoint (rollback)": (_post(witness, 30, [], log.note(20)), 400),
            "old size not the held one": (
                _post(witness, 20, consistency_proof(log.leaves[:30], 20), log.note(30)),
                409,
            ),
            "same size, another root": (_post(witness, 30, [], log.note(30, root(forked[:30]))), 409),
            "fork with a made-up proof": (
                _post(witness, 30, consistency_proof(forked[:35], 30), log.note(35, root(forked[:35]))),
                422,
            ),
            "signed by another key": (
                _post(witness, 30, [], log.note(30, key=Ed25519PrivateKey.generate())),
                403,
            ),
            "a log it does not witness": (
                _post(witness, 0, [], HandLog(log.key, "other.test/log", log.leaves).note(3)),
                404,
            ),
            "64 proof lines": (_post(witness, 30, [b"\x00" * 32] * 64, log.note(35)), 400),
            "proof from size 0": (_post(witness, 0, [b"\x00" * 32], log.note(35)), 400),
            "leading zero in old": (
                httpx.post(f"{witness.url}/add-checkpoint", content=b"old 030\n\n" + log.note(30).encode()),
                400,
            ),
            "over-long body": (
                httpx.post(f"{witness.url}/add-checkpoint", content=b"old 0\n" + b"A" * 70_000 + b"\n\n"),
                413,
            ),
        }
        for what, (response, status) in attacks.items():
            tried += 1
            assert response.status_code == status, (what, response.status_code, response.text)
        conflict = attacks["old size not the held one"][0]
        assert conflict.headers["content-type"] == "text/x.tlog.size" and conflict.text == "30\n"
        assert witness.held_size(log.origin) == 30
        witness.stop()
        witness.start()  # and after a restart: still 30, the rollback still refused
        assert witness.held_size(log.origin) == 30
        assert _post(witness, 30, [], log.note(20)).status_code == 400
        assert _post(witness, 0, [], log.note(20)).text == "30\n"
        assert _post(witness, 30, consistency_proof(log.leaves[:40], 30), log.note(40)).status_code == 200
    finally:
        witness.stop()
    report("Tamper O: hand-built rollback and fork submissions to the witness", f"{tried} tried, 0 accepted")


# ---------------------------------------------------------------- the running service


def test_the_service_submits_its_checkpoints_and_retries_a_witness_that_was_down(
    make_log: MakeLog, tmp_path: Path, report: Report
) -> None:
    """The sweeper signs what the API appended and submits it; the witness is down, so the
    submission fails, is logged, the service stays healthy; once the witness is up, the sweeper's
    retry gets the newest checkpoint cosigned and verify passes."""
    log: Log = make_log("witness.test/w1", start=False)
    witness = log.witnesses[0]
    minted = log.gatehouse("token", "create", "--principal", "alice", "--scope", "request")
    assert minted.code == 0, minted.err
    settings = Settings(
        home=log.home,
        database_url=log.database_url,
        policy_path=log.home / "policy.yaml",
        directory_path=log.home / "directory.yaml",
    )
    server = launch_server(settings, tmp_path / "serve.log")
    try:
        headers = {"Authorization": f"Bearer {minted.out.strip().splitlines()[-1]}"}
        opened = httpx.post(f"{server.base_url}/v1/gates", json=PII_EXPORT, headers=headers, timeout=30)
        assert opened.status_code in (200, 201), opened.text
        deadline = time.monotonic() + 30
        while "not witnessed" not in server.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "not reached" in server.log.read_text()
        assert httpx.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
        witness.start()
        deadline = time.monotonic() + 90
        while witness.held_size(log.origin) != log.size() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert witness.held_size(log.origin) == log.size()
        code, verdict = log.verify()
        assert code == 0, verdict
        assert verdict["witnessed_size"] == log.size()
    finally:
        stop_server(server)
    report(
        f"Tamper O ({log.engine.dialect.name}): service checkpoints witnessed after a witness outage",
        "cosigned",
        "",
        "cosigned",
    )


# ---------------------------------------------------------------- a hostile witness endpoint


class _Hostile(http.server.BaseHTTPRequestHandler):
    """What answers at a witness's URL when the network (or O) controls it."""

    answers: ClassVar[list[tuple[int, str, bytes]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status, content_type, body = self.answers.pop(0)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_answers_from_a_hostile_witness_endpoint_are_never_stored(
    gatekeeper: Gatekeeper, caplog: pytest.LogCaptureFixture, report: Report
) -> None:
    """A cosignature line under the witness's name by another key, a megabyte of noise, a 409
    claiming an absurd size: nothing is stored as a cosignature, each is logged, nothing raises
    into the log's own work, and verify still finds the quorum unmet."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    honest = Ed25519PrivateKey.generate()
    key = VerifierKey.for_key("witness.test/w1", honest.public_key(), COSIGNATURE_V1)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    gatekeeper.audit.use_witnesses(WitnessPolicy((key,), 1, {key.name: url}))
    stranger = cosign(
        "x\n1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "witness.test/w1",
        Ed25519PrivateKey.generate(),
        1,
    )
    _Hostile.answers[:] = [
        (200, "text/plain", (stranger.text() + "\n").encode()),
        (200, "text/plain", b"\xe2\x80\x94 " * 400_000),
        (409, "text/x.tlog.size", b"99999999999\n"),
    ]
    try:
        for _ in range(3):
            gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
            gatekeeper.audit.checkpoint()
    finally:
        server.shutdown()
    assert gatekeeper.store.cosignatures() == []
    assert "answered 200 without a cosignature line by its key" in caplog.text
    assert "it holds size 99999999999" in caplog.text
    verdict = gatekeeper.audit.verify()
    assert not verdict.ok and "not cosigned by witness.test/w1" in verdict.problem
    assert isinstance(gatekeeper.store, SqlStore)
    report(
        f"Tamper O ({gatekeeper.store.engine.dialect.name}): hostile answers at a witness URL",
        "3 tried, 0 stored",
    )
