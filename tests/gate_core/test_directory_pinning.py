"""A batch of decisions reads the provisioned directory's change log once (``PinnedSource``), after
every decision in it arrived — so a deactivation or a group change committed before a decision
still governs it, and nothing of one batch's reading outlives that batch.

The source is the real ``CombinedSource`` over an in-memory change log that counts its reads; the
store is each backend's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate_core import (
    CheckpointSigner,
    Gatekeeper,
    GateStatus,
    NotAnApprover,
    SqlStore,
)
from gate_core._errors import DepartedRefused
from gate_core._gatekeeper import DecisionRequest
from gate_core._models import Verdict
from gate_core.identity._provisioned import (
    CombinedSource,
    DirectoryChange,
    ProvisioningConfig,
    ResourceKind,
)
from gate_core.testing import ManualClock, actor, example_directory, example_policy
from tests.gate_core.conftest import pii_export


class CountingLog:
    """The change log, in memory, counting how often it is read."""

    def __init__(self) -> None:
        self.changes: list[DirectoryChange] = []
        self.reads = 0

    def changes_after(self, version: int, *, until: datetime | None = None) -> list[DirectoryChange]:
        self.reads += 1
        return [c for c in self.changes if c.version > version and (until is None or c.at <= until)]

    def add(self, kind: ResourceKind, resource_id: str, resource: dict[str, Any]) -> None:
        version = len(self.changes) + 1
        self.changes.append(DirectoryChange(version, datetime.now(UTC), kind, resource_id, resource, "okta"))

    def user(self, resource_id: str, user_name: str, *, active: bool = True) -> None:
        self.add("User", resource_id, {"id": resource_id, "userName": user_name, "active": active})

    def group(self, resource_id: str, name: str, members: list[str]) -> None:
        self.add("Group", resource_id, {"displayName": name, "members": [{"value": m} for m in members]})


def _two_governors() -> CountingLog:
    """gina and hugo, provisioned by SCIM into data-governance (the pii-export rule's approvers)."""
    log = CountingLog()
    log.user("u1", "gina")
    log.user("u2", "hugo")
    log.group("g1", "data-governance", ["u1", "u2"])
    return log


def _gatekeeper(store: SqlStore, log: CountingLog) -> Gatekeeper:
    source = CombinedSource(example_directory(), log, ProvisioningConfig())
    signer = CheckpointSigner(Ed25519PrivateKey.generate())
    gk = Gatekeeper(store, source, example_policy(), clock=ManualClock(), signer=signer)
    gk.record_configuration("example policy")
    return gk


def test_a_batch_of_decisions_reads_the_change_log_once(store: SqlStore) -> None:
    log = _two_governors()
    gk = _gatekeeper(store, log)
    gates = [gk.open(pii_export(), submitted_by=actor("alice")).id for _ in range(6)]
    deciders = ["gina", "hugo", "bob", "carol", "gina", "hugo"]
    before = log.reads
    outcomes = gk.decide_many(
        [DecisionRequest(g, actor(who), Verdict.APPROVE) for g, who in zip(gates, deciders, strict=True)]
    )
    assert log.reads - before == 1  # it was one per lookup: 12 here, 18 with the actors' e-mails
    assert [getattr(o, "status", o) for o in outcomes] == [GateStatus.APPROVED] * 6
    assert [o.decisions[0].principal_id for o in outcomes if not isinstance(o, Exception)] == deciders
    assert gk.audit.verify().ok


def test_a_deactivation_before_the_batch_refuses_that_person_in_it(store: SqlStore) -> None:
    log = _two_governors()
    gk = _gatekeeper(store, log)
    first, second, third = (gk.open(pii_export(), submitted_by=actor("alice")).id for _ in range(3))
    [approved] = gk.decide_many([DecisionRequest(first, actor("gina"), Verdict.APPROVE)])
    assert getattr(approved, "status", None) is GateStatus.APPROVED

    log.user("u1", "gina", active=False)  # the IdP deactivates gina: committed before the next batch
    outcomes = gk.decide_many(
        [
            DecisionRequest(second, actor("gina"), Verdict.APPROVE),
            DecisionRequest(third, actor("hugo"), Verdict.APPROVE),
        ]
    )
    assert isinstance(outcomes[0], DepartedRefused)
    assert getattr(outcomes[1], "status", None) is GateStatus.APPROVED
    assert gk.get(second).status is GateStatus.PENDING
    refused = [e for e in gk.audit.entries() if e.gate_id == second and e.event == "decision.refused"]
    assert [e.decoded()["payload"]["reason"] for e in refused] == ["principal_departed"]
    assert gk.audit.verify().ok


def test_leaving_the_group_before_the_batch_ends_the_right_to_approve_in_it(store: SqlStore) -> None:
    log = CountingLog()
    log.user("u1", "gina")
    log.group("g1", "data-governance", ["u1"])
    gk = _gatekeeper(store, log)
    gate = gk.open(pii_export(), submitted_by=actor("alice")).id
    log.group("g1", "data-governance", [])  # removed from the approver group, still active
    [outcome] = gk.decide_many([DecisionRequest(gate, actor("gina"), Verdict.APPROVE)])
    assert isinstance(outcome, NotAnApprover)
    assert gk.get(gate).status is GateStatus.PENDING
