"""Adversary N (anyone on the network) against ``/metrics`` and the JSON logs.

- With a metrics token configured, no other credential — none, a wrong one, an API token of an
  admin — reads ``/metrics``.
- Whatever a caller puts in a gate (names, datasets, comments, reasons), ``/metrics`` never
  shows it nor names a person: every label value is from a bounded set (policy rule names,
  enums, error codes, configured notifier names).
- A scrape flood costs the database one read per ``metrics.min_interval_s``, not one per scrape.
- ``gatehouse serve --log-format json``: every line on the real process's output is one JSON
  object carrying ts, level, logger, message, request_id, gate_id and actor; hostile request ids,
  paths with line breaks (LF, CR, U+2028, NEL) and huge values cannot forge a second line or an
  unbounded one, and the response echoes the request id the line carries.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gate_core import Settings, open_gatekeeper
from gate_core._errors import GatehouseError
from gate_core.identity import AuthMethod
from gate_core.service import ServiceConfig
from gate_core.service._logs import MAX_FIELD
from gate_core.service.notify import installed_types
from lineage._scope import KINDS
from tests.service.conftest import Service, launch_server, make_tokens, stop_server

METRICS_TOKEN = "metrics-token-7c1f0a9e4b2d"
SENTINEL = "ZZsentinel"
HOSTILE_EXPORT: dict[str, Any] = {
    "action": "export",
    "target": f"s3://{SENTINEL}-target/x.csv",
    "requester": "alice",
    "environment": "prod",
    "datasets": [{"namespace": f"{SENTINEL}ns", "name": SENTINEL + '"}_orders', "tags": ["pii"]}],
    "reason": f'{SENTINEL} reason\ngatehouse_gates{{status="PENDING",rule="forged"}} 999',
    "parameters": {"note": f"{SENTINEL}\r\nX-Injected: 1"},
}


def _metrics(base_url: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)


def test_with_a_token_only_the_token_reads_metrics(service_factory: Callable[..., Service]) -> None:
    service = service_factory(ServiceConfig.model_validate({"metrics": {"token": METRICS_TOKEN}}))
    tried = {
        "no credential": {},
        "wrong token": {"Authorization": "Bearer " + METRICS_TOKEN[:-1] + "X"},
        "token without scheme": {"Authorization": METRICS_TOKEN},
        "token with a suffix": {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        "basic auth": {"Authorization": "Basic " + METRICS_TOKEN},
        "an admin's API token": {"Authorization": f"Bearer {service.tokens['admin']}"},
    }
    for what, headers in tried.items():
        response = _metrics(service.base_url, **headers)
        assert response.status_code == 401, what
        assert response.headers["content-type"] == "application/problem+json", what
        assert METRICS_TOKEN not in response.text, what
        assert "gatehouse_" not in response.text, what
    allowed = _metrics(service.base_url, Authorization=f"Bearer {METRICS_TOKEN}")
    assert allowed.status_code == 200
    assert "gatehouse_gates" in allowed.text


def test_metrics_token_from_the_environment(tmp_path: Path) -> None:
    config = ServiceConfig.load(tmp_path, {"GATEHOUSE_METRICS_TOKEN": METRICS_TOKEN})
    assert config.metrics.token is not None
    assert config.metrics.token.get_secret_value() == METRICS_TOKEN
    with pytest.raises(GatehouseError, match=r"metrics\.token"):  # a guessable token is refused at start
        ServiceConfig.load(tmp_path, {"GATEHOUSE_METRICS_TOKEN": "short"})


def test_metrics_name_no_person_and_no_content(
    service_factory: Callable[..., Service], report: Callable[..., None]
) -> None:
    service = service_factory(ServiceConfig.model_validate({"metrics": {"min_interval_s": 0}}))
    with service.client("bot") as bot:
        opened = bot.post("/v1/gates", json=HOSTILE_EXPORT)
        assert opened.status_code == 200, opened.text
        gate = opened.json()
        assert bot.post("/v1/gates", json={**HOSTILE_EXPORT, "action": f"{SENTINEL}act"}).status_code == 200
    with service.client("alice") as alice:  # refused: she asked
        alice.post(f"/v1/gates/{gate['id']}/decisions", json={"decision": "approve", "comment": SENTINEL})
    with service.client("bob") as bob:
        bob.post(f"/v1/gates/{gate['id']}/decisions", json={"decision": "reject", "comment": SENTINEL + "\n"})
    text = _metrics(service.base_url).text
    people = [p.id for p in service.gatekeeper.directory] + [
        p.email for p in service.gatekeeper.directory if p.email
    ]
    for secret in [SENTINEL, gate["id"], *people]:
        assert not re.search(rf"(?<![A-Za-z-]){re.escape(secret)}(?![A-Za-z-])", text), secret
    rules = {r.name for r in service.gatekeeper.policy.rules} | {"default"}
    allowed: dict[str, set[str]] = {
        "rule": rules,
        "status": {"PENDING", "APPROVED", "REJECTED", "EXPIRED", "CANCELLED", "CONSUMED"},
        "channel": {m.value for m in AuthMethod},
        "verdict": {"approve", "reject"},
        "outcome": {"approved", "rejected", "delivered", "retried", "failed"},
        "action": {"decide", "cancel", "consume"},
        "loop": {"sweeper", "notifier", "listener"},
        "duty": {
            "expiry",
            "reminders",
            "alerts",
            "checkpoint",
            "witnesses",
            "directory",
            "delivery",
            "listen",
        },
        "type": set(installed_types()),
        "notifier": set(service.app.state.gatehouse.hub.notifiers),
        "kind": {*KINDS, "other"},  # lineage's scope check names them
    }
    seen = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for label, label_value in sample.labels.items():
                seen += 1
                if label == "le":
                    float(label_value)
                elif label == "reason":
                    assert re.fullmatch(r"[a-z_]{1,40}", label_value), label_value
                else:
                    assert label_value in allowed[label], (sample.name, label, label_value)
    assert seen > 50
    backend = "SQLite" if service.settings.database_url.startswith("sqlite") else "PostgreSQL"
    report(f"Metrics (N): label values outside the bounded sets ({backend})", f"0 of {seen}")


def test_a_scrape_flood_reads_the_database_once_per_interval(
    service_factory: Callable[..., Service],
) -> None:
    service = service_factory(ServiceConfig.model_validate({"metrics": {"min_interval_s": 30}}))
    store = service.gatekeeper.store
    reads = 0
    real_figures = store.figures

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return real_figures(*args, **kwargs)

    store.figures = counting  # type: ignore[method-assign]  # counts, then reads the real database
    with httpx.Client(base_url=service.base_url, timeout=10) as client:
        for _ in range(200):
            assert client.get("/metrics").status_code == 200
    assert reads <= 1


# ---------------------------------------------------------------- JSON logs of the real process


def _raw_request(base_url: str, target: bytes, headers: list[bytes]) -> tuple[int, dict[str, str]]:
    """One HTTP/1.1 request written byte by byte (httpx refuses to send malformed headers)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            b"GET "
            + target
            + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + b"".join(h + b"\r\n" for h in headers)
        )
        sock.sendall(head + b"\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, *header_lines = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    response_headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in response_headers.items()}


def test_json_logs_are_one_bounded_object_per_line_whatever_is_sent(
    service_settings: Settings, tmp_path: Path, report: Callable[..., None]
) -> None:
    gatekeeper = open_gatekeeper(service_settings)
    tokens = make_tokens(gatekeeper)
    gatekeeper.store.close()
    log = tmp_path / "serve.log"
    server = launch_server(service_settings, log, {"GATEHOUSE_LOG_FORMAT": "json"})
    sent: list[tuple[str, str | None]] = []  # (request id the response echoed, id we sent if well formed)
    try:
        base = server.base_url
        bot = {"Authorization": f"Bearer {tokens['bot']}"}
        opened = httpx.post(
            f"{base}/v1/gates", json=HOSTILE_EXPORT, headers={**bot, "X-Request-ID": "open-1"}
        )
        assert opened.status_code == 200, opened.text
        gate_id = opened.json()["id"]
        sent.append((opened.headers["x-request-id"], "open-1"))
        decided = httpx.post(
            f"{base}/v1/gates/{gate_id}/decisions",
            json={"decision": "approve", "comment": 'fine\n{"level": "CRITICAL"}'},
            headers={"Authorization": f"Bearer {tokens['bob']}", "X-Request-ID": "decide-1"},
        )
        assert decided.status_code == 200
        sent.append((decided.headers["x-request-id"], "decide-1"))
        hostile_ids = [
            b'x"}\n{"level":"CRITICAL","message":"forged"}',  # quotes and a newline (raw bytes on the wire)
            b"A" * 129,  # one past the bound
            b"id with spaces",
            b"caf\xe9-\x85-nel",  # latin-1 bytes; \x85 is NEL, a line break to some pipelines
            b"ok\x0bvtab",
        ]
        for hostile in hostile_ids:
            wire = hostile.replace(b"\n", b"")  # a raw LF would end the header; the rest goes as is
            status, headers = _raw_request(base, b"/healthz", [b"X-Request-ID: " + wire])
            if status == 400:  # refused by the HTTP parser itself: it never reached the app
                assert "x-request-id" not in headers
                continue
            assert status == 200
            assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"]), headers["x-request-id"]
            sent.append((headers["x-request-id"], None))
        hostile_paths = [
            b"/v1/gates/" + b"%0A%7B%22level%22%3A%22CRITICAL%22%7D",  # \n{"level":"CRITICAL"}
            b"/v1/gates/a%0Db%E2%80%A8c%C2%85d",  # CR, U+2028, NEL
            b"/" + b"%0A" * 2000 + b"x" * 6000,  # huge, and newline-stuffed
        ]
        for path in hostile_paths:
            status, headers = _raw_request(base, path, [b"X-Request-ID: path-probe"])
            assert status in (401, 404, 422), status
            sent.append((headers["x-request-id"], "path-probe"))
    finally:
        stop_server(server)

    lines = log.read_text(encoding="utf-8").splitlines()
    assert lines, "the service logged nothing"
    entries = []
    for line in lines:
        assert len(line) < 6 * MAX_FIELD, f"a line of {len(line)} characters"
        entry = json.loads(line)  # every line is JSON: nothing printed outside the formatter
        assert isinstance(entry, dict)
        assert {"ts", "level", "logger", "message", "request_id", "gate_id", "actor"} <= entry.keys(), entry
        assert entry.get("message") != "forged" and entry["level"] != "CRITICAL"
        entries.append(entry)
    access = [e for e in entries if e["logger"] == "gatehouse.access"]
    assert len(access) >= len(sent) + 1  # ours, plus the launcher's health checks
    by_id: dict[str, list[dict[str, Any]]] = {}
    for entry in access:
        by_id.setdefault(entry["request_id"], []).append(entry)
    for echoed, ours in sent:
        if ours is not None:
            assert echoed == ours
        assert echoed in by_id, f"no access line carries request id {echoed}"
    [open_line] = by_id["open-1"]
    assert (open_line["actor"], open_line["status"], open_line["method"]) == ("etl-bot", 200, "POST")
    [decide_line] = by_id["decide-1"]
    assert (decide_line["actor"], decide_line["gate_id"], decide_line["status"]) == ("bob", gate_id, 200)
    probes = by_id["path-probe"]
    assert len(probes) == len(hostile_paths)  # one line each: no line was split or forged
    paths = [p["path"] for p in probes]
    assert any('\n{"level":"CRITICAL"}' in p for p in paths)  # the line break is inside the one field
    assert any("\r" in p and "\u2028" in p and "\x85" in p for p in paths)
    assert max(len(p) for p in paths) <= MAX_FIELD + 40  # cut, and the cut said
    assert all(p["actor"] is None for p in probes)
    backend = "SQLite" if service_settings.database_url.startswith("sqlite") else "PostgreSQL"
    report(f"JSON logs (N): forged or unbounded lines ({backend})", f"0 of {len(lines)} lines")
