"""The adapter session (gate_core.session): open → wait → conclude → lineage, written once for
every orchestrator adapter, here over the in-process client and a real SQLite gate store."""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import pytest

from gate_core import (
    ApprovalNotUsable,
    DatasetRef,
    GateCancelled,
    GateExpired,
    GatehouseError,
    Gatekeeper,
    GateNotApproved,
    GateRejected,
    GateStatus,
    IdempotencyConflict,
    InvalidInput,
    LocalGateClient,
    RequestRefused,
    RunContext,
)
from gate_core.session import (
    GateSession,
    GateSpec,
    RequesterClaim,
    StepRun,
    gate_args,
    not_approved,
    resolve_requester,
)
from gate_core.testing import ManualClock, actor, example_gatekeeper

PII = GateSpec.of(
    "export",
    target="s3://exports/customers.csv",
    datasets=["warehouse/customers#pii"],
    parameters={"model_version": "1"},
    reason="quarterly report",
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def gatekeeper(clock: ManualClock) -> Gatekeeper:
    return example_gatekeeper(clock=clock)


@pytest.fixture
def session(gatekeeper: Gatekeeper) -> GateSession:
    return GateSession(LocalGateClient(gatekeeper, actor("etl-bot")), long_poll_s=0.05)


def step(key: str = "airflow:dag:run1:export:-1", *claims: RequesterClaim, try_number: int = 1) -> StepRun:
    run = RunContext(
        orchestrator="airflow", pipeline="dag", run_id="run1", task_id="export", try_number=try_number
    )
    return StepRun(run, key, claims or (RequesterClaim("alice", "DAG owner"),))


def test_open_is_idempotent_and_a_retry_finds_its_own_gate(session: GateSession) -> None:
    first = session.open(PII, step())
    again = session.open(PII, step(try_number=2))
    assert again.gate.id == first.gate.id
    assert first.pending and first.gate.rule == "pii-export"
    assert first.request.requester == "alice"


def test_a_found_gate_for_another_payload_is_never_adopted(session: GateSession) -> None:
    opened = session.open(PII, step())
    other, requester = session.request(replace(PII, parameters={"model_version": "2"}), step())
    with pytest.raises(RequestRefused, match="another action, target, environment, parameters or datasets"):
        session.adopt(other, opened.gate, requester)
    with pytest.raises(IdempotencyConflict):  # and the service refuses to hand it over at all
        session.open(replace(PII, parameters={"model_version": "2"}), step())


def test_conclude_consumes_with_the_binding_the_step_computed_itself(
    session: GateSession, gatekeeper: Gatekeeper
) -> None:
    opened = session.open(PII, step())
    gatekeeper.approve(opened.gate.id, actor=actor("bob"))
    approved = session.wait(opened)
    consumed = session.conclude(opened, approved)
    assert consumed.status is GateStatus.CONSUMED

    # The step's payload changed while it waited (Airflow renders templates again on resume): the
    # approval, for version 1, must not cover version 2 — even though the server's copy of the
    # gate would have "matched" itself.
    drifted, requester = session.request(replace(PII, parameters={"model_version": "2"}), step())
    with pytest.raises(ApprovalNotUsable, match="approved for other action, parameters or datasets"):
        session.conclude(replace(opened, request=drifted, requester=requester), approved)


def test_every_closed_outcome_raises_one_of_the_core_family(
    session: GateSession, gatekeeper: Gatekeeper, clock: ManualClock
) -> None:
    rejected = session.open(PII, step("k-reject"))
    gatekeeper.reject(rejected.gate.id, actor=actor("carol"), reason="raw e-mails")
    with pytest.raises(GateRejected) as caught:
        session.conclude(rejected, session.wait(rejected))
    assert str(caught.value) == f"gate {rejected.gate.id} was rejected by carol: raw e-mails"
    assert caught.value.decided_by == ("carol",)

    cancelled = session.open(PII, step("k-cancel"))
    gatekeeper.cancel(cancelled.gate.id, actor=actor("alice"))
    with pytest.raises(GateCancelled):
        session.conclude(cancelled, session.wait(cancelled))

    expiring = session.open(PII, step("k-expire"))
    clock.advance(timedelta(days=2))
    gatekeeper.expire_due()
    with pytest.raises(GateExpired, match="expired at"):
        session.conclude(expiring, session.wait(expiring))

    for error in (GateRejected, GateExpired, GateCancelled):
        assert issubclass(error, GateNotApproved)


def test_a_step_that_stops_waiting_withdraws_its_gate(session: GateSession, gatekeeper: Gatekeeper) -> None:
    opened = session.open(PII, step())
    started = time.monotonic()
    still = session.wait(opened, deadline=time.monotonic() + 0.2)
    assert still.status is GateStatus.PENDING
    assert time.monotonic() - started < 5
    with pytest.raises(GateExpired, match=r"was not decided within 0\.2s; the step gave up"):
        session.conclude(opened, still, waited_s=0.2)
    assert gatekeeper.get(opened.gate.id).status is GateStatus.CANCELLED


def test_the_orchestrators_record_of_the_user_wins_over_any_name_the_pipeline_gives() -> None:
    named = RequesterClaim("carol", "argument requester=")
    recorded = RequesterClaim("bob", "Airflow triggering user", recorded_by_orchestrator=True)
    assert resolve_requester([named, recorded]).principal == "bob"
    assert resolve_requester([RequesterClaim("  ", "blank"), named]).principal == "carol"
    with pytest.raises(InvalidInput, match="no requester for the gate"):
        resolve_requester([RequesterClaim("", "nothing")])


class Recorded:
    def __init__(self) -> None:
        self.calls: list[tuple[Sequence[tuple[DatasetRef, str]], RunContext, str, str]] = []

    def record(
        self, accesses: Sequence[tuple[DatasetRef, str]], *, run: RunContext, actor: str, gate_id: str
    ) -> int:
        self.calls.append((accesses, run, actor, gate_id))
        return len(accesses)


def test_lineage_is_tied_to_the_gate_its_run_and_its_requester(session: GateSession) -> None:
    opened = session.open(PII, step())
    recorder = Recorded()
    accesses = [(opened.request.datasets[0], "export")]
    assert session.record_lineage(recorder, opened.request, opened.gate.id, accesses) == 1
    assert session.record_lineage(recorder, opened.request, opened.gate.id, []) == 0
    [(recorded, run, who, gate_id)] = recorder.calls
    assert (recorded, run, who, gate_id) == (accesses, opened.request.run, "alice", opened.gate.id)


def test_the_errors_survive_pickling_with_their_fields(session: GateSession, gatekeeper: Gatekeeper) -> None:
    opened = session.open(PII, step())
    gatekeeper.reject(opened.gate.id, actor=actor("carol"), reason="no")
    error = not_approved(gatekeeper.get(opened.gate.id))
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 — our own bytes, as Prefect round-trips them
    assert type(copy) is GateRejected and isinstance(copy, GatehouseError)
    assert (copy.gate_id, copy.status, copy.reason, copy.decided_by) == (
        opened.gate.id,
        "REJECTED",
        "no",
        ("carol",),
    )


def test_gate_args_takes_only_the_gates_own_arguments() -> None:
    options = {"target": "t", "reason": "r", "mode": "pause", "key": "k", "datasets": ["a/b"]}
    assert gate_args(options) == {"target": "t", "reason": "r", "datasets": ["a/b"]}
    with pytest.raises(InvalidInput, match="invalid dataset"):
        GateSpec.of("export", datasets=["no-namespace"])
