"""A witness (C2SP tlog-witness): cosigns a log's checkpoint only if it is signed by the log's
configured key and provably extends the latest checkpoint the witness cosigned for that log.

Its home (``gatehouse witness init``), on another machine or account than the log's::

    witness.yaml          name: witness.example/w1 · logs: [{origin, key}] (the log's note vkey)
    witness-signing.key   its own Ed25519 key (0600); `gatehouse witness show` prints the vkey
    witness.db            the latest cosigned checkpoint per log, and refused submissions

Answers (tlog-witness): 400 a malformed body or an old size above the checkpoint's; 403 no valid
signature by the log's key; 404 a log it does not witness; 409 an old size that is not the one it
holds (body: its size, ``text/x.tlog.size``), or the same size with another root; 422 a
consistency proof that does not verify; 200 the cosignature line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate_core._cosign import (
    COSIGNATURE_V1,
    NOTE_ED25519,
    VerifierKey,
    cosign,
    has_valid_signature,
    parse_add_checkpoint,
    parse_checkpoint_text,
    parse_note,
)
from gate_core._errors import AuditError, ConfigError
from gate_core._merkle import verify_consistency
from gate_core.witness._state import Latest, WitnessState


class Refused(Exception):
    """A submission the witness does not cosign: the HTTP status and why."""

    def __init__(self, status: int, reason: str, size: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.size = size  # on 409: the size the witness holds


@dataclass(frozen=True)
class WitnessHome:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "witness.yaml"

    @property
    def key_path(self) -> Path:
        return self.path / "witness-signing.key"

    @property
    def state_path(self) -> Path:
        return self.path / "witness.db"

    @classmethod
    def from_env(cls, home: Path | None = None) -> WitnessHome:
        if home is None:
            home = Path(os.environ.get("GATEHOUSE_WITNESS_HOME") or Path.home() / ".gatehouse-witness")
        return cls(home.expanduser())

    def init(self, name: str) -> VerifierKey:
        """Create the home, key and empty config; an existing key is kept (a witness's key and
        state must never be replaced behind the logs' backs)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.path.chmod(0o700)
        if not self.key_path.exists():
            key = Ed25519PrivateKey.generate()
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
        if not self.config_path.exists():
            VerifierKey.for_key(name, self.private_key().public_key(), COSIGNATURE_V1)  # name valid?
            self._write({"name": name, "logs": []})
        WitnessState(self.state_path)
        return self.verifier_key()

    def private_key(self) -> Ed25519PrivateKey:
        try:
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load the witness key {self.key_path}: {exc}; run `gatehouse witness init`"
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{self.key_path} is not an Ed25519 private key")
        return key

    def config(self) -> dict[str, object]:
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read {self.config_path}: {exc}; run `gatehouse witness init`") from exc
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ConfigError(f"{self.config_path}: needs 'name:' and 'logs:'")
        return data

    def name(self) -> str:
        return str(self.config()["name"])

    def verifier_key(self) -> VerifierKey:
        return VerifierKey.for_key(self.name(), self.private_key().public_key(), COSIGNATURE_V1)

    def logs(self) -> dict[str, VerifierKey]:
        """The logs this witness cosigns: origin → the log's note key."""
        entries = self.config().get("logs") or []
        if not isinstance(entries, list):
            raise ConfigError(f"{self.config_path}: logs: must be a list")
        logs: dict[str, VerifierKey] = {}
        for number, entry in enumerate(entries):
            where = f"{self.config_path}: logs[{number}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                raise ConfigError(f"{where}: needs key: <the log's verifier key>")
            try:
                key = VerifierKey.parse(entry["key"])
            except AuditError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
            if key.signature_type != NOTE_ED25519:
                raise ConfigError(f"{where}: {key.name} is a cosigner's key, not a log's note key")
            logs[key.name] = key
        return logs

    def add_log(self, key: VerifierKey) -> bool:
        """Witness one more log (its origin is the key's name); False if it already is."""
        if key.signature_type != NOTE_ED25519:
            raise ConfigError(f"{key.name} is a cosigner's key, not a log's note key (type 0x01)")
        logs = self.logs()
        if key.name in logs:
            if logs[key.name] != key:
                raise ConfigError(
                    f"this witness already holds another key for {key.name}; a log's key is not replaced "
                    "by a command (edit witness.yaml deliberately if the log really rotated its key)"
                )
            return False
        data = self.config()
        data["logs"] = [*(data.get("logs") or []), {"origin": key.name, "key": key.text()}]  # type: ignore[misc]
        self._write(data)
        return True

    def _write(self, data: Mapping[str, object]) -> None:
        """Atomically: a temporary file, fsynced, renamed over the old one."""
        tmp = self.config_path.with_suffix(".yaml.tmp")
        with tmp.open("w", encoding="utf-8") as out:
            yaml.safe_dump(dict(data), out, sort_keys=False)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.config_path)

    def open(self, clock: Callable[[], float] = time.time) -> Witness:
        return Witness(self.name(), self.private_key(), self.logs(), WitnessState(self.state_path), clock)


@dataclass
class Witness:
    name: str
    private_key: Ed25519PrivateKey
    logs: Mapping[str, VerifierKey]
    state: WitnessState
    clock: Callable[[], float] = field(default=time.time)

    def add_checkpoint(self, body: bytes) -> str:
        """tlog-witness add-checkpoint: the cosignature line(s), newline-terminated, or Refused."""
        try:
            request = parse_add_checkpoint(body)
            note = parse_note(request.note)
            checkpoint = parse_checkpoint_text(note.text)
        except AuditError as exc:
            raise Refused(400, str(exc)) from None
        key = self.logs.get(checkpoint.origin)
        if key is None:
            raise Refused(404, f"this witness does not witness the log {checkpoint.origin}")
        try:
            signed = has_valid_signature(note, key)
        except AuditError as exc:
            raise Refused(403, str(exc)) from None
        if not signed:
            raise Refused(403, f"the checkpoint carries no signature by {key.name}+{key.key_id.hex()}")
        if request.old > checkpoint.size:
            raise Refused(400, f"old size {request.old} is above the checkpoint's size {checkpoint.size}")
        if request.old == 0 and request.proof:
            raise Refused(400, "a consistency proof from size 0 must be empty")
        try:
            with self.state.update(checkpoint.origin) as (held, new):
                self._check(request.old, request.proof, checkpoint.size, checkpoint.root, held)
                new.append(Latest(checkpoint.size, checkpoint.root, request.note))
        except Refused as refused:
            if refused.status == 422 or (refused.status == 409 and refused.size is None):  # evidence
                self.state.refused(checkpoint.origin, refused.status, refused.reason, body.decode())
            raise
        line = cosign(note.text, self.name, self.private_key, int(self.clock()))
        return line.text() + "\n"

    @staticmethod
    def _check(old: int, proof: tuple[bytes, ...], size: int, root: bytes, held: Latest) -> None:
        if old != held.size:
            raise Refused(409, f"this witness holds size {held.size}, not {old}", size=held.size)
        if old == size:
            if root != held.root:
                raise Refused(409, f"size {size} with a root other than the one this witness cosigned")
            return
        if old and not verify_consistency(old, size, proof, held.root, root):
            raise Refused(
                422,
                f"the consistency proof from size {old} to {size} does not verify: this checkpoint does "
                f"not extend the one this witness holds (history rewritten?)",
            )
