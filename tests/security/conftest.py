"""The security suite: the real service fixtures (uvicorn over a socket, SQLite and PostgreSQL), and
homes and channels as an adversary meets them: the real ``gatehouse`` CLI in a subprocess, the
real ``gatehouse serve`` over HTTP, and hand-written SQL on the SQLite file or PostgreSQL.

``production_home`` is a home that is *not* a sandbox (``init --example`` then its sandbox marker
removed), whose directory names the kernel's account of this test process as an alias of one
principal (``kernel_is``): the only way to be someone at the CLI now. The attacks also set
``$USER``, which is what the old code believed.
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from gate_core import Settings
from tests.gate_core.conftest import clock, gatekeeper, signer  # noqa: F401 - shared fixtures
from tests.service.conftest import service, service_factory, service_settings  # noqa: F401 - shared fixtures
from tests.service.scim_rig import scim_rig  # noqa: F401 - shared fixture

GATEHOUSE = [sys.executable, "-m", "gate_core.cli"]
SEPARATION = "Separation of duties"  # docs/guarantees.md sections the attacks' figures belong to
IDENTITY = "Identity at the edges"
KERNEL_ACCOUNT = pwd.getpwuid(os.geteuid()).pw_name


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        return self.out.strip().splitlines()[-1] if self.out.strip() else ""


@dataclass
class Home:
    settings: Settings

    def run(self, *args: str, env: dict[str, str] | None = None) -> Done:
        environ = {
            **os.environ,
            "GATEHOUSE_HOME": str(self.settings.home),
            "GATEHOUSE_DATABASE_URL": self.settings.database_url,
            **(env or {}),
        }
        proc = subprocess.run([*GATEHOUSE, *args], capture_output=True, text=True, env=environ, timeout=120)
        assert "Traceback" not in proc.stderr, proc.stderr
        return Done(proc.returncode, proc.stdout, proc.stderr)

    @property
    def backend(self) -> str:
        return "SQLite" if self.settings.database_url.startswith("sqlite") else "PostgreSQL"

    def figure(
        self, report: Callable[..., None], attack_class: str, tried: int, section: str = SEPARATION
    ) -> None:
        """One figure for docs/guarantees.md: every attempt of the class was refused."""
        report(f"{section}: {attack_class} ({self.backend})", f"{tried} tried, 0 accepted")

    def sql(self, statement: str, **params: object) -> list[tuple[object, ...]]:
        """Real SQL on the home's database, as its owner would run it."""
        url = self.settings.database_url.replace("postgresql://", "postgresql+psycopg://")
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(statement), params)
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def legacy_token(self, principal: str, scope: str, created_by: str) -> str:
        """A token row as every version before issue 14 could create it: anyone named as creator,
        no channel recorded. Returns the token string (``gh_<id>_<secret>``)."""
        import hashlib

        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        self.sql(
            "INSERT INTO gh_api_tokens (id, principal_id, scope, secret_hash, description, created_at,"
            " created_by) VALUES (:id, :p, :s, :h, 'minted', :at, :by)",
            id=token_id,
            p=principal,
            s=scope,
            h=hashlib.sha256(secret.encode()).hexdigest(),
            at=datetime.now(UTC),
            by=created_by,
        )
        return f"gh_{token_id}_{secret}"


def make_home(tmp_path: Path, database_url: str, *, kernel_is: str, sandbox: bool) -> Home:
    home = tmp_path / "home"
    settings = Settings(
        home=home,
        database_url=database_url,
        policy_path=home / "policy.yaml",
        directory_path=home / "directory.yaml",
    )
    made = Home(settings)
    assert made.run("init", "--example").code == 0
    if not sandbox:
        (home / "sandbox.yaml").unlink(missing_ok=True)
    directory = settings.directory_path.read_text(encoding="utf-8")
    settings.directory_path.write_text(
        directory.replace(
            f"  - id: {kernel_is}\n", f"  - id: {kernel_is}\n    aliases: [{KERNEL_ACCOUNT}]\n"
        ),
        encoding="utf-8",
    )
    return made


@pytest.fixture
def home_for(tmp_path: Path, database_url: str) -> Callable[..., Home]:
    """``home_for(kernel_is="alice", sandbox=False)``: a fresh home on the parametrised backend."""

    def make(*, kernel_is: str = "alice", sandbox: bool = False) -> Home:
        return make_home(tmp_path, database_url, kernel_is=kernel_is, sandbox=sandbox)

    return make


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start real ``gatehouse serve`` for a home (``serve(home, host="0.0.0.0")`` to bind
    elsewhere than loopback); returns its base URL on 127.0.0.1."""
    from tests.service.conftest import ServerProcess, launch_server, stop_server

    started: list[ServerProcess] = []

    def start(home: Home, host: str = "127.0.0.1") -> str:
        server = launch_server(home.settings, tmp_path / f"serve-{len(started)}.log", host=host)
        started.append(server)
        return server.base_url

    yield start
    for server in started:
        stop_server(server)


PII_EXPORT = {
    "action": "export",
    "target": "s3://exports/customers.csv",
    "datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["pii"]}],
    "reason": "quarterly churn report",
}
