"""Adversary R against THREATS.md property 2 — *everyone involved in a request is excluded from
deciding it*: whoever triggered the run as the orchestrator recorded it, every person the
pipeline names, the submitting credential's principal and the pipeline's policy owners.

Issue 14, attack 3: on the code before issue 14 the requester was whatever the pipeline sent, and
everyone else it named was dropped. bob triggers a run whose templated requester names carol, and
approves it himself; or the run's owner approves their own pipeline's gate. Run here through the
one adapter session every orchestrator uses (``GateSession``) against real ``gatehouse serve``
over HTTP, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from gate_core import GateStatus, RunContext
from gate_core._client import HttpGateClient
from gate_core.session import GateSession, GateSpec, RequesterClaim, StepRun
from tests.conftest import Report
from tests.security.conftest import Home

OWNERS = '\npipelines:\n  "customer_*":\n    owners: [dave]\n'


def test_nobody_the_run_involves_decides_its_gate(
    home_for: Callable[..., Home], serve: Callable[[Home], str], report: Report
) -> None:
    home = home_for(kernel_is="frank")
    policy = home.settings.policy_path
    policy.write_text(policy.read_text(encoding="utf-8") + OWNERS, encoding="utf-8")
    bot = home.run(
        "token", "create", "--principal", "etl-bot", "--scope", "request", env={"USER": "frank"}
    ).last_line
    deciders = {who: home.legacy_token(who, "decide", created_by=who) for who in ("bob", "carol", "dave")}
    base = serve(home)
    step = StepRun(
        run=RunContext(
            orchestrator="airflow", pipeline="customer_export", run_id="manual__1", task_id="export"
        ),
        idempotency_key="customer_export/manual__1/export",
        requester_claims=(
            RequesterClaim("carol", "airflow requester= ({{ dag_run.conf.requester }})"),
            RequesterClaim("bob", "airflow dag_run.triggering_user_name", recorded_by_orchestrator=True),
        ),
    )
    spec = GateSpec.of("export", target="s3://exports/customers.csv", datasets=["warehouse/customers#pii"])
    opened = GateSession(HttpGateClient(base, bot)).open(spec, step)
    assert opened.gate.request.requester == "bob"  # the orchestrator's record wins over the template
    sources = {p.principal: p.source for p in opened.gate.involved}
    assert sources["carol"].startswith("airflow requester=") and sources["dave"].startswith("owner of")
    with httpx.Client(base_url=base, timeout=30) as client:
        for who, reason in (
            ("bob", "you requested this gate"),
            ("carol", "you are involved in this request (airflow requester="),
            ("dave", "you are involved in this request (owner of pipelines 'customer_*' (policy))"),
        ):
            refused = client.post(
                f"/v1/gates/{opened.gate.id}/decisions",
                json={"decision": "approve"},
                headers={"Authorization": f"Bearer {deciders[who]}"},
            )
            assert refused.status_code == 403, refused.text
            assert reason in refused.text
    shown = home.run("show", opened.gate.id)
    assert "involved    carol (airflow requester=" in shown.out and "involved    dave (owner of" in shown.out
    assert HttpGateClient(base, bot).get(opened.gate.id).status is GateStatus.PENDING
    home.figure(report, "an involved person deciding (triggering user, named, owner)", 3)
