"""The lineage REST API and console page on the real gate service, on SQLite and PostgreSQL:
ingest rules (who may record as whom), clean refusals, HttpSink end to end, the console page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

import lineage
from gate_core import ServiceUnavailable, SqlStore
from lineage import HttpSink, LineageStore
from tests.lineage.seed import seed
from tests.service.conftest import Service, free_port
from tests.service.test_console import browser, sign_in

EVENT = {
    "dataset": "warehouse/customers",
    "operation": "read",
    "columns": [{"name": "email", "type": "str"}, {"name": "id", "type": "int64"}],
    "row_count": 10,
    "run": {"orchestrator": "airflow", "pipeline": "daily", "run_id": "r-api", "task_id": "load"},
}


def _post(service: Service, who: str, *events: dict[str, Any]) -> httpx.Response:
    with service.client(who) as client:
        return client.post("/v1/lineage/events", json={"events": list(events)})


def _stored(service: Service) -> LineageStore:
    assert isinstance(service.gatekeeper.store, SqlStore)
    return LineageStore.for_gate_store(service.gatekeeper.store, migrate=False)


def test_ingest_records_as_the_caller_and_applies_the_servers_catalog(service: Service) -> None:
    response = _post(service, "alice", EVENT, {**EVENT, "dataset": "s3://out/c.csv", "operation": "export"})
    assert response.status_code == 200, response.text
    assert response.json() == {"recorded": 2}
    rows = _stored(service).run("r-api").rows
    assert [(r.actor, r.operation.value) for r in rows] == [("alice", "read"), ("alice", "export")]
    assert rows[0].tags == ["email", "pii"]  # classified by the server, whatever the client sent
    events = list(_stored(service).iter_events())
    assert {e.submitted_by for e in events} == {None}


def test_a_retried_batch_is_recorded_once(service: Service) -> None:
    event = {**EVENT, "id": "e01RETRIEDBATCH0000000000000"}
    assert _post(service, "alice", event).json() == {"recorded": 1}
    assert _post(service, "alice", event).json() == {"recorded": 0}
    assert len(_stored(service).run("r-api").rows) == 1


def test_a_service_token_may_record_for_a_person_and_is_named_as_submitter(service: Service) -> None:
    response = _post(service, "bot", {**EVENT, "actor": "alice"}, EVENT)
    assert response.status_code == 200, response.text
    events = sorted(_stored(service).iter_events(), key=lambda e: e.actor)
    assert [(e.actor, e.submitted_by) for e in events] == [("alice", "etl-bot"), ("etl-bot", None)]


@pytest.mark.parametrize(
    ("who", "event", "status", "detail"),
    [
        ("alice", {**EVENT, "actor": "bob"}, 403, "alice may record lineage only as themselves"),
        ("bot", {**EVENT, "actor": "mallory"}, 422, "'mallory' is not a principal"),
        ("alice", {**EVENT, "dataset": "customers"}, 422, "dataset"),
        ("alice", {**EVENT, "operation": "copy"}, 422, "operation"),
        ("alice", {**EVENT, "dataset": "a/b\u0000"}, 422, "NUL"),
        ("alice", {**EVENT, "row_count": -5}, 422, "row_count"),
        ("alice", {**EVENT, "at": "2026-01-01T00:00:00"}, 422, "naive time"),
        ("alice", {**EVENT, "submitted_by": "someone"}, 200, ""),  # ignored: the server says who submitted
    ],
)
def test_ingest_refusals_are_clean_problems(
    service: Service, who: str, event: dict[str, Any], status: int, detail: str
) -> None:
    response = _post(service, who, event)
    assert response.status_code == status, response.text
    if status != 200:
        assert response.headers["content-type"] == "application/problem+json"
        assert detail in response.text
    else:
        assert {e.submitted_by for e in _stored(service).iter_events()} == {None}


def test_reads_need_a_credential_and_writes_need_the_request_scope(service: Service) -> None:
    anonymous = httpx.get(f"{service.base_url}/v1/lineage/exports", params={"tag": "pii"})
    assert anonymous.status_code == 401
    with service.client("bot") as bot:
        assert bot.get("/v1/lineage/exports", params={"tag": "pii"}).status_code == 200
    empty = httpx.post(f"{service.base_url}/v1/lineage/events", json={"events": [EVENT]})
    assert empty.status_code == 401


@pytest.mark.parametrize(
    ("path", "params", "status", "detail"),
    [
        ("accessed", {"dataset": "nope"}, 422, "is not NAMESPACE/NAME"),
        ("accessed", {"dataset": "a/b", "since": "yesterday"}, 422, "'yesterday' is not a duration"),
        ("exports", {"tag": "pii", "since": "99999999999d"}, 422, "too long"),
        ("runs/a%00b", {}, 422, "NUL"),
        ("graph", {"dataset": "a/b", "depth": 0}, 422, "depth"),
        ("graph", {"dataset": "a/b", "direction": "sideways"}, 422, "direction"),
        ("gates/not%20an%20id", {}, 422, "gate_id"),
    ],
)
def test_query_refusals_are_clean_problems(
    service: Service, path: str, params: dict[str, object], status: int, detail: str
) -> None:
    with service.client("bob") as bob:
        response = bob.get(f"/v1/lineage/{path}", params=params)
    assert response.status_code == status, response.text
    assert detail in response.text


def test_http_sink_records_through_the_service(service: Service) -> None:
    sink = HttpSink(service.base_url, service.tokens["bot"])
    lineage.configure(sinks=[sink], actor="alice")
    event = lineage.record_access("warehouse/orders", "read", columns=["amount"])
    stored = _stored(service).get(event.id)
    assert (stored.actor, stored.submitted_by) == ("alice", "etl-bot")
    sink.close()


def test_http_sink_fails_closed_when_the_service_is_down() -> None:
    sink = HttpSink(f"http://127.0.0.1:{free_port()}", "gh_x_y", retries=1, timeout=1)
    lineage.configure(sinks=[sink], actor="alice")
    with pytest.raises(ServiceUnavailable, match=r"cannot record lineage at http://127\.0\.0\.1"):
        lineage.record_access("a/b", "read")


def test_http_sink_reports_refusals(service: Service) -> None:
    sink = HttpSink(service.base_url, "gh_not_a_token")
    lineage.configure(sinks=[sink], actor="alice")
    with pytest.raises(Exception, match=r"refused the events \(401\)"):
        lineage.record_access("a/b", "read")


# ---------------------------------------------------------------- console


@pytest.fixture
def local(service_factory: Callable[..., Service]) -> Service:
    return service_factory(local_signin=True)


def test_console_page_answers_the_same_questions(local: Service) -> None:
    assert isinstance(local.gatekeeper.store, SqlStore)
    seeded = seed(local.gatekeeper, LineageStore.for_gate_store(local.gatekeeper.store))
    with browser(local) as client:
        assert client.get("/console/lineage").status_code == 303  # sign-in first
        sign_in(client, "bob")
        front = client.get("/console/")
        assert 'href="/console/lineage"' in front.text  # the nav link, on the core's own pages
        page = client.get("/console/lineage")  # default: pii exports in the last 30 days
        assert page.status_code == 200
        assert 'aria-current="page">Lineage' in page.text
        assert "s3://exports/customers.csv" in page.text and "customers-old" not in page.text
        assert f'href="/console/gates/{seeded.g1}"' in page.text and "APPROVED" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]

        accessed = client.get("/console/lineage", params={"q": "accessed", "subject": "warehouse/customers"})
        assert accessed.text.count("<td><code>read</code></td>") == 3
        graph = client.get(
            "/console/lineage",
            params={"q": "graph", "subject": "warehouse/customers", "direction": "downstream"},
        )
        assert "5 related dataset(s) within 3 hop(s)" in graph.text
        run = client.get("/console/lineage", params={"q": "run", "subject": "manual__1"})
        assert run.text.count("<tr") == 5  # header + four accesses

        bad = client.get("/console/lineage", params={"q": "accessed", "subject": "<script>x"})
        assert bad.status_code == 400
        assert "&lt;script&gt;x&#39; is not NAMESPACE/NAME" in bad.text
        assert "<script>x" not in bad.text
