"""Every orchestrator adapter runs every contract scenario: a scenario added to contract.py cannot
be forgotten by one adapter's test module (they star-import them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SCENARIOS = {
    node.name
    for node in ast.parse((HERE / "contract.py").read_text()).body
    if isinstance(node, ast.FunctionDef) and node.name.startswith("test_contract_")
}


@pytest.mark.parametrize("adapter", ["airflow", "prefect", "dagster"])
def test_every_adapter_module_runs_every_contract_scenario(adapter: str) -> None:
    tree = ast.parse((HERE / f"test_{adapter}.py").read_text())
    star = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "tests.adapters.contract"
        and any(alias.name == "*" for alias in node.names)
        for node in tree.body
    )
    assert star, f"tests/adapters/test_{adapter}.py must star-import the contract scenarios"
    assert "test_contract_an_approval_is_consumed_only_for_the_payload_it_was_asked_for" in SCENARIOS
    assert len(SCENARIOS) >= 7
