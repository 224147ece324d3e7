"""``/metrics`` scraped from the real service over its socket while a scenario runs: a gate
opened and announced to a webhook that keeps failing, a refused and an accepted decision, the
approval used, a second gate expired by the sweeper, a long-poll parked. Each figure must move
exactly as the scenario says — parsed with prometheus_client's own parser."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gate_core import Scope, Settings
from gate_core.service import ServiceConfig
from gate_core.testing import actor
from tests.lineage import ol_shapes as ol
from tests.service.conftest import Service
from tests.service.http_receiver import HttpReceiver

POLICY = """\
version: 1
rules:
  - name: metrics-export
    match: {action: [export]}
    outcome: require
    approvers: {groups: [data-governance], count: 1}
    expiry: 4h
    notify: ["hook:siem"]
  - name: metrics-quick
    match: {action: [peek]}
    outcome: require
    approvers: {groups: [data-governance], count: 1}
    expiry: 3s
default:
  outcome: require
  approvers: {groups: [data-governance], count: 1}
  expiry: 24h
"""

EXPORT: dict[str, Any] = {
    "action": "export",
    "target": "s3://exports/customers.csv",
    "requester": "alice",
    "datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["pii"]}],
    "reason": "quarterly report",
}
PEEK: dict[str, Any] = {"action": "peek", "target": "s3://exports/peek.csv", "requester": "alice"}
DAG, DAG_RUN = "exports_dag", "manual__2026-03-02T10:00:00+00:00"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(service: Service, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(f"{service.base_url}/metrics", headers=headers or {}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the figure never moved"
        time.sleep(0.1)


@pytest.fixture
def failing_hook() -> Iterator[HttpReceiver]:
    with HttpReceiver(status=500) as receiver:  # every attempt fails
        yield receiver


@pytest.fixture
def service(
    service_settings: Settings, service_factory: Callable[..., Service], failing_hook: HttpReceiver
) -> Service:
    service_settings.policy_path.write_text(POLICY, encoding="utf-8")
    config = ServiceConfig.model_validate(
        {
            "public_url": "https://gatehouse.example.test",
            "sweep_interval_s": 0.2,
            "notifiers": {
                "hook": {
                    "type": "webhook",
                    "endpoints": {
                        "siem": {"url": f"{failing_hook.url}/siem", "secret": "whsec-metrics-test"}
                    },
                }
            },
            "metrics": {"min_interval_s": 0, "expiring_within_s": 600},
        }
    )
    started = service_factory(config)
    started.app.state.gatehouse.hub.backoff_s = 0.05  # three attempts in a tenth of a second
    return started


def test_metrics_follow_a_gates_life(service: Service, failing_hook: HttpReceiver) -> None:
    before = scrape(service)
    assert value(before, "gatehouse_store_up") == 1
    assert value(before, "gatehouse_gates", status="PENDING", rule="metrics-export") == 0
    audit_before = value(before, "gatehouse_audit_entries")
    assert value(before, "gatehouse_loop_running", loop="sweeper") == 1

    # open: the gate waits, and the failing webhook is tried three times then given up
    with service.client("bot") as bot:
        run = {"orchestrator": "airflow", "pipeline": DAG, "run_id": DAG_RUN, "task_id": "approve"}
        gate = bot.post("/v1/gates", json={**EXPORT, "run": run}).json()
    opened = scrape(service)
    assert value(opened, "gatehouse_gates", status="PENDING", rule="metrics-export") == 1
    assert value(opened, "gatehouse_gates_opened_total", rule="metrics-export", status="PENDING") == 1
    assert value(opened, "gatehouse_gates_expiring_undecided", rule="metrics-export") == 0  # 4 h > 600 s
    assert value(opened, "gatehouse_audit_entries") > audit_before

    def given_up() -> bool:
        now = scrape(service)
        return (
            value(
                now, "gatehouse_notifier_deliveries_total", type="webhook", notifier="hook", outcome="failed"
            )
            == 1
        )

    eventually(given_up)
    notified = scrape(service)
    assert (
        value(
            notified,
            "gatehouse_notifier_deliveries_total",
            type="webhook",
            notifier="hook",
            outcome="retried",
        )
        == 2
    )
    assert (
        value(
            notified,
            "gatehouse_notifier_deliveries_total",
            type="webhook",
            notifier="hook",
            outcome="delivered",
        )
        == 0
    )
    assert len(failing_hook.requests("/siem")) == 3
    assert value(notified, "gatehouse_loop_bad_records_total", loop="notifier") == 1

    # a long-poll parks, and is counted while it waits
    parked = threading.Thread(
        target=lambda: service.client("bot").get(f"/v1/gates/{gate['id']}/wait", params={"timeout": 20}),
        daemon=True,
    )
    parked.start()
    eventually(lambda: value(scrape(service), "gatehouse_longpoll_waiters") == 1)

    # decide: alice may not (she asked), bob may
    with service.client("alice") as alice:
        assert (
            alice.post(f"/v1/gates/{gate['id']}/decisions", json={"decision": "approve"}).status_code == 403
        )
    with service.client("bob") as bob:
        assert bob.post(f"/v1/gates/{gate['id']}/decisions", json={"decision": "approve"}).status_code == 200
    parked.join(timeout=10)
    decided = scrape(service)
    assert (
        value(
            decided,
            "gatehouse_refusals_total",
            action="decide",
            reason="self_approval",
            channel="api-token",
        )
        == 1
    )
    assert value(decided, "gatehouse_decisions_total", channel="api-token", verdict="approve") == 1
    assert value(decided, "gatehouse_decisions_total", channel="api-token", verdict="reject") == 0
    assert value(decided, "gatehouse_time_to_decision_seconds_count", outcome="approved") == 1
    assert value(decided, "gatehouse_gates", status="PENDING", rule="metrics-export") == 0
    assert value(decided, "gatehouse_gates", status="APPROVED", rule="metrics-export") == 1
    assert value(decided, "gatehouse_longpoll_waiters") == 0

    # the step runs: decision → resume observed once, a retry of the step does not count again
    with service.client("bot") as bot:
        for try_number in (1, 2):
            consumed = bot.post(
                f"/v1/gates/{gate['id']}/consume",
                json={"binding_hash": gate["binding_hash"], "try_number": try_number},
            )
            assert consumed.status_code == 200, consumed.text
        wrong = bot.post(f"/v1/gates/{gate['id']}/consume", json={"binding_hash": "0" * 64})
        assert wrong.status_code == 409
    used = scrape(service)
    assert value(used, "gatehouse_decision_to_resume_seconds_count") == 1
    assert 0 < value(used, "gatehouse_decision_to_resume_seconds_sum") < 60
    assert value(used, "gatehouse_gates", status="CONSUMED", rule="metrics-export") == 1
    assert (
        value(
            used,
            "gatehouse_refusals_total",
            action="consume",
            reason="approval_not_usable",
            channel="api-token",
        )
        == 1
    )

    # the run also writes a table its approval does not name: Airflow's OpenLineage event says so,
    # the scope check finds it once (a retried event is the same finding), the counter moves once
    assert (
        value(used, "gatehouse_lineage_violations_total", kind="unapproved_target", rule="metrics-export")
        == 0
    )
    service.tokens["lineage"] = service.gatekeeper.tokens.create(
        "etl-bot", Scope.LINEAGE, created_by=actor("frank")
    )[1]
    elsewhere = ol.table("test.public.somewhere_else", ("id", "integer"), rows=42, role="output")
    event = ol.airflow_task(DAG, DAG_RUN, "export_customers", outputs=[elsewhere])
    with service.client("lineage") as etl:
        found = [etl.post("/api/v1/lineage", json=event).json()["violations"] for _ in range(2)]
    assert found == [1, 0]
    violated = scrape(service)
    assert (
        value(violated, "gatehouse_lineage_violations_total", kind="unapproved_target", rule="metrics-export")
        == 1
    )
    assert (
        value(
            violated, "gatehouse_lineage_violations_total", kind="unapproved_dataset", rule="metrics-export"
        )
        == 0
    )
    # its alert to the rule's (failing) webhook is retried and given up like every delivery
    eventually(
        lambda: (
            value(
                scrape(service),
                "gatehouse_notifier_deliveries_total",
                type="webhook",
                notifier="hook",
                outcome="failed",
            )
            == 2
        )
    )
    assert len(failing_hook.requests("/siem")) == 6

    # expire: a 3-second gate nobody decides is about to expire unseen, then the sweeper expires it
    with service.client("bot") as bot:
        bot.post("/v1/gates", json=PEEK).raise_for_status()
    assert value(scrape(service), "gatehouse_gates_expiring_undecided", rule="metrics-quick") == 1
    swept_before = value(
        scrape(service), "gatehouse_loop_last_success_timestamp_seconds", loop="sweeper", duty="expiry"
    )
    eventually(lambda: value(scrape(service), "gatehouse_gates", status="EXPIRED", rule="metrics-quick") == 1)
    expired = scrape(service)
    assert value(expired, "gatehouse_gates", status="PENDING", rule="metrics-quick") == 0
    assert value(expired, "gatehouse_gates_expiring_undecided", rule="metrics-quick") == 0
    assert (
        value(expired, "gatehouse_loop_last_success_timestamp_seconds", loop="sweeper", duty="expiry")
        > swept_before
    )
    assert (
        time.time()
        - value(expired, "gatehouse_loop_last_success_timestamp_seconds", loop="sweeper", duty="checkpoint")
        < 5
    )

    # the sweeper signs what moved: the newest checkpoint covers the whole log, and is recent
    def signed() -> bool:
        now = scrape(service)
        return value(now, "gatehouse_audit_unsigned_entries") == 0 and value(
            now, "gatehouse_audit_checkpoint_entries"
        ) == value(now, "gatehouse_audit_entries")

    eventually(signed)
    assert time.time() - value(scrape(service), "gatehouse_audit_checkpoint_timestamp_seconds") < 30


def test_metrics_read_the_database_so_every_replica_agrees(
    service: Service, service_factory: Callable[..., Service]
) -> None:
    """A second replica on the same database reports the same gates, however many it served."""
    other = service_factory(ServiceConfig.model_validate({"metrics": {"min_interval_s": 0}}))
    with service.client("bot") as bot:
        for reason in ("one", "two"):
            bot.post("/v1/gates", json={**EXPORT, "reason": reason}).raise_for_status()
    here, there = scrape(service), scrape(other)
    assert value(here, "gatehouse_gates", status="PENDING", rule="metrics-export") == 2
    assert value(there, "gatehouse_gates", status="PENDING", rule="metrics-export") == 2
    assert value(here, "gatehouse_audit_entries") == value(there, "gatehouse_audit_entries")
    # events are per process: only the replica that opened them counted them
    assert value(here, "gatehouse_gates_opened_total", rule="metrics-export", status="PENDING") == 2
    assert value(there, "gatehouse_gates_opened_total", rule="metrics-export", status="PENDING") == 0


def test_connection_pool_figures(service: Service) -> None:
    samples = scrape(service)
    expected_size = 5 if service.settings.database_url.startswith("sqlite") else 10  # SQLAlchemy's / ours
    assert value(samples, "gatehouse_db_pool_size") == expected_size
    assert 0 <= value(samples, "gatehouse_db_pool_checked_out") <= expected_size
