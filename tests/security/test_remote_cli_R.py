"""The CLI against a deployed service: ``gatehouse login`` (the IdP's device flow, RFC 8628, or a
personal token), then every command over HTTP under that identity — and adversary R still cannot
get their own gate approved from a terminal (THREATS.md properties 1 and 2).

A local identity provider built at the wire (tests/security/_idp.py: discovery, JWKS, device
authorization, a token endpoint answering ``authorization_pending`` and then the token), the real
``gatehouse serve`` and the real ``gatehouse`` CLI in subprocesses whose home does not exist — so
nothing reaches a database but the service — on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Report
from tests.security._idp import StandInIdp
from tests.security.conftest import GATEHOUSE, IDENTITY, Done, Home


@pytest.fixture
def idp() -> Iterator[StandInIdp]:
    provider = StandInIdp().start()
    yield provider
    provider.stop()


class Terminal:
    """One person's terminal: their own config directory, no Gatehouse home, no database."""

    def __init__(self, tmp: Path, name: str) -> None:
        self.config = tmp / f"{name}-config"
        self.env = {
            **os.environ,
            "GATEHOUSE_CONFIG_DIR": str(self.config),
            "GATEHOUSE_HOME": str(tmp / f"{name}-no-home"),
            "GATEHOUSE_DATABASE_URL": f"sqlite:///{tmp / f'{name}-no-home' / 'never.db'}",
        }
        for leaked in ("GATEHOUSE_URL", "GATEHOUSE_TOKEN"):
            self.env.pop(leaked, None)

    def run(self, *args: str, stdin: str | None = None) -> Done:
        proc = subprocess.run(
            [*GATEHOUSE, *args], capture_output=True, text=True, env=self.env, input=stdin, timeout=120
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return Done(proc.returncode, proc.stdout, proc.stderr)


def idp_home(home: Home, idp: StandInIdp) -> None:
    path = home.settings.directory_path
    directory = yaml.safe_load(path.read_text(encoding="utf-8"))
    for entry in directory["principals"]:
        entry["idp_subjects"] = [{"issuer": idp.issuer, "subject": f"u-{entry['id']}"}]
    path.write_text(yaml.safe_dump(directory, sort_keys=False), encoding="utf-8")
    (home.settings.home / "service.yaml").write_text(
        yaml.safe_dump({"oidc": idp.service_yaml()}), encoding="utf-8"
    )


def device_login(terminal: Terminal, idp: StandInIdp, base: str, person: str) -> Done:
    idp.person = {"sub": f"u-{person}"}
    done = terminal.run("login", "--url", base)
    assert done.code == 0, done.err
    assert "To sign in, open " in done.err and "enter the code" in done.err
    return done


def test_login_with_the_device_flow_then_approve_over_http(
    home_for: Callable[..., Home], serve: Callable[..., str], idp: StandInIdp, tmp_path: Path
) -> None:
    home = home_for(kernel_is="alice")
    idp_home(home, idp)
    base = serve(home)
    gate_id = home.run("request", "--action", "export", "--dataset", "warehouse/customers#pii").last_line

    bob = Terminal(tmp_path, "bob")
    logged_in = device_login(bob, idp, base, "bob")
    assert logged_in.out.strip() == (
        f"logged in: bob <bob@example.com> at {base}, via oidc (subject u-bob at {idp.issuer}), scope decide"
    )
    polls = [form for call, form in idp.calls if call == "POST /token"]
    assert [f["grant_type"] for f in polls] == ["urn:ietf:params:oauth:grant-type:device_code"] * 3
    assert all(f["client_id"] == "gatehouse-cli" for f in polls)  # a public client: no secret sent
    credentials = bob.config / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(bob.config.stat().st_mode) == 0o700
    assert bob.run("whoami").out.strip() == logged_in.out.strip().removeprefix("logged in: ")

    listed = bob.run("list", "--status", "pending", "--json")
    assert listed.code == 0, listed.err
    assert [g["id"] for g in json.loads(listed.out)] == [gate_id]
    approved = bob.run("approve", gate_id, "--comment", "from my terminal")
    assert approved.code == 0, approved.err
    assert f"approve     by bob via oidc (subject u-bob at {idp.issuer}) at " in approved.out
    assert not (tmp_path / "bob-no-home").exists()  # nothing local was opened

    # the same output as local mode, and the same exit code and message for a refusal
    assert bob.run("show", gate_id).out == home.run("show", gate_id).out
    again_remote, again_local = bob.run("approve", gate_id), home.run("approve", gate_id)
    assert (again_remote.code, again_local.code) == (1, 1)
    assert again_remote.err.startswith("gatehouse: already approved by bob at ")
    assert again_remote.err == again_local.err

    # lineage queries go through the service's /v1/lineage routes, with the local output
    for query in (("gate", gate_id), ("accessed", "warehouse/customers"), ("exports", "--tag", "pii")):
        remote_rows, local_rows = (
            bob.run("lineage", *query, "--format", "json"),
            home.run("lineage", *query, "--format", "json"),
        )
        assert (remote_rows.code, remote_rows.out) == (0, local_rows.out), remote_rows.err
    # the service's own check (its key; the local one also counts the witnesses' checkpoints)
    verified_remote, verified_local = bob.run("audit", "verify"), home.run("audit", "verify")
    assert (verified_remote.code, verified_local.code) == (0, 0), verified_remote.err
    assert verified_remote.out.split(", ")[:2] == verified_local.out.split(", ")[:2]  # entries, head
    assert "verified by the service at" in verified_remote.err

    entries = [json.loads(line) for line in home.run("audit", "export").out.splitlines()]
    [recorded] = [e for e in entries if e["event"] == "decision.recorded"]
    assert recorded["actor"] == {
        "principal_id": "bob",
        "via": "oidc",
        "email": "bob@example.com",
        "issuer": idp.issuer,
        "subject": "u-bob",
    }


def test_a_login_never_approves_a_gate_its_person_is_involved_in(
    home_for: Callable[..., Home],
    serve: Callable[..., str],
    idp: StandInIdp,
    tmp_path: Path,
    report: Report,
) -> None:
    home = home_for(kernel_is="alice")
    idp_home(home, idp)
    base = serve(home)
    # carol requests through the service, from her own terminal
    carol = Terminal(tmp_path, "carol")
    device_login(carol, idp, base, "carol")
    opened = carol.run("request", "--action", "export", "--dataset", "warehouse/customers#pii")
    assert opened.code == 0, opened.err
    gate_id = opened.last_line
    assert "requester   carol" in opened.out
    refused = carol.run("approve", gate_id)
    assert refused.code == 1
    assert refused.err.strip() == "gatehouse: carol: you requested this gate; someone else must decide it"

    # alice creates her own personal token (the kernel's account is hers) and logs in with it
    token = home.run("token", "create", "--principal", "alice", "--scope", "decide").last_line
    alice = Terminal(tmp_path, "alice")
    by_token = alice.run("login", "--url", base, "--token", "-", stdin=token + "\n")
    assert by_token.code == 0, by_token.err
    assert (
        by_token.out.strip() == f"logged in: alice <alice@example.com> at {base}, via api-token, scope decide"
    )
    assert stat.S_IMODE((alice.config / "credentials.json").stat().st_mode) == 0o600
    not_approver = alice.run("approve", gate_id)
    assert not_approver.code == 1
    assert "alice is not in an approver group of this gate" in not_approver.err
    # carol cancels her own gate from her terminal; alice may not
    assert alice.run("cancel", gate_id).code == 1
    cancelled = carol.run("cancel", gate_id, "--reason", "not needed")
    assert cancelled.code == 0 and f"gate {gate_id}: CANCELLED" in cancelled.out
    home.figure(report, "a login approving its own gate (device flow)", 1, section=IDENTITY)


def test_remote_mode_refuses_what_it_cannot_prove(
    home_for: Callable[..., Home], serve: Callable[..., str], idp: StandInIdp, tmp_path: Path
) -> None:
    home = home_for(kernel_is="alice")
    idp_home(home, idp)
    base = serve(home)
    nobody = Terminal(tmp_path, "nobody")
    not_logged_in = nobody.run("--url", base, "list")
    assert not_logged_in.code == 1
    assert not_logged_in.err.strip() == (
        f"gatehouse: not logged in to {base}: run `gatehouse login --url {base}` (or set GATEHOUSE_TOKEN)"
    )
    bad_token = nobody.run("login", "--url", base, "--token", "-", stdin="gh_abc_not-a-token\n")
    assert bad_token.code == 1 and "invalid API token" in bad_token.err
    assert not (nobody.config / "credentials.json").exists()
    # a credentials file others can read is refused, not used
    bob = Terminal(tmp_path, "bob")
    device_login(bob, idp, base, "bob")
    (bob.config / "credentials.json").chmod(0o644)
    exposed = bob.run("whoami")
    assert exposed.code == 1 and "can be read by other users (mode 644)" in exposed.err
    (bob.config / "credentials.json").chmod(0o600)
    assert bob.run("--as", "carol", "whoami").code == 1  # --as is for sandbox homes, never a login
    # an IdP login of someone the directory does not link is stored, says so, and reads only
    stranger = Terminal(tmp_path, "stranger")
    idp.person = {"sub": "u-stranger"}
    unlinked = stranger.run("login", "--url", base)
    assert unlinked.code == 0, unlinked.err
    assert "via oidc (subject u-stranger" in unlinked.out and "scope read" in unlinked.out
    assert "is linked to no principal" in unlinked.err and "idp_subjects" in unlinked.err
    assert stranger.run("list").code == 0
    opened = stranger.run("request", "--action", "export", "--dataset", "warehouse/customers#pii")
    assert opened.code == 1 and "is linked to no principal" in opened.err


def test_an_expired_access_token_is_refreshed(
    home_for: Callable[..., Home], serve: Callable[..., str], idp: StandInIdp, tmp_path: Path
) -> None:
    home = home_for(kernel_is="alice")
    idp_home(home, idp)
    base = serve(home)
    idp.access_token_lifetime_s = 20  # within the CLI's refresh margin: refreshed on next use
    bob = Terminal(tmp_path, "bob")
    device_login(bob, idp, base, "bob")
    before = json.loads((bob.config / "credentials.json").read_text())["logins"][base]
    assert bob.run("whoami").code == 0
    after = json.loads((bob.config / "credentials.json").read_text())["logins"][base]
    assert after["access_token"] != before["access_token"]
    assert [form["grant_type"] for call, form in idp.calls if call == "POST /token"][-1] == "refresh_token"
    assert stat.S_IMODE((bob.config / "credentials.json").stat().st_mode) == 0o600
