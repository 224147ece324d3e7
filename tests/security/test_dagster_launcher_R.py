"""Adversary R against THREATS.md property 2, through a real Dagster run (issue 14, attack 3 on the
Dagster adapter): the user Dagster recorded as launching the run (the ``dagster/user`` tag its UI
and Dagster+ write) stays the requester and is excluded; a name from the run config only adds an
involved person.

bob launches a job whose op passes ``requester=`` from its run config, set to carol. On the code
before issue 14 carol was the requester and bob approved his own run. ``execute_in_process`` in a
background thread against real ``gatehouse serve`` over HTTP, on SQLite and PostgreSQL.
"""

# No ``from __future__ import annotations``: Dagster reads the op's parameter annotations at runtime.
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from dagster_resources import ApprovalGateResource
from tests.conftest import Report
from tests.security.conftest import Home

pytestmark = pytest.mark.slow


class NamedStepConfig(dg.Config):
    requester: str  # what a run's launcher types into the launchpad


@dg.op
def export_customers(
    context: dg.OpExecutionContext, config: NamedStepConfig, approval_gate: ApprovalGateResource
) -> None:
    approval_gate.require_approval(
        context,
        action="export",
        target="s3://exports/customers.csv",
        datasets=["warehouse/customers#pii"],
        requester=config.requester,
    )


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(
        str(tmp_path / "dagster"), overrides={"telemetry": {"enabled": False}}
    ) as inst:
        yield inst


def test_bob_launches_a_run_naming_carol_and_cannot_approve_it(
    home_for: Callable[..., Home], serve: Callable[[Home], str], instance: dg.DagsterInstance, report: Report
) -> None:
    home = home_for(kernel_is="frank")
    pipeline = home.run("token", "create", "--principal", "etl-bot", "--scope", "request").last_line
    deciders = {who: home.legacy_token(who, "decide", created_by=who) for who in ("bob", "carol")}
    base = serve(home)

    @dg.job(resource_defs={"approval_gate": ApprovalGateResource(url=base, token=pipeline, poll_seconds=5)})
    def customer_export() -> None:
        export_customers()

    outcome: dict[str, Any] = {}

    def launch() -> None:
        result = customer_export.execute_in_process(
            run_config={"ops": {"export_customers": {"config": {"requester": "carol"}}}},
            instance=instance,
            tags={"dagster/user": "bob"},
            raise_on_error=False,
        )
        outcome["success"] = result.success

    run = threading.Thread(target=launch, daemon=True)
    run.start()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {pipeline}"}, timeout=30) as client:
        deadline = time.monotonic() + 120
        gates: list[dict[str, Any]] = []
        while not gates:
            assert time.monotonic() < deadline and run.is_alive(), "the Dagster run never opened its gate"
            gates = client.get("/v1/gates", params={"status": "PENDING"}).json()
            time.sleep(0.1)
        [gate] = gates
        assert gate["request"]["requester"] == "bob"
        involved = {p["principal"]: p for p in gate["involved"]}
        assert involved["bob"]["recorded_by_orchestrator"] is True
        assert involved["carol"]["recorded_by_orchestrator"] is False
        assert involved["carol"]["source"] == "argument requester="
        for who, message in {
            "bob": "bob: you requested this gate",
            "carol": "carol: you are involved in this request (argument requester=)",
        }.items():
            refused = client.post(
                f"/v1/gates/{gate['id']}/decisions",
                json={"decision": "approve"},
                headers={"Authorization": f"Bearer {deciders[who]}"},
            )
            assert refused.status_code == 403 and message in refused.text, refused.text
        assert client.post(f"/v1/gates/{gate['id']}/cancel", json={"reason": "test over"}).status_code == 200
    run.join(timeout=120)
    assert not run.is_alive() and outcome == {"success": False}  # the step never ran past its gate
    home.figure(report, "a run-config requester through a real Dagster run (bob launches, names carol)", 2)
