"""Adversary N against THREATS.md property 1 through the identity-aware proxy: the proxy's user
header is believed only from the proxy itself — the *socket peer*, never an address a request
claims in ``X-Forwarded-For`` — and its groups header can take groups away, never add one.

Issue 15, attack 2 ("proxy header"), against the real ``gatehouse serve`` over a socket, on SQLite
and PostgreSQL. On the code before issue 15 both attacks succeeded:
- with ``proxy.trusted_ips: [10.0.0.5]``, a request from the service host itself carrying
  ``X-Forwarded-Email: carol@…`` and ``X-Forwarded-For: 10.0.0.5`` decided as carol: uvicorn
  rewrote the client address from forwarded headers, which it trusts from loopback by default;
- through the trusted proxy, ``X-Forwarded-Groups: data-governance`` made dave (ml-leads) an
  approver of a pii export.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import Report
from tests.security.conftest import IDENTITY, Home


def proxy_home(home: Home, **config: Any) -> None:
    (home.settings.home / "service.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def alice_requests(home: Home) -> str:
    opened = home.run("request", "--action", "export", "--dataset", "warehouse/customers#pii")
    assert opened.code == 0, opened.err
    return opened.last_line


def approve(base: str, gate_id: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/gates/{gate_id}/decisions", json={"decision": "approve"}, headers=headers, timeout=30
    )


def decisions(home: Home, gate_id: str) -> list[Any]:
    result: list[Any] = json.loads(home.run("show", gate_id, "--json").out)["decisions"]
    return result


@pytest.mark.parametrize(
    "forwarded",
    [
        {"X-Forwarded-For": "10.0.0.5"},
        {"X-Forwarded-For": "10.0.0.5, 10.0.0.5"},
        {"Forwarded": "for=10.0.0.5", "X-Forwarded-For": "10.0.0.5", "X-Real-IP": "10.0.0.5"},
    ],
    ids=["xff", "xff-chain", "every-header"],
)
def test_a_forwarded_for_header_does_not_make_a_request_the_proxy(
    home_for: Callable[..., Home],
    serve: Callable[..., str],
    forwarded: dict[str, str],
    report: Report,
) -> None:
    home = home_for(kernel_is="alice")
    proxy_home(home, proxy={"user_header": "X-Forwarded-Email", "trusted_ips": ["10.0.0.5"]})
    base = serve(home)
    gate_id = alice_requests(home)
    refused = approve(base, gate_id, {"X-Forwarded-Email": "carol@example.com", **forwarded})
    assert refused.status_code == 401, refused.text
    assert "X-Forwarded-Email is only trusted from the configured proxy" in refused.json()["detail"]
    assert "127.0.0.1" in refused.json()["detail"]  # names the peer it saw
    assert decisions(home, gate_id) == []
    spelling = "; ".join(f"{name}: {value}" for name, value in sorted(forwarded.items()))
    home.figure(report, f"proxy header with forged forwarding headers ({spelling})", 1, section=IDENTITY)


def test_forwarded_headers_are_honoured_only_from_a_configured_hop_and_never_for_identity(
    home_for: Callable[..., Home], serve: Callable[..., str]
) -> None:
    """A load balancer at 127.0.0.1 is configured (``forwarded_allow_ips``): its X-Forwarded-For
    names the client for logs, but who may assert identity is still decided on the socket peer."""
    home = home_for(kernel_is="alice")
    proxy_home(
        home,
        forwarded_allow_ips=["127.0.0.1"],
        proxy={"user_header": "X-Forwarded-Email", "trusted_ips": ["10.0.0.5"]},
    )
    base = serve(home)
    gate_id = alice_requests(home)
    refused = approve(
        base, gate_id, {"X-Forwarded-Email": "carol@example.com", "X-Forwarded-For": "10.0.0.5"}
    )
    assert refused.status_code == 401, refused.text
    assert decisions(home, gate_id) == []


def test_the_trusted_proxy_at_the_socket_peer_signs_people_in(
    home_for: Callable[..., Home], serve: Callable[..., str]
) -> None:
    home = home_for(kernel_is="alice")
    proxy_home(home, proxy={"user_header": "X-Forwarded-Email", "trusted_ips": ["127.0.0.0/8"]})
    base = serve(home)
    gate_id = alice_requests(home)
    ok = approve(base, gate_id, {"X-Forwarded-Email": "carol@example.com"})
    assert ok.status_code == 200, ok.text
    assert [(d["principal_id"], d["via"]) for d in decisions(home, gate_id)] == [("carol", "proxy-header")]


def test_the_groups_header_never_adds_a_group(
    home_for: Callable[..., Home], serve: Callable[..., str], report: Report
) -> None:
    home = home_for(kernel_is="alice")
    proxy_home(
        home,
        proxy={
            "user_header": "X-Forwarded-Email",
            "groups_header": "X-Forwarded-Groups",
            "trusted_ips": ["127.0.0.1"],
        },
    )
    base = serve(home)
    gate_id = alice_requests(home)
    dave = {"X-Forwarded-Email": "dave@example.com", "X-Forwarded-Groups": "data-governance, ml-leads"}
    refused = approve(base, gate_id, dave)
    assert (refused.status_code, refused.json()["code"]) == (403, "not_an_approver"), refused.text
    # the proxy may take a group away: bob, whom the proxy says is only in 'everyone', is no approver
    bob_without = {"X-Forwarded-Email": "bob@example.com", "X-Forwarded-Groups": "everyone"}
    removed = approve(base, gate_id, bob_without)
    assert (removed.status_code, removed.json()["code"]) == (403, "not_an_approver"), removed.text
    me = httpx.get(f"{base}/v1/me", headers=dave, timeout=30).json()
    assert me["groups"] == ["ml-leads"]  # what the directory gives, narrowed by the header
    assert decisions(home, gate_id) == []
    bob = {"X-Forwarded-Email": "bob@example.com", "X-Forwarded-Groups": "data-governance"}
    assert approve(base, gate_id, bob).status_code == 200
    home.figure(report, "proxy groups header adding a group", 1, section=IDENTITY)
