"""Fixtures for the reliability suite, and the figures it reports.

Every test records the figure behind its guarantee with ``report(name, value, unit, target)``;
at the end of the session they are written to ``.gatehouse-dev/reliability/latest.json``, from
which ``python -m tests.reliability.render`` writes docs/guarantees.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gate_core import Settings, init_home
from tests.reliability._postgres import PrivatePostgres, create_private_postgres
from tests.service.conftest import service, service_factory, service_settings  # noqa: F401 - shared fixtures

RESULTS = Path(__file__).resolve().parents[2] / ".gatehouse-dev" / "reliability"
Report = Callable[..., None]


@pytest.fixture(scope="session")
def report(worker_id: str) -> Iterator[Report]:
    figures: dict[str, dict[str, Any]] = {}

    def record(name: str, value: float | int | str, unit: str = "", target: str = "", test: str = "") -> None:
        figures[name] = {
            "value": value,
            "unit": unit,
            "target": target,
            "test": test or os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
        }

    yield record
    if figures:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"figures-{worker_id}.json"
        path.write_text(json.dumps(figures, indent=2, sort_keys=True))


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
