"""A real `gatehouse serve` for the adapter contract: the example policy plus a fast-expiring
rule, tokens for the example users, and the pipeline's token (etl-bot) in the environment the
adapters read (GATEHOUSE_URL / GATEHOUSE_TOKEN)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gate_core import Settings, init_home, open_gatekeeper
from tests.adapters.contract import Live
from tests.service.conftest import ServerProcess, make_tokens

EXPIRE_FAST = {
    "name": "expire-fast",
    "description": "contract test: expires before anyone can look",
    "match": {"action": ["infra_change"], "pipeline": ["*"]},
    "outcome": "require",
    "approvers": {"groups": ["data-governance"], "count": 1},
    "expiry": "3s",
}


@pytest.fixture(scope="module")
def live_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("gatehouse-home")
    settings = Settings(
        home=home,
        database_url=f"sqlite:///{home / 'gatehouse.db'}",
        policy_path=home / "policy.yaml",
        directory_path=home / "directory.yaml",
    )
    init_home(settings, example=True)
    policy = yaml.safe_load(settings.policy_path.read_text())
    policy["rules"].insert(0, EXPIRE_FAST)
    settings.policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return settings


@pytest.fixture(scope="module")
def live(
    live_settings: Settings, tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch
) -> Iterator[Live]:
    import os
    import signal
    import subprocess
    import sys

    from tests.service.conftest import free_port, wait_healthy

    gatekeeper = open_gatekeeper(live_settings)
    tokens = make_tokens(gatekeeper)
    gatekeeper.store.close()
    port = free_port()
    log = Path(tmp_path_factory.mktemp("serve")) / "serve.log"
    env = {
        **os.environ,
        "GATEHOUSE_HOME": str(live_settings.home),
        "GATEHOUSE_DATABASE_URL": live_settings.database_url,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gate_core.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_healthy(server.base_url, timeout=60)
        monkeypatch_module.setenv("GATEHOUSE_URL", server.base_url)
        monkeypatch_module.setenv("GATEHOUSE_TOKEN", tokens["bot"])
        yield Live(server.base_url, tokens, tokens["bot"])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()
