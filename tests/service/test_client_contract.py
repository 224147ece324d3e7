"""One contract, two clients: HttpGateClient (over the real service) and LocalGateClient
(in-process) behave the same, including which exceptions they raise."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import yaml

from gate_core import (
    AlreadyDecided,
    DatasetRef,
    GateClient,
    GateNotFound,
    GateRequest,
    GateStatus,
    HttpGateClient,
    IdempotencyConflict,
    LocalGateClient,
    SelfApprovalRefused,
    ServiceUnavailable,
    Settings,
    Verdict,
)
from gate_core.testing import actor
from tests.service.conftest import Service

ClientFor = Callable[[str], GateClient]
PRINCIPAL = {"bot": "etl-bot", "alice": "alice", "bob": "bob", "carol": "carol"}


@pytest.fixture(params=["http", "local"])
def client_for(request: pytest.FixtureRequest, service: Service) -> Iterator[ClientFor]:
    made: list[GateClient] = []

    def make(who: str) -> GateClient:
        client: GateClient
        if request.param == "http":
            client = HttpGateClient(service.base_url, service.tokens[who])
        else:
            client = LocalGateClient(service.gatekeeper, actor(PRINCIPAL[who]), poll_s=0.02)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def export_request(key: str | None = None, target: str = "s3://exports/q3.csv") -> GateRequest:
    return GateRequest(
        action="export",
        target=target,
        requester="alice",
        idempotency_key=key,
        datasets=(DatasetRef.parse("warehouse/customers#pii"),),
    )


def test_open_get_and_idempotency(client_for: ClientFor) -> None:
    bot = client_for("bot")
    gate = bot.open(export_request("k-1"))
    assert gate.status is GateStatus.PENDING
    assert bot.get(gate.id) == gate
    assert bot.open(export_request("k-1")).id == gate.id
    with pytest.raises(IdempotencyConflict):
        bot.open(export_request("k-1", target="elsewhere"))
    with pytest.raises(GateNotFound):
        bot.get("gNOPE")


def test_decisions_and_refusals(client_for: ClientFor) -> None:
    gate = client_for("bot").open(export_request())
    with pytest.raises(SelfApprovalRefused, match="you requested this gate"):
        client_for("alice").decide(gate.id, Verdict.APPROVE)
    approved = client_for("bob").decide(gate.id, Verdict.APPROVE, "ok")
    assert approved.status is GateStatus.APPROVED
    with pytest.raises(AlreadyDecided) as late:
        client_for("carol").decide(gate.id, Verdict.APPROVE)
    assert late.value.by == ("bob",)
    assert late.value.at is not None


@pytest.mark.parametrize("kind", ["http", "local"])
def test_an_overdue_gate_reads_expired_and_a_wait_returns_at_once(
    kind: str, service_factory: Callable[..., Service], service_settings: Settings
) -> None:
    """Reads never write, yet no client sees an overdue gate as usable for long: the service's
    sweeper (every 0.2 s here) or the local client's explicit expiry moves it, and a wait expires
    it itself."""
    policy = yaml.safe_load(service_settings.policy_path.read_text())
    policy["rules"][0]["expiry"] = "1s"  # pii-export: what export_request() opens
    policy["rules"][0].pop("reminder", None)
    service_settings.policy_path.write_text(yaml.safe_dump(policy))
    service = service_factory()
    bot: GateClient = (
        HttpGateClient(service.base_url, service.tokens["bot"])
        if kind == "http"
        else LocalGateClient(service.gatekeeper, actor("etl-bot"), poll_s=0.02)
    )
    try:
        waited = bot.open(export_request())
        read = bot.open(export_request(target="s3://exports/other.csv"))
        time.sleep(1.1)
        started = time.monotonic()
        assert bot.wait(waited.id, timeout=20).status is GateStatus.EXPIRED
        assert time.monotonic() - started < 2
        deadline = time.monotonic() + 3
        while bot.get(read.id).status is GateStatus.PENDING and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bot.get(read.id).status is GateStatus.EXPIRED
    finally:
        bot.close()


def test_wait_times_out_then_returns_on_decision(client_for: ClientFor) -> None:
    bot = client_for("bot")
    gate = bot.open(export_request())
    assert bot.wait(gate.id, timeout=0.2).status is GateStatus.PENDING
    bob = client_for("bob")
    decider = threading.Timer(0.3, lambda: bob.decide(gate.id, Verdict.REJECT, "no"))
    decider.start()
    started = time.monotonic()
    waited = bot.wait(gate.id, timeout=20)
    # the waiter can return before the decider has read its own response: let it finish before
    # teardown closes its client
    decider.join(timeout=30)
    assert waited.status is GateStatus.REJECTED
    assert time.monotonic() - started < 5


def test_wait_many_and_async(client_for: ClientFor) -> None:
    import asyncio

    bot = client_for("bot")
    gates = [bot.open(export_request(target=f"t{i}")) for i in range(3)]
    client_for("bob").decide(gates[2].id, Verdict.APPROVE)
    result = bot.wait_many([g.id for g in gates], timeout=5)
    assert [g.id for g in result.changed] == [gates[2].id]
    assert sorted(result.pending) == sorted(g.id for g in gates[:2])
    again = asyncio.run(bot.await_many([gates[0].id], timeout=0.1))
    assert again.changed == []


def test_consume_binds_the_payload(client_for: ClientFor) -> None:
    bot = client_for("bot")
    gate = bot.open(export_request())
    client_for("bob").decide(gate.id, Verdict.APPROVE)
    assert bot.consume(gate.id, gate.binding_hash).status is GateStatus.CONSUMED


def test_cancel(client_for: ClientFor) -> None:
    bot = client_for("bot")
    gate = bot.open(export_request())
    assert bot.cancel(gate.id, "wrong quarter").status is GateStatus.CANCELLED


def test_http_client_fails_closed_when_the_service_is_gone() -> None:
    client = HttpGateClient("http://127.0.0.1:9", "gh_000000000000_x", retries=1, timeout=1)
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        client.open(export_request())


def test_me_names_the_principal_the_client_acts_as(client_for: ClientFor) -> None:
    bot, bob = client_for("bot").me(), client_for("bob").me()
    assert (bot.principal_id, bot.kind) == ("etl-bot", "service")
    assert (bob.principal_id, bob.kind, bob.email) == ("bob", "human", "bob@example.com")
    assert "data-governance" in bob.groups
