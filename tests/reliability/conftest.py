"""Fixtures for the reliability suite (figures are recorded with the root conftest's ``report``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gate_core import Settings, init_home
from tests.conftest import Report
from tests.gate_core.conftest import clock, gatekeeper, signer  # noqa: F401 - shared fixtures
from tests.reliability._postgres import PrivatePostgres, create_private_postgres
from tests.service.conftest import service, service_factory, service_settings  # noqa: F401 - shared fixtures


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = create_private_postgres()
    yield cluster
    cluster.destroy()


def example_home(root: Path, database_url: str) -> Settings:
    settings = Settings(
        home=root / "home",
        database_url=database_url,
        policy_path=root / "home/policy.yaml",
        directory_path=root / "home/directory.yaml",
    )
    init_home(settings, example=True)
    return settings


__all__ = ["Report", "example_home"]
