"""Shared fixtures. Every store test runs on SQLite and on PostgreSQL.

PostgreSQL is required, never skipped: without it the suite errors with how to start it.
Each test gets a fresh database cloned from a migrated template (one template per xdist worker).
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine

from gate_core import SqlStore
from gate_core._store._migrate import MIGRATIONS

POSTGRES_URL = os.environ.get("GATEHOUSE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
START_HINT = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


@dataclass(frozen=True)
class PostgresServer:
    admin_url: str
    template: str

    def url_for(self, database: str) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_url, autocommit=True)


@pytest.fixture(scope="session")
def postgres_server(worker_id: str) -> Iterator[PostgresServer]:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required at {POSTGRES_URL} and is not reachable ({exc}); {START_HINT}",
            pytrace=False,
        )
    template = f"gh_template_{worker_id}_{uuid.uuid4().hex[:6]}"
    server = PostgresServer(POSTGRES_URL, template)
    with server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{template}"')
    engine = create_engine(server.url_for(template).replace("postgresql://", "postgresql+psycopg://"))
    MIGRATIONS.upgrade(engine)
    engine.dispose()
    yield server
    with server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


_counter = itertools.count()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, worker_id: str) -> Iterator[str]:
    name = f"gh_test_{worker_id}_{os.getpid()}_{next(_counter)}"
    with postgres_server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_server.template}"')
    yield postgres_server.url_for(name)
    with postgres_server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh, empty gate database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'gatehouse.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    store = SqlStore.open(database_url)
    yield store
    store.close()


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """xdist's worker id, or "main" without xdist (so the suite also runs without the plugin)."""
    workerinput = getattr(request.config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else "main"


RESULTS = Path(__file__).resolve().parents[1] / ".gatehouse-dev" / "reliability"
Report = Callable[..., None]


@pytest.fixture(scope="session")
def report(worker_id: str, testrun_uid: str) -> Iterator[Report]:
    """Record the figure behind a guarantee: ``report(name, value, unit, target)``.

    Written per worker as ``.gatehouse-dev/reliability/figures-<run>-<worker>.json``;
    ``python -m tests.reliability.render`` turns the newest run's figures into docs/guarantees.md."""
    figures: dict[str, dict[str, Any]] = {}

    def record(name: str, value: float | int | str, unit: str = "", target: str = "") -> None:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        figures[name] = {"value": value, "unit": unit, "target": target, "test": test}

    yield record
    if figures:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"figures-{testrun_uid}-{worker_id}.json").write_text(json.dumps(figures, indent=2))


@pytest.fixture(autouse=True, scope="session")
def _no_login_of_the_developer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's CLI runs work locally unless a test logs in: a developer's own `gatehouse login`
    (or GATEHOUSE_URL / GATEHOUSE_TOKEN in their shell) must not send them to a real service.
    Session-wide and once, before any fixture: the adapter suites set GATEHOUSE_URL/_TOKEN for
    their own live service in module fixtures, and a per-test reset would take those away."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GATEHOUSE_CONFIG_DIR", str(tmp_path_factory.getbasetemp() / "no-login-config"))
        patch.delenv("GATEHOUSE_URL", raising=False)
        patch.delenv("GATEHOUSE_TOKEN", raising=False)
        yield
