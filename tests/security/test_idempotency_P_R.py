"""Adversaries R and P against THREATS.md property 1 (*nobody acts as someone else*): an
idempotency key is scoped to the principal that submits it, so one principal's key never returns
another principal's gate, and nobody can take a pipeline's key first.

Issue 14, attack 4: on the code before issue 14 keys were global. A person who opened a gate with
a pipeline's predictable key (same payload) owned the gate the pipeline later "found" — so the
pipeline waited on a gate its own requester had submitted; with a different payload the pipeline
got 409 for ever. Run here over real HTTP (``gatehouse serve``), SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.conftest import Report
from tests.security.conftest import PII_EXPORT, Home

RUN = {"orchestrator": "airflow", "pipeline": "customer_export", "run_id": "scheduled__2026-12-04"}
KEY = "customer_export/scheduled__2026-12-04/export"


def test_a_persons_key_never_returns_or_blocks_a_pipelines_gate(
    home_for: Callable[..., Home], serve: Callable[[Home], str], report: Report
) -> None:
    home = home_for(kernel_is="frank")
    # The pipeline's token as frank (gatehouse-admins) issues it; stored by hand so that the same
    # attack also runs against the code before issue 14, whose directory had no frank.
    bot = home.legacy_token("etl-bot", "request", created_by="frank")
    # bob's own request token, as he would create it at his own shell (stored by hand here because
    # this home's kernel account is frank)
    mallory = home.legacy_token("bob", "request", created_by="bob")
    base = serve(home)
    pipeline_request = {**PII_EXPORT, "requester": "alice", "run": RUN, "idempotency_key": KEY}
    with httpx.Client(base_url=base, timeout=30) as client:
        squatted = client.post(
            "/v1/gates",
            json={**PII_EXPORT, "run": RUN, "idempotency_key": KEY},
            headers={"Authorization": f"Bearer {mallory}"},
        )
        assert squatted.status_code == 200, squatted.text
        other_payload = client.post(
            "/v1/gates",
            json={**PII_EXPORT, "target": "s3://elsewhere", "run": RUN, "idempotency_key": KEY + "/x"},
            headers={"Authorization": f"Bearer {mallory}"},
        )
        assert other_payload.status_code == 200, other_payload.text
        headers = {"Authorization": f"Bearer {bot}"}
        first = client.post("/v1/gates", json=pipeline_request, headers=headers)
        assert first.status_code == 200, first.text
        gate = first.json()
        assert gate["id"] != squatted.json()["id"]
        assert (gate["submitted_by"], gate["request"]["requester"]) == ("etl-bot", "alice")
        retried = client.post("/v1/gates", json=pipeline_request, headers=headers)
        assert retried.status_code == 200 and retried.json()["id"] == gate["id"]  # its own key finds its gate
        blocked = client.post(
            "/v1/gates", json={**pipeline_request, "idempotency_key": KEY + "/x"}, headers=headers
        )
        assert blocked.status_code == 200, blocked.text  # bob's earlier use of the key blocks nothing
        assert blocked.json()["id"] != other_payload.json()["id"]
    home.figure(report, "taking a pipeline's idempotency key", 2)
