"""The example alert rules (deploy/prometheus/gatehouse-alerts.yml) are valid Prometheus rules
(``promtool check rules``), each fires on what it should and not otherwise (``promtool test
rules`` with gatehouse-alerts.test.yml), and every metric they read is one the real service
exposes — so a renamed metric cannot leave an alert silently watching nothing.

promtool comes with Debian's ``prometheus`` package (``.ci/test.sh`` installs it as it installs
Chromium). Without it this test fails: it is never skipped."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import Service

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "gatehouse-alerts.yml"
RULE_TESTS = RULES_DIR / "gatehouse-alerts.test.yml"


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found is not None, (
        "promtool is missing; it checks the alert rules. Install Debian's prometheus package: "
        "apt-get install -y prometheus (.ci/test.sh does this as root)"
    )
    return found


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules() -> None:
    checked = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in checked.stdout


def test_every_alert_fires_in_promtools_unit_tests() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    fired = {
        case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")
    }
    assert fired == {rule["alert"] for rule in _alerts()}, "every alert needs a case where it fires"
    tested = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULES_DIR,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_rules_read_only_metrics_the_service_exposes(service: Service) -> None:
    with service.client("bot") as bot:  # a gate, so the figures with gates in them exist
        bot.post(
            "/v1/gates",
            json={"action": "export", "target": "s3://x/y.csv", "requester": "alice", "reason": "r"},
        ).raise_for_status()
    exposed: set[str] = set()
    for family in text_string_to_metric_families(httpx.get(f"{service.base_url}/metrics").text):
        # a labelled counter nothing has counted yet is declared (HELP, TYPE) without samples
        exposed |= {family.name, *(s.name for s in family.samples)}
        if family.type == "counter":
            exposed.add(f"{family.name}_total")
    used = {name for rule in _alerts() for name in re.findall(r"\bgatehouse_[a-z_]+", rule["expr"])}
    missing = used - exposed
    assert missing == set(), f"alert rules read metrics the service never exposes: {missing}"
    assert len(used) >= 9
