"""The log's side of witnessing: which witnesses must cosign its checkpoints, submitting each new
checkpoint to them (C2SP tlog-witness), and counting a quorum of their cosignatures.

``$GATEHOUSE_HOME/witnesses.yaml`` (read by the CLI and the service alike)::

    quorum: 2                  # valid cosignatures `gatehouse audit verify` requires (default: all)
    witnesses:
      - url: https://witness-a.example.com      # where POST /add-checkpoint is served
        key: witness-a.example.com/w1+5c1a…+BAb3…   # its verifier key, from `gatehouse witness init`
      - url: https://witness-b.example.net
        key: witness-b.example.net/w2+…

A checkpoint goes to each witness with a consistency proof from the size that witness last
cosigned (the newest of its cosignatures in the database); a witness that holds another size
answers 409 with it, and the proof is rebuilt from there. An auditor passes the keys out of band
(``gatehouse audit verify --witness-key F --quorum N``): the file above is in the operator's reach.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gate_core._cosign import (
    COSIGNATURE_V1,
    SIZE_CONTENT_TYPE,
    SignatureLine,
    StoredCosignature,
    VerifierKey,
    add_checkpoint_body,
    check_cosignatures,
    parse_decimal,
    parse_note,
    parse_signature_line,
)
from gate_core._errors import AuditError, ConfigError
from gate_core._proofs import NoteCheckpoint, verify_bundle

log = logging.getLogger("gatehouse.audit")
MAX_ANSWER_BYTES = 16_384


@dataclass(frozen=True)
class WitnessPolicy:
    """The witnesses a log's checkpoints need: their keys, how many must cosign, and (on the
    log's side) where each is reached."""

    keys: tuple[VerifierKey, ...]
    quorum: int
    urls: Mapping[str, str] = field(default_factory=dict)  # witness name → base URL

    def __post_init__(self) -> None:
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            raise ConfigError("two witness keys share one name; each witness has its own")
        if any(k.signature_type != COSIGNATURE_V1 for k in self.keys):
            raise ConfigError("a witness key must be a cosignature/v1 key (type 0x04), not a log's note key")
        if not 1 <= self.quorum <= len(self.keys):
            raise ConfigError(
                f"quorum {self.quorum} cannot be met by {len(self.keys)} witness key(s): "
                "it must be between 1 and the number of witnesses"
            )

    @classmethod
    def load(cls, path: Path) -> WitnessPolicy | None:
        """The home's witnesses.yaml, or None if there is none."""
        if not path.exists():
            return None
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from exc
        entries = data.get("witnesses") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{path}: needs witnesses: [{{url, key}}, …]")
        keys, urls = [], {}
        for number, entry in enumerate(entries):
            where = f"{path}: witnesses[{number}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                raise ConfigError(f"{where}: needs key: <the witness's verifier key>")
            try:
                key = VerifierKey.parse(entry["key"])
            except AuditError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
            keys.append(key)
            if entry.get("url") is not None:
                url = str(entry["url"]).rstrip("/")
                if not url.startswith(("http://", "https://")):
                    raise ConfigError(f"{where}: url must be http(s)://…")
                urls[key.name] = url
        quorum = data.get("quorum", len(keys))
        if not isinstance(quorum, int) or isinstance(quorum, bool):
            raise ConfigError(f"{path}: quorum must be a number")
        try:
            return cls(tuple(keys), quorum, urls)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def require(self, text: str, lines: Sequence[str], what: str, *, now: int | None = None) -> list[str]:
        """The names of the witnesses whose valid cosignature on the checkpoint note text ``text``
        is among ``lines``; AuditError naming the forged or missing ones if fewer than quorum."""
        signatures = []
        for line in lines:
            try:
                signatures.append(parse_signature_line(line))
            except AuditError:
                continue  # not a cosignature line at all: nothing it could prove
        cosigned = check_cosignatures(text, signatures, self.keys, now=now)
        if cosigned.forged:
            raise AuditError(
                f"the cosignature by {', '.join(cosigned.forged)} on {what} does not verify "
                "(forged or altered)"
            )
        if len(cosigned.valid) < self.quorum:
            missing = cosigned.missing(self.keys)
            raise AuditError(
                f"{what} has {len(cosigned.valid)} valid witness cosignature(s), {self.quorum} required; "
                f"not cosigned by {', '.join(missing)}. An honest witness refuses a checkpoint that does "
                "not extend the one it holds (history rewritten?), or was not reached yet"
            )
        return sorted(cosigned.valid)


class WitnessTransport(Protocol):
    """POST one add-checkpoint body; (status, content type, text). Raises httpx.HTTPError."""

    def post(self, url: str, body: bytes) -> tuple[int, str, str]: ...


class HttpWitnessTransport:
    def __init__(self, timeout_s: float = 10.0) -> None:
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def post(self, url: str, body: bytes) -> tuple[int, str, str]:
        # a witness answers a few lines: read no more than that from whatever answers at its URL
        with self._client.stream("POST", url, content=body) as response:
            answer = b""
            for chunk in response.iter_bytes():
                answer += chunk
                if len(answer) > MAX_ANSWER_BYTES:
                    break
            text = answer[:MAX_ANSWER_BYTES].decode("utf-8", errors="replace")
            return response.status_code, response.headers.get("content-type", ""), text


@dataclass(frozen=True)
class Outcome:
    cosignatures: list[StoredCosignature]
    problems: list[str]


def submit(
    policy: WitnessPolicy,
    transport: WitnessTransport,
    note: str,
    checkpoint: NoteCheckpoint,
    proof_from: Callable[[int], list[bytes]],
    acknowledged: Mapping[str, int],
    only: Sequence[str] | None = None,
) -> Outcome:
    """Ask each witness (or those named in ``only``) to cosign ``note``, a log-signed checkpoint;
    ``proof_from(old)`` is the consistency proof from size ``old``. Never raises for a witness:
    whatever goes wrong is one line of ``problems``."""
    text = parse_note(note).text
    out: list[StoredCosignature] = []
    problems: list[str] = []
    for key in policy.keys:
        if only is not None and key.name not in only:
            continue
        url = policy.urls.get(key.name)
        if url is None:
            continue
        try:
            line = _ask(key, f"{url}/add-checkpoint", transport, note, checkpoint, proof_from, acknowledged)
        except AuditError as exc:
            problems.append(f"witness {key.name}: {exc}")
            continue
        except httpx.HTTPError as exc:
            problems.append(f"witness {key.name} at {url} not reached: {type(exc).__name__}: {exc}")
            continue
        cosigned = check_cosignatures(text, [line], [key])
        if key.name not in cosigned.valid:
            problems.append(f"witness {key.name} answered a cosignature that does not verify by its key")
            continue
        out.append(
            StoredCosignature(
                checkpoint.size,
                checkpoint.root,
                key.name,
                key.key_id,
                cosigned.valid[key.name],
                line.text(),
                note,
            )
        )
    return Outcome(out, problems)


def _ask(
    key: VerifierKey,
    url: str,
    transport: WitnessTransport,
    note: str,
    checkpoint: NoteCheckpoint,
    proof_from: Callable[[int], list[bytes]],
    acknowledged: Mapping[str, int],
) -> SignatureLine:
    old = acknowledged.get(key.name, 0)
    if old > checkpoint.size:
        old = 0  # the database's record is beyond this checkpoint: let the witness say what it holds
    for _attempt in range(3):
        if old > checkpoint.size:
            raise AuditError(
                f"it holds size {old}, beyond this checkpoint's {checkpoint.size}: entries or checkpoints "
                "after it were removed, or a newer checkpoint was already cosigned"
            )
        proof = proof_from(old) if 0 < old < checkpoint.size else []
        status, content_type, answer = transport.post(url, add_checkpoint_body(old, proof, note))
        if status == 200:
            for text in answer.splitlines():
                try:
                    line = parse_signature_line(text)
                except AuditError:
                    continue
                if (line.name, line.key_id) == (key.name, key.key_id):
                    return line
            raise AuditError("answered 200 without a cosignature line by its key")
        if status == 409 and content_type.split(";")[0].strip() == SIZE_CONTENT_TYPE:
            held = parse_decimal(answer.strip(), "the witness's size")
            if held == old:
                raise AuditError(f"answered 409 for its own size {old}")
            old = held
            continue
        raise AuditError(f"refused with HTTP {status}: {answer.strip()[:300]}")
    raise AuditError("kept answering 409 with other sizes")


def verify_witnessed_bundle(
    text: str, public_key: Ed25519PublicKey, policy: WitnessPolicy | None
) -> tuple[dict[str, Any], list[str]]:
    """:func:`gate_core._proofs.verify_bundle` (the entry is under the log-signed checkpoint),
    then, with ``policy``, a quorum of the witnesses' cosignatures on that checkpoint, carried as
    extra signature lines of its note. Returns the entry and the witnesses that cosigned."""
    entry = verify_bundle(text, public_key)
    if policy is None:
        return entry, []
    note = parse_note(str(json.loads(text)["checkpoint"]))
    lines = [line.text() for line in note.signatures]
    return entry, policy.require(note.text, lines, "the proof's checkpoint", now=int(time.time()))


def held_sizes(policy: WitnessPolicy, transport: WitnessTransport, note: str) -> dict[str, int]:
    """Ask each reachable witness which size it holds for the note's log: ``old 0`` with a note
    the log signed (tlog-witness lets a client learn the size this way). A witness that holds more
    than the database's newest checkpoint proves entries or checkpoints were removed; the answer
    can only ever fail a verification, never pass one. Unreachable witnesses are left out."""
    held: dict[str, int] = {}
    for key in policy.keys:
        url = policy.urls.get(key.name)
        if url is None:
            continue
        try:
            status, content_type, answer = transport.post(
                f"{url}/add-checkpoint", add_checkpoint_body(0, [], note)
            )
            if status == 409 and content_type.split(";")[0].strip() == SIZE_CONTENT_TYPE:
                held[key.name] = parse_decimal(answer.strip(), "the witness's size")
        except (httpx.HTTPError, AuditError) as exc:
            log.warning("witness %s not asked for its size: %s", key.name, exc)
    return held
