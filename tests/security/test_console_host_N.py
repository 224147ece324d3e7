"""Adversary N against THREATS.md property 1 through the console: local sign-in (pick a person)
is for a loopback client that addressed the console by a loopback name, and a request naming any
other ``Host`` is refused before a page renders (``console.allowed_hosts``).

Issue 15, attack 3 ("console local sign-in"), against the real ``gatehouse serve`` over a socket,
on SQLite and PostgreSQL. On the code before issue 15 local sign-in was decided from the bind
address alone: a DNS-rebinding-shaped request — ``Host`` and ``Origin`` of an attacker's name that
now resolves to 127.0.0.1 — read the sign-in page's CSRF token, signed in as bob and approved
alice's pii export; and a client on another machine signed in wherever local sign-in was enabled.
"""

from __future__ import annotations

import html
import json
import re
import socket
from collections.abc import Callable
from typing import Any

import httpx
import yaml

from tests.conftest import Report
from tests.security.conftest import IDENTITY, Home

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def sandbox_request(home: Home) -> str:
    opened = home.run(
        "--as", "alice", "request", "--action", "export", "--dataset", "warehouse/customers#pii"
    )
    assert opened.code == 0, opened.err
    return opened.last_line


def csrf_of(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match, page.text
    return html.unescape(match.group(1))


def local_sign_in_and_approve(client: httpx.Client, gate_id: str) -> list[httpx.Response]:
    """Everything a page that rebinds its name to the console can do: each response, in order."""
    seen = [client.get("/console/login")]
    if seen[-1].status_code != 200:
        return seen
    token = csrf_of(seen[-1]) if CSRF.search(seen[-1].text) else "no-form-to-read-it-from"
    seen.append(client.post("/console/login/local", data={"csrf_token": token, "principal": "bob"}))
    seen.append(client.get(f"/console/gates/{gate_id}"))
    if seen[-1].status_code == 200:
        form = {"csrf_token": csrf_of(seen[-1]), "verdict": "approve", "comment": ""}
        seen.append(client.post(f"/console/gates/{gate_id}/decide", data=form))
    return seen


def decisions(home: Home, gate_id: str) -> list[Any]:
    result: list[Any] = json.loads(home.run("show", gate_id, "--json").out)["decisions"]
    return result


def test_a_rebound_host_is_refused_before_any_page_renders(
    home_for: Callable[..., Home], serve: Callable[..., str], report: Report
) -> None:
    home = home_for(kernel_is="alice", sandbox=True)  # the embedded default: sandbox on loopback
    base = serve(home)
    gate_id = sandbox_request(home)
    port = base.rsplit(":", 1)[1]
    rebound = f"rebind.attacker.example:{port}"
    headers = {"Host": rebound, "Origin": f"http://{rebound}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        seen = local_sign_in_and_approve(client, gate_id)
        assert [r.status_code for r in seen] == [400], [r.status_code for r in seen]
        refusal = seen[0]
        assert "rebind.attacker.example is not an allowed host for this console" in refusal.text
        assert "console.allowed_hosts" in refusal.text
        assert "csrf_token" not in refusal.text and "set-cookie" not in refusal.headers
        for path in (
            "/console/",
            f"/console/gates/{gate_id}",
            "/console/audit",
            "/console/static/console.css",
        ):
            assert client.get(path).status_code == 400
    assert decisions(home, gate_id) == []
    home.figure(report, "console DNS rebinding (foreign Host)", 1, section=IDENTITY)


def non_loopback_address() -> str:
    """This machine's address on its first non-loopback interface (where a packet to a
    documentation address would leave from); nothing is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("203.0.113.1", 9))
        address = str(probe.getsockname()[0])
    assert not address.startswith("127."), address
    return address


def test_local_sign_in_is_only_for_a_loopback_client(
    home_for: Callable[..., Home], serve: Callable[..., str], report: Report
) -> None:
    """Local sign-in switched on for a server on every interface: a client reaching it over the
    network, even one that writes ``Host: localhost``, is not offered it."""
    home = home_for(kernel_is="alice", sandbox=True)
    address = non_loopback_address()
    config = {"console": {"local_signin": True, "allowed_hosts": [address, "localhost", "127.0.0.1"]}}
    (home.settings.home / "service.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    base = serve(home, host="0.0.0.0")  # noqa: S104 - the point: a server other machines reach
    port = base.rsplit(":", 1)[1]
    gate_id = sandbox_request(home)
    tried = 0
    for host in (f"{address}:{port}", f"localhost:{port}"):
        with httpx.Client(base_url=f"http://{address}:{port}", headers={"Host": host}, timeout=30) as client:
            page = client.get("/console/login")
            assert page.status_code == 200, page.text
            assert "Local sign-in is not offered to this client" in page.text
            assert 'value="bob"' not in page.text
            assert "csrf_token" not in page.text  # no form to submit
            forged = client.post("/console/login/local", data={"csrf_token": "forged", "principal": "bob"})
            assert forged.status_code == 403, forged.text
            assert "Local sign-in is only for" in forged.text
            assert client.get("/console/", follow_redirects=False).status_code == 303  # not signed in
            tried += 1
    # the same server still offers it on loopback, addressed by a loopback name
    with httpx.Client(base_url=base, timeout=30) as client:
        assert 'value="bob"' in client.get("/console/login").text
    assert decisions(home, gate_id) == []
    home.figure(report, "console local sign-in from another machine", tried, section=IDENTITY)


def test_a_loopback_client_that_names_another_host_gets_no_local_sign_in(
    home_for: Callable[..., Home], serve: Callable[..., str], report: Report
) -> None:
    """A name the operator allowed (``console.allowed_hosts``) renders pages, but local sign-in also
    needs the console to be addressed by a loopback name: a reverse proxy on this host that keeps
    the browser's Host is not a local person."""
    home = home_for(kernel_is="alice", sandbox=True)
    (home.settings.home / "service.yaml").write_text(
        yaml.safe_dump({"console": {"allowed_hosts": ["gatehouse.example.com"]}}), encoding="utf-8"
    )
    base = serve(home)
    gate_id = sandbox_request(home)
    headers = {"Host": "gatehouse.example.com", "Origin": "http://gatehouse.example.com"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        seen = local_sign_in_and_approve(client, gate_id)
        assert [r.status_code for r in seen[:2]] == [200, 403], [r.text for r in seen]
        assert 'value="bob"' not in seen[0].text
    proxied = {"X-Forwarded-For": "198.51.100.7"}
    with httpx.Client(base_url=base, headers=proxied, timeout=30) as client:
        seen = local_sign_in_and_approve(client, gate_id)
        assert [r.status_code for r in seen[:2]] == [200, 403], [r.text for r in seen]
    assert decisions(home, gate_id) == []
    home.figure(report, "console local sign-in through a same-host proxy", 2, section=IDENTITY)
