"""Decisions signed with the approver's passkey (WebAuthn), and checking them from the log alone.

A rule with ``signature: passkey`` makes every decision on its gates carry a WebAuthn assertion
whose challenge *is* the decision: SHA-256 over the canonical JSON of the gate id, the gate's
binding hash (the exact action, parameters and datasets), the verdict and the SHA-256 of the
comment. The authenticator signs ``authenticatorData ‖ SHA-256(clientDataJSON)`` and the client
data holds that challenge, so changing any of those fields, or moving the assertion to another
gate, breaks the signature — checkable by anyone holding the log, because every key that may
sign is itself an audit event (``passkey.registered``) carrying its COSE public key, the relying
party id and the origin it was registered for.

Assertions are checked with py_webauthn (Duo Labs' maintained WebAuthn library), the same call
for the live decision and the offline verification, so both agree on what a valid one is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gate_core._errors import SignatureInvalid, SignatureRequired
from gate_core._hashing import canonical_json

SIGNATURE_PASSKEY = "passkey"
CHALLENGE_CONTEXT = "gatehouse.decision.v1"  # a challenge for nothing else can equal one of ours


class PasskeyEvent:
    REGISTERED = "passkey.registered"
    REMOVED = "passkey.removed"
    RESET = "passkey.reset"


def comment_hash(comment: str) -> str:
    return hashlib.sha256(comment.encode("utf-8")).hexdigest()


def decision_challenge(gate_id: str, binding_hash: str, verdict: str, comment: str) -> bytes:
    """The 32 bytes the authenticator signs for this decision: nothing else produces them."""
    decision = {
        "context": CHALLENGE_CONTEXT,
        "gate": gate_id,
        "binding_hash": binding_hash,
        "verdict": verdict,
        "comment_sha256": comment_hash(comment),
    }
    return hashlib.sha256(canonical_json(decision).encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class Passkey:
    """A registered credential. Identifiers and keys are base64url, as WebAuthn carries them."""

    credential_id: str
    principal_id: str
    name: str
    public_key: str  # COSE_Key, base64url
    sign_count: int
    rp_id: str
    origin: str
    created_at: datetime
    removed_at: datetime | None = None

    def record(self) -> dict[str, Any]:
        """What the ``passkey.registered`` audit event carries: enough to verify without the DB."""
        return {
            "credential_id": self.credential_id,
            "principal": self.principal_id,
            "name": self.name,
            "public_key_cose": self.public_key,
            "sign_count": self.sign_count,
            "rp_id": self.rp_id,
            "origin": self.origin,
        }


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
MAX_FIELD = 16_384  # far beyond any authenticator's output; refused before decoding


def _b64url_field(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD or not set(value) <= _B64URL:
        raise SignatureInvalid(f"passkey assertion: {name} must be base64url text")
    return value


@dataclass(frozen=True, slots=True)
class PasskeyAssertion:
    """What the authenticator returned for one decision (all base64url)."""

    credential_id: str
    authenticator_data: str
    client_data_json: str
    signature: str

    @classmethod
    def from_json(cls, data: Any) -> PasskeyAssertion:
        """From the browser's PublicKeyCredential (``{id, response: {...}}``) or from ``record()``."""
        if not isinstance(data, Mapping):
            raise SignatureInvalid("passkey assertion must be a JSON object")
        response = data.get("response", data)
        if not isinstance(response, Mapping):
            raise SignatureInvalid("passkey assertion: response must be an object")
        return cls(
            credential_id=_b64url_field(data, "id" if "id" in data else "credential_id"),
            authenticator_data=_b64url_field(
                response, "authenticatorData" if "authenticatorData" in response else "authenticator_data"
            ),
            client_data_json=_b64url_field(
                response, "clientDataJSON" if "clientDataJSON" in response else "client_data_json"
            ),
            signature=_b64url_field(response, "signature"),
        )

    def record(self) -> dict[str, str]:
        return {
            "credential_id": self.credential_id,
            "authenticator_data": self.authenticator_data,
            "client_data_json": self.client_data_json,
            "signature": self.signature,
        }

    def credential(self) -> dict[str, Any]:
        """In the shape py_webauthn parses."""
        return {
            "id": self.credential_id,
            "rawId": self.credential_id,
            "type": "public-key",
            "response": {
                "authenticatorData": self.authenticator_data,
                "clientDataJSON": self.client_data_json,
                "signature": self.signature,
            },
        }


def verify_assertion(assertion: PasskeyAssertion, key: Passkey, challenge: bytes) -> int:
    """Check that ``assertion`` signs ``challenge`` with ``key`` for the key's relying party and
    origin, the person verified (UV) — and return the authenticator's new sign counter. Raises
    SignatureInvalid saying what is wrong. Counters are judged by the caller (``counter_problem``)."""
    try:
        from webauthn import verify_authentication_response
        from webauthn.helpers import base64url_to_bytes
    except ImportError:  # pragma: no cover - the service extra installs it
        raise SignatureInvalid(
            "checking passkey signatures needs the webauthn package (pip install 'gatehouse[service]')"
        ) from None
    if assertion.credential_id != key.credential_id:
        raise SignatureInvalid("the assertion was made with another credential")
    try:
        verified = verify_authentication_response(
            credential=assertion.credential(),
            expected_challenge=challenge,
            expected_rp_id=key.rp_id,
            expected_origin=key.origin,
            credential_public_key=base64url_to_bytes(key.public_key),
            credential_current_sign_count=0,  # judged by counter_problem, with its own message
            require_user_verification=True,
        )
    except Exception as exc:  # the library raises several types for malformed or wrong input
        raise SignatureInvalid(f"passkey signature does not verify for this decision: {exc}") from None
    return int(verified.new_sign_count)


def counter_problem(previous: int, new: int) -> str | None:
    """A counter that did not move forward means two authenticators hold one key (a clone).
    Authenticators without a counter always send 0, which is allowed only while it stays 0."""
    if previous == 0 and new == 0:
        return None
    if new <= previous:
        return (
            f"signature counter went from {previous} to {new}: the counter must increase "
            "(a cloned authenticator?)"
        )
    return None


# ---------------------------------------------------------------- offline verification


@dataclass(slots=True)
class PasskeyLedger:
    """Replays the log's passkey events and checks every signed decision, in log order: a
    decision may use only a key registered earlier for the same person and not removed since."""

    keys: dict[str, Passkey] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    signed_gates: dict[str, str] = field(default_factory=dict)  # gate → binding hash, signature rules
    signed_decisions: int = 0

    INTERESTING = frozenset(
        {
            PasskeyEvent.REGISTERED,
            PasskeyEvent.REMOVED,
            PasskeyEvent.RESET,
            "policy.evaluated",
            "decision.recorded",
        }
    )

    def wants(self, event: str, gate_id: str | None, body: str) -> bool:
        """Cheap pre-filter, so verification parses only the bodies that matter here."""
        if event == "policy.evaluated":
            return '"signature":"passkey"' in body
        if event == "decision.recorded":
            return '"passkey":' in body or gate_id in self.signed_gates
        return event in self.INTERESTING

    def feed(self, event: str, gate_id: str | None, body: str) -> str | None:
        """The problem with this entry, or None."""
        try:
            decoded = json.loads(body)
            payload = decoded.get("payload") or {}
            actor = (decoded.get("actor") or {}).get("principal_id", "")
            at = datetime.fromisoformat(decoded["at"])
            return self._feed(event, gate_id, payload, str(actor), at)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return f"passkey record unreadable: {exc}"

    def _feed(
        self, event: str, gate_id: str | None, payload: Mapping[str, Any], actor: str, at: datetime
    ) -> str | None:
        if event == PasskeyEvent.REGISTERED:
            key = Passkey(
                credential_id=str(payload["credential_id"]),
                principal_id=str(payload["principal"]),
                name=str(payload.get("name", "")),
                public_key=str(payload["public_key_cose"]),
                sign_count=int(payload.get("sign_count", 0)),
                rp_id=str(payload["rp_id"]),
                origin=str(payload["origin"]),
                created_at=at,
            )
            if key.credential_id in self.keys:
                return f"passkey {key.credential_id[:16]}… registered twice"
            self.keys[key.credential_id] = key
            self.counters[key.credential_id] = key.sign_count
            return None
        if event == PasskeyEvent.REMOVED:
            self.keys.pop(str(payload["credential_id"]), None)
            return None
        if event == PasskeyEvent.RESET:
            person = str(payload["principal"])
            for credential_id in [c for c, k in self.keys.items() if k.principal_id == person]:
                del self.keys[credential_id]
            return None
        if event == "policy.evaluated" and gate_id is not None:
            if payload.get("signature") == SIGNATURE_PASSKEY:
                self.signed_gates[gate_id] = str(payload.get("binding_hash", ""))
            return None
        if event == "decision.recorded" and gate_id is not None:
            return self._decision(gate_id, payload, actor)
        return None

    def _decision(self, gate_id: str, payload: Mapping[str, Any], actor: str) -> str | None:
        signed = payload.get("passkey")
        required = gate_id in self.signed_gates
        if signed is None:
            return (
                f"decision on gate {gate_id} is not signed, but its rule requires a passkey signature"
                if required
                else None
            )
        if required and payload.get("binding_hash") != self.signed_gates[gate_id]:
            return f"signed decision on gate {gate_id} names another binding hash than the gate's"
        try:
            assertion = PasskeyAssertion.from_json(signed)
        except SignatureInvalid as exc:
            return f"signed decision on gate {gate_id}: {exc}"
        key = self.keys.get(assertion.credential_id)
        if key is None:
            return (
                f"signed decision on gate {gate_id} uses passkey {assertion.credential_id[:16]}…, "
                "which no earlier entry registers (or it was removed)"
            )
        if key.principal_id != actor:
            return f"signed decision on gate {gate_id} by {actor} uses {key.principal_id}'s passkey"
        challenge = decision_challenge(
            gate_id, str(payload.get("binding_hash", "")), str(payload.get("verdict", "")),
            str(payload.get("comment", "")),
        )  # fmt: skip
        try:
            new_count = verify_assertion(assertion, key, challenge)
        except SignatureInvalid as exc:
            return f"signed decision on gate {gate_id}: {exc}"
        problem = counter_problem(self.counters.get(key.credential_id, 0), new_count)
        if problem is not None:
            return f"signed decision on gate {gate_id}: {problem}"
        self.counters[key.credential_id] = new_count
        self.signed_decisions += 1
        return None


__all__ = [
    "SIGNATURE_PASSKEY",
    "Passkey",
    "PasskeyAssertion",
    "PasskeyEvent",
    "PasskeyLedger",
    "SignatureInvalid",
    "SignatureRequired",
    "comment_hash",
    "counter_problem",
    "decision_challenge",
    "verify_assertion",
]
