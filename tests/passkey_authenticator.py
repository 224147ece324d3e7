"""A software WebAuthn authenticator for tests that need signed decisions without a browser: an
ES256 (P-256) key, a credential id and a signature counter, producing assertions byte for byte
as the WebAuthn spec lays them out (authenticatorData = rpIdHash ‖ flags ‖ counter; the
signature over authenticatorData ‖ SHA-256(clientDataJSON)). The acceptance tests use Chromium's
virtual authenticator instead; this one lets attacks build (and forge) assertions by hand."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from gate_core._passkeys import Passkey, PasskeyAssertion

FLAG_UP, FLAG_UV = 0x01, 0x04


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SoftAuthenticator:
    rp_id: str = "localhost"
    origin: str = "http://localhost:8000"
    counter: int = 0
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: str = field(default_factory=lambda: b64url(secrets.token_bytes(32)))

    def cose_public_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        )

    def passkey(self, principal_id: str, name: str = "test key") -> Passkey:
        return Passkey(
            credential_id=self.credential_id,
            principal_id=principal_id,
            name=name,
            public_key=b64url(self.cose_public_key()),
            sign_count=self.counter,
            rp_id=self.rp_id,
            origin=self.origin,
            created_at=datetime.now(UTC),
        )

    def sign(
        self,
        challenge: bytes,
        *,
        origin: str | None = None,
        user_verified: bool = True,
        counter: int | None = None,
    ) -> PasskeyAssertion:
        if counter is None:
            self.counter += 1
            counter = self.counter
        flags = FLAG_UP | (FLAG_UV if user_verified else 0)
        auth_data = hashlib.sha256(self.rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", counter)
        client_data = json.dumps(
            {"type": "webauthn.get", "challenge": b64url(challenge), "origin": origin or self.origin},
            separators=(",", ":"),
        ).encode()
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return PasskeyAssertion(
            credential_id=self.credential_id,
            authenticator_data=b64url(auth_data),
            client_data_json=b64url(client_data),
            signature=b64url(signature),
        )

    def attestation(
        self, challenge: bytes, *, origin: str | None = None, user_verified: bool = True
    ) -> dict[str, object]:
        """A registration response (``none`` attestation) as the browser would post it."""
        flags = FLAG_UP | (FLAG_UV if user_verified else 0) | 0x40  # AT: attested credential data
        raw_id = base64.urlsafe_b64decode(self.credential_id + "=" * (-len(self.credential_id) % 4))
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([flags])
            + struct.pack(">I", self.counter)
            + bytes(16)  # AAGUID
            + struct.pack(">H", len(raw_id))
            + raw_id
            + self.cose_public_key()
        )
        client_data = json.dumps(
            {"type": "webauthn.create", "challenge": b64url(challenge), "origin": origin or self.origin},
            separators=(",", ":"),
        ).encode()
        attestation_object = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": self.credential_id,
            "rawId": self.credential_id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
        }
