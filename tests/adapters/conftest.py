"""A real `gatehouse serve` for the adapter contract: the example policy plus a fast-expiring
rule, tokens for the example users, and the pipeline's token (etl-bot) in the environment the
adapters read (GATEHOUSE_URL / GATEHOUSE_TOKEN)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from gate_core import Settings, init_home, open_gatekeeper
from tests.adapters.contract import Live
from tests.service.conftest import launch_server, make_tokens, stop_server

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
    gatekeeper = open_gatekeeper(live_settings)
    tokens = make_tokens(gatekeeper)
    gatekeeper.store.close()
    server = launch_server(live_settings, tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        monkeypatch_module.setenv("GATEHOUSE_URL", server.base_url)
        monkeypatch_module.setenv("GATEHOUSE_TOKEN", tokens["bot"])
        yield Live(server.base_url, tokens, tokens["bot"])
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()
