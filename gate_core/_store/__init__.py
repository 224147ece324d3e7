"""SQL adapter of the GateStore port (private; use gate_core.open_store)."""

from __future__ import annotations

from gate_core._store._sql import SqlStore, create_store_engine, normalise_url

__all__ = ["SqlStore", "create_store_engine", "normalise_url"]
