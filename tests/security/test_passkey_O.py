"""Adversary O — an operator with the database and the log's signing key — edits passkey-signed
decisions (issue 19). Property 5 with a trust root O cannot reach: the approver's passkey. Each
attack rewrites the log in plain SQL (SQLite file, PostgreSQL as the table owner), recomputes
every hash and re-signs the head with the home's own key, so the chain and the checkpoints verify
— and the real ``gatehouse audit verify`` still exits 1 naming the entry, because the signature
no longer covers the decision's gate, binding hash, verdict or comment, or the counter runs back.

The decisions are signed by a software authenticator (tests/passkey_authenticator.py: P-256,
the WebAuthn byte layout built by hand); the Chromium acceptance test signs with a real one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from gate_core import Gatekeeper, Settings, init_home, open_gatekeeper
from gate_core._models import Verdict, canonical_json
from gate_core._passkeys import decision_challenge
from gate_core.testing import actor
from tests.conftest import Report
from tests.gate_core.conftest import prod_redeploy
from tests.passkey_authenticator import SoftAuthenticator
from tests.security._operator import Body, rewrite, run_sql


@dataclass
class World:
    settings: Settings
    engine: Engine
    gatekeeper: Gatekeeper
    first: str  # gate bob signed first (counter 1), with a comment
    second: str  # gate bob signed next (counter 2)

    def gatehouse(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "GATEHOUSE_HOME": str(self.settings.home),
            "GATEHOUSE_DATABASE_URL": self.settings.database_url,
        }
        proc = subprocess.run(
            [sys.executable, "-m", "gate_core.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def verify(self) -> dict[str, object]:
        proc = self.gatehouse("audit", "verify", "--json")
        verdict = dict(json.loads(proc.stdout))
        verdict["exit"] = proc.returncode
        return verdict

    def resign(self) -> None:
        """O re-signs the rewritten head with the home's key, as if nothing had happened."""
        run_sql(self.engine, "DELETE FROM gh_audit_checkpoints")
        (self.settings.home / "audit-checkpoints.jsonl").unlink(missing_ok=True)
        signed = self.gatehouse("audit", "checkpoint")
        assert signed.returncode == 0, signed.stderr


def _signed_policy(settings: Settings) -> None:
    text = settings.policy_path.read_text(encoding="utf-8")
    marker = "    break_glass_groups: [sre-oncall]\n"
    settings.policy_path.write_text(
        text.replace(marker, marker + "    signature: passkey\n"), encoding="utf-8"
    )


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        policy_path=tmp_path / "home/policy.yaml",
        directory_path=tmp_path / "home/directory.yaml",
    )
    init_home(settings, example=True)
    _signed_policy(settings)
    gatekeeper = open_gatekeeper(settings)
    bobs = SoftAuthenticator()
    gatekeeper.passkeys.register(bobs.passkey("bob", "bob's key"), actor=actor("bob"))
    gates = []
    for comment in ("canary metrics look good", ""):
        gate = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))
        signed = bobs.sign(decision_challenge(gate.id, gate.binding_hash, "approve", comment))
        gatekeeper.decide(
            gate.id, actor=actor("bob"), verdict=Verdict.APPROVE, comment=comment, assertion=signed
        )
        gates.append(gate.id)
    gatekeeper.store.close()  # from here on only the CLI and O's SQL touch the home
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    w = World(settings, engine, gatekeeper, gates[0], gates[1])
    intact = w.verify()
    assert intact["exit"] == 0 and intact["signed_decisions"] == 2, intact
    yield w
    engine.dispose()


def _signed_decision(entries: list[Body], gate_id: str) -> Body:
    [body] = [b for b in entries if b["event"] == "decision.recorded" and b["gate"] == gate_id]
    return body


def _edit_decision(gate_id: str, change: Callable[[Body], None]) -> Callable[[list[Body]], list[Body]]:
    def edit(entries: list[Body]) -> list[Body]:
        change(_signed_decision(entries, gate_id))
        return entries

    return edit


def _set(field: str, value: object) -> Callable[[Body], None]:
    def change(body: Body) -> None:
        body["payload"] = {**body["payload"], field: value}

    return change


def _move_to_second(world: World) -> Callable[[Body], None]:
    def change(body: Body) -> None:
        body["gate"] = world.second

    return change


def _consistent_payload(world: World) -> Callable[[list[Body]], list[Body]]:
    """A new binding hash everywhere the log names the first gate's payload: its request, its
    policy evaluation and bob's decision — self-consistent, except for bob's signature."""
    forged = "f" * 64

    def edit(entries: list[Body]) -> list[Body]:
        for body in entries:
            if body["gate"] == world.first and "binding_hash" in body["payload"]:
                body["payload"] = {**body["payload"], "binding_hash": forged}
        return entries

    return edit


def _swap_signatures(world: World) -> Callable[[list[Body]], list[Body]]:
    """Bob's assertion of the second gate pasted into his decision of the first (a replay)."""

    def edit(entries: list[Body]) -> list[Body]:
        first, second = _signed_decision(entries, world.first), _signed_decision(entries, world.second)
        first["payload"] = {**first["payload"], "passkey": second["payload"]["passkey"]}
        return entries

    return edit


def _reorder(world: World) -> Callable[[list[Body]], list[Body]]:
    """Bob's later signed decision moved before his earlier one: the counter runs backwards."""

    def edit(entries: list[Body]) -> list[Body]:
        first, second = _signed_decision(entries, world.first), _signed_decision(entries, world.second)
        i, j = entries.index(first), entries.index(second)
        entries[i], entries[j] = second, first
        return entries

    return edit


ATTACKS: dict[str, tuple[Callable[[World], Callable[[list[Body]], list[Body]]], str, str]] = {
    # name: (the edit, the entry that must be named, words the problem must contain)
    "verdict approve→reject": (
        lambda w: _edit_decision(w.first, _set("verdict", "reject")),
        "first",
        "does not verify",
    ),
    "comment changed": (
        lambda w: _edit_decision(w.first, _set("comment", "looks fine, ship it")),
        "first",
        "does not verify",
    ),
    "comment of a signed empty comment added": (
        lambda w: _edit_decision(w.second, _set("comment", "approved after review")),
        "second",
        "does not verify",
    ),
    "decision moved to another gate": (
        lambda w: _edit_decision(w.first, _move_to_second(w)),
        "first",
        "does not verify",
    ),
    "binding hash of the decision alone": (
        lambda w: _edit_decision(w.first, _set("binding_hash", "0" * 64)),
        "first",
        "another binding hash",
    ),
    "binding hash rewritten everywhere": (_consistent_payload, "first", "does not verify"),
    "assertion replayed from another gate": (_swap_signatures, "first", "does not verify"),
    "signature stripped": (
        lambda w: _edit_decision(w.first, lambda b: b["payload"].pop("passkey")),
        "first",
        "is not signed",
    ),
    "counter runs backwards (entries reordered)": (_reorder, "first-after-swap", "counter went from 2 to 1"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_editing_a_signed_decision_fails_verify_naming_the_entry(
    world: World, attack: str, report: Report
) -> None:
    make_edit, which, words = ATTACKS[attack]
    before = {b["seq"]: b for b in _bodies(world)}
    first_seq = _signed_decision(list(before.values()), world.first)["seq"]
    second_seq = _signed_decision(list(before.values()), world.second)["seq"]
    rewrite(world.engine, make_edit(world))
    world.resign()  # O holds the signing key: the chain and its checkpoint verify again

    verdict = world.verify()
    assert verdict["exit"] == 1 and verdict["ok"] is False, verdict
    named = {"first": first_seq, "second": second_seq, "first-after-swap": second_seq}[which]
    assert verdict["first_bad_seq"] == named, verdict
    assert words in str(verdict["problem"]), verdict
    report(
        f"Passkey tamper O ({world.engine.dialect.name}): signed decision, {attack}",
        "detected",
        "",
        "detected",
    )


def _bodies(world: World) -> list[Body]:
    from tests.security._operator import bodies

    return bodies(world.engine)


def test_without_the_passkey_check_the_resigned_forgery_would_pass(world: World) -> None:
    """The control: a rewrite that touches no signed decision (an unrelated edit) verifies after
    O re-signs it — so in the attacks above it is the passkey signature, nothing else, that
    catches the edit."""

    def harmless(entries: list[Body]) -> list[Body]:
        for body in entries:
            if body["event"] == "directory.loaded":
                body["payload"] = {
                    **body["payload"],
                    "principals": [*body["payload"]["principals"], "mallory"],
                }
        return entries

    rewrite(world.engine, harmless)
    world.resign()
    assert world.verify()["exit"] == 0


def test_an_exported_log_verifies_offline_and_an_edited_export_names_the_entry(
    world: World, tmp_path: Path, report: Report
) -> None:
    """An auditor holds an export, the public key and the checkpoints — no home, no database.
    O edits the export's signed decision, rechains it and re-signs the head with the home's key."""
    from datetime import UTC, datetime

    from gate_core._audit import CheckpointSigner, chain_hash

    export = tmp_path / "audit.jsonl"
    assert world.gatehouse("audit", "export", "-o", str(export)).returncode == 0
    public = world.settings.public_key_path
    marks = world.settings.home / "audit-checkpoints.jsonl"
    nowhere = {
        **os.environ,
        "GATEHOUSE_HOME": str(tmp_path / "no-home"),
        "GATEHOUSE_DATABASE_URL": "sqlite:///nowhere",
    }

    def verify_export(checkpoints: Path) -> dict[str, object]:
        proc = subprocess.run(
            [sys.executable, "-m", "gate_core.cli", "audit", "verify-export", str(export),
             "--public-key", str(public), "--checkpoints", str(checkpoints), "--json"],
            capture_output=True, text=True, env=nowhere, timeout=120,
        )  # fmt: skip
        assert "Traceback" not in proc.stderr, proc.stderr
        return {**json.loads(proc.stdout), "exit": proc.returncode}

    intact = verify_export(marks)
    assert intact["exit"] == 0 and intact["signed_decisions"] == 2, intact

    records = [json.loads(line) for line in export.read_text(encoding="utf-8").splitlines()]
    [edited] = [r for r in records if r["event"] == "decision.recorded" and r["gate"] == world.first]
    edited["payload"]["verdict"] = "reject"
    prev = records[0]["prev_hash"]
    for record in records:
        body = canonical_json({k: record[k] for k in ("seq", "at", "event", "actor", "gate", "payload")})
        record["prev_hash"], record["hash"] = prev, chain_hash(prev, body)
        prev = record["hash"]
    export.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    resigned = tmp_path / "resigned-checkpoints.jsonl"
    signer = CheckpointSigner.load(world.settings.signing_key_path)
    resigned.write_text(signer.sign(len(records), prev, datetime.now(UTC)).to_json() + "\n", encoding="utf-8")

    verdict = verify_export(resigned)
    assert verdict["exit"] == 1 and verdict["first_bad_seq"] == edited["seq"], verdict
    assert "does not verify" in str(verdict["problem"])
    report(
        f"Passkey tamper O ({world.engine.dialect.name}): exported log, signed verdict edited",
        "detected",
        "",
        "detected",
    )
