"""A bounded soak on loopback: two `gatehouse serve` processes on PostgreSQL, concurrent clients
opening, deciding, awaiting and consuming a few thousand gates. Reports throughput, p99 latency
and errors (target 0), then checks the audit trail verifies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from gate_core import GateFilter, GateStatus, open_gatekeeper
from tests.reliability.conftest import Report, example_home
from tests.service.conftest import launch_server, make_tokens, stop_server
from tests.service.test_api import PII_EXPORT

GATES = 2_000
CONCURRENCY = 32
TIME_LIMIT_S = 120.0


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def lifecycle(bot: httpx.AsyncClient, bob: httpx.AsyncClient, n: int, latencies: list[float]) -> None:
    """One pipeline step's whole story: open, a person approves, the step waits, then consumes."""
    gate = (
        (await bot.post("/v1/gates", json={**PII_EXPORT, "idempotency_key": f"soak-{n}"}))
        .raise_for_status()
        .json()
    )
    started = time.perf_counter()
    decided = await bob.post(f"/v1/gates/{gate['id']}/decisions", json={"decision": "approve"})
    latencies.append(time.perf_counter() - started)
    decided.raise_for_status()
    waited = (await bot.get(f"/v1/gates/{gate['id']}/wait", params={"timeout": 10})).raise_for_status().json()
    if waited["status"] != GateStatus.APPROVED.value:
        raise AssertionError(f"gate {gate['id']} is {waited['status']} after its approval")
    body = {"binding_hash": gate["binding_hash"], "try_number": 1}
    (await bot.post(f"/v1/gates/{gate['id']}/consume", json=body)).raise_for_status()


@pytest.mark.slow
def test_soak_two_replicas_on_postgresql(postgres_url: str, tmp_path: Path, report: Report) -> None:
    settings = example_home(tmp_path, postgres_url)
    gatekeeper = open_gatekeeper(settings)
    tokens = make_tokens(gatekeeper)
    gatekeeper.store.close()
    replicas = [launch_server(settings, tmp_path / f"serve-{i}.log") for i in range(2)]
    latencies: list[float] = []
    errors: list[str] = []

    async def run() -> int:
        limits = httpx.Limits(max_connections=CONCURRENCY)
        clients = [
            (
                httpx.AsyncClient(
                    base_url=r.base_url,
                    headers={"Authorization": f"Bearer {tokens['bot']}"},
                    limits=limits,
                    timeout=60,
                ),
                httpx.AsyncClient(
                    base_url=r.base_url,
                    headers={"Authorization": f"Bearer {tokens['bob']}"},
                    limits=limits,
                    timeout=60,
                ),
            )
            for r in replicas
        ]
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(GATES):
            queue.put_nowait(n)
        deadline = time.monotonic() + TIME_LIMIT_S
        done = 0

        async def worker(index: int) -> None:
            nonlocal done
            bot, bob = clients[index % len(clients)]
            while not queue.empty() and time.monotonic() < deadline:
                n = queue.get_nowait()
                try:
                    await lifecycle(bot, bob, n, latencies)
                    done += 1
                except (httpx.HTTPError, AssertionError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])

        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
        for bot, bob in clients:
            await bot.aclose()
            await bob.aclose()
        return done

    try:
        started = time.monotonic()
        completed = asyncio.run(run())
        elapsed = time.monotonic() - started
    finally:
        for replica in replicas:
            stop_server(replica)
    gatekeeper = open_gatekeeper(settings)
    try:
        consumed = len(gatekeeper.store.list_gates(GateFilter(status=GateStatus.CONSUMED, limit=GATES + 1)))
        report_ok = gatekeeper.audit.verify()
    finally:
        gatekeeper.store.close()
    assert errors == [], errors[:5]
    assert consumed == completed
    assert report_ok.ok
    report(
        "Soak (2 replicas, PostgreSQL, 32 clients): gate lifecycles completed",
        completed,
        "gates",
        f"{GATES} within {TIME_LIMIT_S:.0f} s",
    )
    report(
        "Soak: throughput (open + decide + wait + consume per gate)", round(completed / elapsed, 1), "gates/s"
    )
    report(
        "Soak: decision latency p50 / p99",
        f"{percentile(latencies, 50) * 1000:.1f} / {percentile(latencies, 99) * 1000:.1f}",
        "ms",
    )
    report("Soak: errors", len(errors), "errors", "0")
    report("Soak: audit entries verified afterwards", report_ok.entries, "entries")
