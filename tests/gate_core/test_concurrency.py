"""Twenty processes deciding one gate at once: exactly one outcome, quorum never double-counts."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import yaml

from gate_core import Event, GateRequest, GateStatus, Settings, init_home, open_gatekeeper
from gate_core.testing import actor
from tests.gate_core._race_worker import decide

PROCESSES = 20
APPROVERS = [f"approver{i:02d}" for i in range(PROCESSES)]


@pytest.fixture
def race_home(tmp_path: Path, database_url: str) -> Settings:
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        policy_path=tmp_path / "home/policy.yaml",
        directory_path=tmp_path / "home/directory.yaml",
    )
    init_home(settings, example=True)
    directory = yaml.safe_load(settings.directory_path.read_text())
    directory["principals"] += [
        {"id": name, "email": f"{name}@example.com", "groups": ["data-governance"]} for name in APPROVERS
    ]
    settings.directory_path.write_text(yaml.safe_dump(directory))
    return settings


def race(settings: Settings, gate_id: str, deciders: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    # forkserver: each worker is a fresh fork of a server that has already imported gate_core, so
    # 20 workers start in well under a second and share no database connection with the test.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.gate_core._race_worker"])
    start = context.Barrier(len(deciders))
    results = context.Queue()
    workers = [
        context.Process(
            target=decide,
            args=(str(settings.home), settings.database_url, gate_id, who, verdict, start, results),
        )
        for who, verdict in deciders
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=180) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    errors = [o for o in outcomes if o[0] == "error"]
    assert not errors, errors
    return outcomes


def open_gate(settings: Settings, action: str, environment: str = "") -> str:
    gatekeeper = open_gatekeeper(settings)
    gate = gatekeeper.open(
        GateRequest(action=action, target="t", environment=environment, requester="alice"),
        submitted_by=actor("alice"),
    )
    gatekeeper.store.close()
    return gate.id


def decision_events(settings: Settings, gate_id: str) -> list[str]:
    gatekeeper = open_gatekeeper(settings)
    try:
        assert gatekeeper.audit.verify().ok
        return [e.event for e in gatekeeper.store.audit_entries() if e.gate_id == gate_id]
    finally:
        gatekeeper.store.close()


@pytest.mark.slow
def test_twenty_approvers_at_once_one_outcome(race_home: Settings) -> None:
    gate_id = open_gate(race_home, "role_escalation")  # 1 approval from data-governance
    outcomes = race(race_home, gate_id, [(name, "approve") for name in APPROVERS])
    accepted = [o for o in outcomes if o[0] == "accepted"]
    assert len(accepted) == 1
    assert {o[2] for o in outcomes if o[0] == "refused"} == {"already_decided"}
    events = decision_events(race_home, gate_id)
    assert events.count(Event.DECISION_RECORDED) == 1
    assert events.count(Event.GATE_APPROVED) == 1
    assert events.count(Event.DECISION_REFUSED) == PROCESSES - 1


@pytest.mark.slow
def test_quorum_of_two_is_reached_by_exactly_two_decision_events(race_home: Settings) -> None:
    policy = yaml.safe_load(race_home.policy_path.read_text())
    policy["rules"][1]["approvers"] = {"groups": ["data-governance"], "count": 2}  # prod-redeploy
    race_home.policy_path.write_text(yaml.safe_dump(policy))
    gate_id = open_gate(race_home, "redeploy", "prod")
    outcomes = race(race_home, gate_id, [(name, "approve") for name in APPROVERS])
    assert len([o for o in outcomes if o[0] == "accepted"]) == 2
    events = decision_events(race_home, gate_id)
    assert events.count(Event.DECISION_RECORDED) == 2
    assert events.count(Event.GATE_APPROVED) == 1
    gatekeeper = open_gatekeeper(race_home)
    gate = gatekeeper.get(gate_id)
    gatekeeper.store.close()
    assert gate.status is GateStatus.APPROVED
    assert len(gate.decided_by) == len(set(gate.decided_by)) == 2


@pytest.mark.slow
def test_double_clicks_by_one_person_count_once(race_home: Settings) -> None:
    gate_id = open_gate(race_home, "redeploy", "prod")  # needs 2
    outcomes = race(race_home, gate_id, [("bob", "approve")] * 10)
    assert len([o for o in outcomes if o[0] == "accepted"]) == 1
    assert {o[2] for o in outcomes if o[0] == "refused"} == {"duplicate_decision"}
    assert decision_events(race_home, gate_id).count(Event.DECISION_RECORDED) == 1


@pytest.mark.slow
def test_approve_racing_reject_has_one_outcome(race_home: Settings) -> None:
    gate_id = open_gate(race_home, "role_escalation")
    deciders = [(name, "approve" if i % 2 else "reject") for i, name in enumerate(APPROVERS)]
    outcomes = race(race_home, gate_id, deciders)
    assert len([o for o in outcomes if o[0] == "accepted"]) == 1
    events = decision_events(race_home, gate_id)
    assert events.count(Event.GATE_APPROVED) + events.count(Event.GATE_REJECTED) == 1


def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Readers take a WAL snapshot; only writers queue for SQLite's single write lock."""
    import sqlite3
    import time

    from gate_core import SqlStore
    from gate_core.testing import example_gatekeeper

    url = f"sqlite:///{tmp_path / 'g.db'}"
    gatekeeper = example_gatekeeper(database_url=url)
    gate = gatekeeper.open(GateRequest(action="export", requester="alice"), submitted_by=actor("alice"))
    reader = SqlStore.open(url, timeout_s=5)
    writer = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process is in the middle of a write
    try:
        started = time.monotonic()
        assert reader.get_gate(gate.id).status is GateStatus.PENDING
        assert reader.audit_head()[0] > 0
        assert time.monotonic() - started < 1.0  # not the 5 s busy timeout
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        reader.close()
        gatekeeper.store.close()
