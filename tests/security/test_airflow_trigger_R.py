"""Adversary R against THREATS.md property 2, through a real Airflow DAG run (issue 14, attack 3):
*a name from a template adds an involved person; it never replaces the one the orchestrator
recorded*.

bob triggers a DAG whose GateOperator says ``requester="{{ dag_run.conf.requester }}"``, with the
run conf ``{"requester": "carol"}``. On the code before issue 14 the gate's requester was carol —
whatever the template rendered — bob was nowhere on the gate, and bob (data-governance) approved
his own run's pii export. Now Airflow's own record of who triggered the run
(``dag_run.triggering_user_name``) is the requester and is marked as recorded by the orchestrator;
carol is only an involved person the pipeline named; bob's approval is refused, and so is carol's.

Real Airflow 3 (``dag.test()`` in the long-lived runner of tests/adapters, the DagRun row created
with ``triggering_user_name="bob"`` as Airflow's REST API records a signed-in user's trigger —
``dag.test()`` alone always records "dag_test"), real ``gatehouse serve`` over HTTP on SQLite and
PostgreSQL, the pipeline's token issued by frank (gatehouse-admins) through the CLI.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adapters.test_airflow import AirflowHome, AirflowRunner, airflow_home  # noqa: F401 - fixture
from tests.conftest import Report
from tests.security.conftest import Home

pytestmark = pytest.mark.slow

TEMPLATED = "{{ dag_run.conf.requester }}"


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def wait_for_gate(client: httpx.Client, run_key: str, runner: AirflowRunner) -> dict[str, Any]:
    """The gate the DAG run opened (its idempotency key holds the dag id, which holds run_key)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for gate in client.get("/v1/gates", params={"limit": 1000}).json():
            if run_key in (gate["request"].get("idempotency_key") or ""):
                return dict(gate)
        assert runner.process.poll() is None, runner.log_tail()
        time.sleep(0.2)
    raise AssertionError(f"the DAG run never opened its gate:\n{runner.log_tail()}")


def test_bob_triggers_a_run_naming_carol_and_cannot_approve_it(
    home_for: Callable[..., Home],
    serve: Callable[[Home], str],
    airflow_home: AirflowHome,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    report: Report,
) -> None:
    home = home_for(kernel_is="frank")
    pipeline = home.run(
        "token", "create", "--principal", "etl-bot", "--scope", "request", "--pipeline", "gh_*"
    )
    assert pipeline.code == 0, pipeline.err
    deciders = {who: home.legacy_token(who, "decide", created_by=who) for who in ("bob", "carol")}
    base = serve(home)
    env = airflow_home.env | {"GATEHOUSE_URL": base, "GATEHOUSE_TOKEN": pipeline.last_line}
    runner = AirflowRunner(airflow_home, env, tmp_path, "attack3")
    try:
        run_key = f"attack3-{uuid.uuid4().hex[:8]}"
        run = runner.submit(
            {"kind": "operator", "run_key": run_key, "requester": "alice", "requester_argument": TEMPLATED},
            conf={"requester": "carol"},
            triggering_user="bob",
        )
        with httpx.Client(base_url=base, timeout=30) as client:
            client.headers["Authorization"] = f"Bearer {pipeline.last_line}"
            gate = wait_for_gate(client, run_key, runner)
            gate_id = gate["id"]
            assert gate["request"]["requester"] == "bob"  # Airflow's record, not the template's carol
            involved = {p["principal"]: p for p in gate["involved"] if p["principal"] in ("bob", "carol")}
            assert involved["bob"]["recorded_by_orchestrator"] is True
            assert involved["bob"]["source"] == "Airflow triggering user"
            assert involved["carol"] == {
                "principal": "carol",
                "source": "argument requester=",
                "recorded_by_orchestrator": False,
            }
            refusals = {
                "bob": "bob: you requested this gate; someone else must decide it",
                "carol": "carol: you are involved in this request (argument requester=)",
            }
            for who, message in refusals.items():
                refused = client.post(
                    f"/v1/gates/{gate_id}/decisions",
                    json={"decision": "approve", "comment": "lgtm"},
                    headers={"Authorization": f"Bearer {deciders[who]}"},
                )
                assert refused.status_code == 403, refused.text
                assert message in refused.text
            assert client.get(f"/v1/gates/{gate_id}").json()["status"] == "PENDING"
            shown = home.run("show", gate_id).out
            assert (
                "involved    bob (requester; Airflow triggering user (recorded by the orchestrator)" in shown
            )
            assert "involved    carol (argument requester=; may not decide)" in shown
            cancelled = client.post(f"/v1/gates/{gate_id}/cancel", json={"reason": "test over"})
            assert cancelled.status_code == 200, cancelled.text
        ended = run.report()
        assert ended.error == "", ended.error
        assert ended.state("gate") == "failed" and ended.of("downstream") == []  # the export never ran
    finally:
        runner.close()
    exported = home.run("audit", "export").out
    assert exported.count('"event":"decision.refused"') == 2
    home.figure(report, "a templated requester through a real Airflow run (bob triggers, names carol)", 2)
