"""Deterministic JSON and its SHA-256: the one way Gatehouse hashes content.

A leaf module, so that every layer (identity, the gate domain, policy, audit) can hash the same way
without importing the others.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept as is.

    Used for every hash Gatehouse computes (binding hash, policy hash, audit chain), so that the
    same content always hashes the same on any machine and database.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
