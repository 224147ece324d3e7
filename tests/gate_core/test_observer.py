"""The GateObserver port: the core tells observers what happened after each commit — and an
observer that fails never changes an outcome."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gate_core import Gate, Gatekeeper, GateStatus, SelfApprovalRefused, Verdict
from gate_core._errors import ApprovalNotUsable
from gate_core.identity import AuthMethod
from gate_core.testing import ManualClock, actor
from tests.gate_core.conftest import pii_export


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[object, ...]] = []

    def gate_opened(self, gate: Gate) -> None:
        self.seen.append(("opened", gate.rule, gate.status))

    def decision_recorded(self, gate: Gate, verdict: Verdict, via: AuthMethod) -> None:
        self.seen.append(("decided", verdict, via, gate.status))

    def refused(self, action: str, reason: str, via: AuthMethod) -> None:
        self.seen.append(("refused", action, reason))

    def approval_used(self, gate: Gate) -> None:
        assert gate.decided_at is not None and gate.consumed_at is not None
        self.seen.append(("used", gate.consumed_at - gate.decided_at))

    def violation_found(self, gate: Gate, kind: str) -> None:
        self.seen.append(("violation", gate.rule, kind))


class Broken:
    """Every call fails, as a metrics backend that is down would."""

    def gate_opened(self, gate: Gate) -> None:
        raise RuntimeError("metrics backend down")

    def decision_recorded(self, gate: Gate, verdict: Verdict, via: AuthMethod) -> None:
        raise RuntimeError("metrics backend down")

    def refused(self, action: str, reason: str, via: AuthMethod) -> None:
        raise RuntimeError("metrics backend down")

    def approval_used(self, gate: Gate) -> None:
        raise RuntimeError("metrics backend down")

    def violation_found(self, gate: Gate, kind: str) -> None:
        raise RuntimeError("metrics backend down")


def test_observers_hear_each_committed_event_once(gatekeeper: Gatekeeper, clock: ManualClock) -> None:
    recorder = Recorder()
    gatekeeper.add_observer(Broken())  # first, so a failing observer is seen not to stop the next
    gatekeeper.add_observer(recorder)
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    with pytest.raises(SelfApprovalRefused):
        gatekeeper.approve(gate.id, actor=actor("alice"))
    clock.advance(timedelta(minutes=3))
    approved = gatekeeper.approve(gate.id, actor=actor("bob"))
    clock.advance(timedelta(seconds=2))
    for try_number in (1, 2):  # a retried step: one first use
        gatekeeper.consume(
            gate.id, actor=actor("alice"), binding_hash=approved.binding_hash, try_number=try_number
        )
    with pytest.raises(ApprovalNotUsable):
        gatekeeper.consume(gate.id, actor=actor("alice"), binding_hash="0" * 64)
    # an extension (lineage's scope check) found the run went beyond the approval, after the fact
    gatekeeper.violation_found(gatekeeper.get(gate.id), "unapproved_dataset")
    assert recorder.seen == [
        ("opened", "pii-export", GateStatus.PENDING),
        ("refused", "decide", "self_approval"),
        ("decided", Verdict.APPROVE, AuthMethod.LOCAL_OS_USER, GateStatus.APPROVED),
        ("used", timedelta(seconds=2)),
        ("refused", "consume", "approval_not_usable"),
        ("violation", "pii-export", "unapproved_dataset"),
    ]
    assert gatekeeper.get(gate.id).status is GateStatus.CONSUMED
    assert gatekeeper.audit.verify().ok
