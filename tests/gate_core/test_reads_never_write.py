"""Reads never write: ``get`` and ``list`` return what is stored, and an overdue gate moves to
EXPIRED only through an explicit, audited call (``expire``, ``expire_due``, ``poll``) — while no
decision or consumption can use it in the meantime."""

from __future__ import annotations

import pytest

from gate_core import ApprovalNotUsable, Event, GateExpired, GateFilter, Gatekeeper, GateStatus
from gate_core.testing import ManualClock, actor
from tests.gate_core.conftest import pii_export, prod_redeploy


def audit_size(gk: Gatekeeper) -> int:
    return gk.audit.size()


def expiries(gk: Gatekeeper, gate_id: str) -> int:
    return sum(1 for e in gk.audit.entries() if e.gate_id == gate_id and e.event == Event.GATE_EXPIRED)


def test_get_and_list_of_an_overdue_gate_leave_the_audit_log_unchanged(
    gatekeeper: Gatekeeper, clock: ManualClock
) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    clock.advance(hours=4, seconds=1)
    before = audit_size(gatekeeper)
    assert gatekeeper.get(gate.id).status is GateStatus.PENDING
    assert [g.status for g in gatekeeper.list()] == [GateStatus.PENDING]
    assert [g.id for g in gatekeeper.list(GateFilter(status=GateStatus.PENDING))] == [gate.id]
    assert audit_size(gatekeeper) == before
    assert gatekeeper.store.get_gate(gate.id).status is GateStatus.PENDING


def test_an_overdue_gate_read_as_pending_is_still_unusable(
    gatekeeper: Gatekeeper, clock: ManualClock
) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    clock.advance(hours=4, seconds=1)
    assert gatekeeper.get(gate.id).status is GateStatus.PENDING
    with pytest.raises(GateExpired):
        gatekeeper.approve(gate.id, actor=actor("bob"))
    with pytest.raises(ApprovalNotUsable):
        gatekeeper.consume(gate.id, actor=actor("etl-bot"), binding_hash=gate.binding_hash)
    assert gatekeeper.get(gate.id).status is GateStatus.EXPIRED  # the refused decision expired it
    assert expiries(gatekeeper, gate.id) == 1


def test_expire_is_explicit_audited_and_idempotent(gatekeeper: Gatekeeper, clock: ManualClock) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    assert gatekeeper.expire(gate.id).status is GateStatus.PENDING  # not overdue: nothing written
    assert expiries(gatekeeper, gate.id) == 0
    clock.advance(hours=4, seconds=1)
    before = audit_size(gatekeeper)
    expired = gatekeeper.expire(gate.id)
    assert expired.status is GateStatus.EXPIRED
    assert expired.decided_at == clock.now()
    assert expiries(gatekeeper, gate.id) == 1
    assert audit_size(gatekeeper) == before + 1
    assert gatekeeper.expire(gate.id).status is GateStatus.EXPIRED
    assert expiries(gatekeeper, gate.id) == 1
    assert gatekeeper.audit.verify().ok


def test_poll_expires_overdue_gates_and_returns_those_that_left_pending(
    gatekeeper: Gatekeeper, clock: ManualClock
) -> None:
    short = gatekeeper.open(prod_redeploy(), submitted_by=actor("alice"))  # 2 h
    long = gatekeeper.open(pii_export(), submitted_by=actor("alice"))  # 4 h
    seen = gatekeeper.poll([short.id, long.id, "no-such-gate"])
    assert seen.closed == []
    assert sorted(seen.pending) == sorted([short.id, long.id])
    assert set(seen.states) == {short.id, long.id}  # unknown ids are left out

    clock.advance(hours=3)
    seen = gatekeeper.poll([short.id, long.id])
    assert [(g.id, g.status) for g in seen.closed] == [(short.id, GateStatus.EXPIRED)]
    assert seen.pending == [long.id]
    assert seen.states[short.id].status is GateStatus.EXPIRED
    assert expiries(gatekeeper, short.id) == 1
    assert expiries(gatekeeper, long.id) == 0


def test_a_retried_open_finds_its_overdue_gate_expired(gatekeeper: Gatekeeper, clock: ManualClock) -> None:
    request = pii_export(idempotency_key="run-1/export")
    gate = gatekeeper.open(request, submitted_by=actor("alice"))
    clock.advance(hours=4, seconds=1)
    again, created = gatekeeper.open_or_find(request, submitted_by=actor("alice"))
    assert (again.id, again.status, created) == (gate.id, GateStatus.EXPIRED, False)
    assert expiries(gatekeeper, gate.id) == 1


def test_due_reminders_claims_each_gate_once(gatekeeper: Gatekeeper, clock: ManualClock) -> None:
    gate = gatekeeper.open(pii_export(), submitted_by=actor("alice"))
    assert gate.remind_at is not None
    assert gatekeeper.due_reminders() == []
    clock.advance(seconds=(gate.remind_at - clock.now()).total_seconds() + 1)
    assert [g.id for g in gatekeeper.due_reminders()] == [gate.id]
    assert gatekeeper.due_reminders() == []
