"""Adversary C, property 6: whatever the API accepts, every reader reads back.

Hypothesis writes random requests over real HTTP — nested parameters up to past the depth limit,
any Unicode in every text field, numbers at the edges, many datasets and tags. Each is either
refused with a 4xx (never a 5xx), or stored; every stored one is then read by every reader:
the API's show and list, the strict JSON reader a remote client uses, the console's page, the
audit export, the Slack and Teams cards, and finally `gatehouse list` and `gatehouse show` as
subprocesses. (Lineage reads datasets by name only; tests/lineage covers its records.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate_core import Gate
from gate_core.service._slack_card import card_blocks
from gate_core.service.notify._teams import request_card
from tests.conftest import Report
from tests.service.conftest import Service
from tests.service.test_console import browser, sign_in

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=40,
)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    value: Any = draw(SCALARS)
    for _ in range(draw(st.integers(min_value=0, max_value=250))):
        value = {"k": value} if draw(st.booleans()) else [value]
    return value


TEXT = st.text(max_size=120)
DATASET = st.fixed_dictionaries(
    {
        "namespace": st.text(min_size=1, max_size=30),
        "name": st.text(min_size=1, max_size=30),
        "tags": st.lists(st.text(max_size=12), max_size=60),
    }
)
REQUEST = st.fixed_dictionaries(
    {
        "action": st.text(min_size=1, max_size=30),
        "environment": st.text(max_size=20),
        "target": TEXT,
        "reason": TEXT,
        "parameters": st.dictionaries(st.text(max_size=10), JSON | deep(), max_size=5),
        "datasets": st.lists(DATASET, max_size=5),
        "run": st.fixed_dictionaries({"pipeline": st.text(max_size=30), "run_id": st.text(max_size=30)}),
    }
)


def test_whatever_the_api_accepts_every_reader_reads_back(
    service_factory: Callable[..., Service], report: Report
) -> None:
    service = service_factory(local_signin=True)
    stored: list[str] = []
    refused = 0
    bot, admin, console = service.client("bot"), service.client("admin"), browser(service)
    sign_in(console, "bob")

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=REQUEST)
    def write_then_read(body: dict[str, Any]) -> None:
        nonlocal refused
        response = bot.post(
            "/v1/gates", content=json.dumps(body), headers={"content-type": "application/json"}
        )
        assert response.status_code < 500, response.text[:500]
        if response.status_code != 200:
            refused += 1
            return
        gate_id = response.json()["id"]
        stored.append(gate_id)
        shown = bot.get(f"/v1/gates/{gate_id}")
        assert shown.status_code == 200, shown.text[:500]
        gate = Gate.model_validate_json(shown.text)  # the strict parser, as pydantic clients read it
        assert gate.request.parameters == response.json()["request"]["parameters"]
        assert console.get(f"/console/gates/{gate_id}").status_code == 200
        assert card_blocks(gate, console_url=service.base_url, requester=None)
        assert request_card(gate, service.base_url)

    try:
        write_then_read()
        listed = bot.get("/v1/gates", params={"limit": 1000})
        assert listed.status_code == 200, listed.text[:500]
        assert {g["id"] for g in listed.json()} == set(stored)
        [Gate.model_validate_json(json.dumps(g)) for g in listed.json()]
        assert console.get("/console/").status_code == 200
        export = admin.get("/v1/audit/export")
        assert export.status_code == 200
        # JSON Lines ends records with "\n" only; str.splitlines would also split inside strings
        # that hold U+2028 or U+0085 (canonical JSON keeps them raw)
        assert all(json.loads(line) for line in export.text.split("\n") if line)
    finally:
        bot.close(), admin.close(), console.close()
    environ = {
        **os.environ,
        "GATEHOUSE_HOME": str(service.settings.home),
        "GATEHOUSE_DATABASE_URL": service.settings.database_url,
        "USER": "alice",
    }
    cli = [sys.executable, "-m", "gate_core.cli"]
    listed_cli = subprocess.run([*cli, "list"], capture_output=True, text=True, env=environ, timeout=120)
    assert listed_cli.returncode == 0 and "Traceback" not in listed_cli.stderr, listed_cli.stderr
    for gate_id in stored[:5]:
        shown_cli = subprocess.run(
            [*cli, "show", gate_id, "--json"], capture_output=True, text=True, env=environ, timeout=120
        )
        assert shown_cli.returncode == 0, shown_cli.stderr
        assert json.loads(shown_cli.stdout)["id"] == gate_id
    assert stored, "hypothesis stored nothing: the property was not exercised"
    report(
        "Poisoned records (C): accepted requests some reader could not read",
        0,
        "unreadable",
        f"0 of {len(stored)} stored, {refused} refused",
    )
