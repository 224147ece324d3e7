"""Lineage fixtures: a lineage store next to a real gate store, on SQLite and PostgreSQL.

The service fixtures are the gate service's own (a real server on a socket), re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import lineage
from gate_core import Gatekeeper, SqlStore
from gate_core.testing import ManualClock, example_gatekeeper
from lineage import LineageStore
from tests.service.conftest import service, service_factory, service_settings  # noqa: F401 - fixtures


@pytest.fixture(autouse=True)
def _fresh_recorder(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """No test inherits another's configure(), nor the developer's ~/.gatehouse."""
    for name in ("GATEHOUSE_URL", "GATEHOUSE_TOKEN", "GATEHOUSE_DATABASE_URL", "GATEHOUSE_LINEAGE_CATALOG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEHOUSE_HOME", str(tmp_path_factory.mktemp("no-home") / "absent"))
    lineage.reset()
    yield
    lineage.reset()


@pytest.fixture
def gatekeeper(database_url: str) -> Iterator[Gatekeeper]:
    gk = example_gatekeeper(database_url=database_url, clock=ManualClock())
    yield gk
    gk.store.close()


@pytest.fixture
def lstore(gatekeeper: Gatekeeper) -> LineageStore:
    """Lineage tables in the gate store's database, sharing its engine."""
    assert isinstance(gatekeeper.store, SqlStore)
    return LineageStore.for_gate_store(gatekeeper.store)
