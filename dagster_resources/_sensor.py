"""``approval_sensor``: launch a gated job once its gate is approved — long waits, no run worker held.

The pattern::

    request job ── open_gate(...) ──► AssetObservation on the watched asset (gate id) ── step ends
    approval_sensor, every tick:
        new requests   ← the instance's event log after the cursor (no HTTP)
        their states   ← ONE batched POST /v1/gates/wait {ids, timeout: 0}
        APPROVED       → RunRequest(run_key=gate id, tags: gate id, approvers, rule, requester)
        REJECTED/EXPIRED/CANCELLED → a warning in the tick log + an AssetObservation with the reason
    gated job ── require_approval(...) ──► consumes the launching gate (run tag) without waiting

The cursor (JSON) holds the event-log position, the gates still pending (with their partition)
and the most recent finished ones; ``run_key=gate id`` makes Dagster itself refuse a second run
for a gate, so each approved gate launches exactly one run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from dagster_resources._context import GATE_ID_TAG, REQUESTER_TAG
from dagster_resources._decision import (
    EVENT,
    GATE_ID,
    REQUESTED,
    ApprovalDecision,
    outcome_observation,
)
from dagster_resources._resource import ApprovalGateResource
from gate_core import Gate, GatehouseError, GateStatus, HttpGateClient
from gate_core.session import not_approved

RunConfigFn = Callable[[ApprovalDecision], Mapping[str, Any] | dg.RunConfig]
WAIT_BATCH = 10_000  # ids per POST /v1/gates/wait (the service's limit)
EVENT_PAGE = 1_000  # observation records read per page
MAX_PAGES_PER_TICK = 20  # bounds one tick's event-log reading; the rest waits for the next tick
REMEMBERED = 1_000  # finished gate ids kept in the cursor (run keys dedup beyond that)


@dataclass
class SensorCursor:
    """Where the sensor is: the last event-log record read, pending gates, recently finished ones."""

    after: int | None = None
    pending: dict[str, str] = field(default_factory=dict)  # gate id → partition key ("" = none)
    finished: list[str] = field(default_factory=list)  # oldest first, at most REMEMBERED

    @classmethod
    def parse(cls, text: str | None) -> SensorCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            after=data.get("after"),
            pending=dict(data.get("pending", {})),
            finished=list(data.get("finished", [])),
        )

    def dump(self) -> str:
        return json.dumps(
            {"after": self.after, "pending": self.pending, "finished": self.finished[-REMEMBERED:]},
            separators=(",", ":"),
        )

    def track(self, gate_id: str, partition: str) -> bool:
        if gate_id in self.pending or gate_id in self.finished:
            return False
        self.pending[gate_id] = partition
        return True

    def finish(self, gate_id: str) -> str:
        partition = self.pending.pop(gate_id, "")
        self.finished.append(gate_id)
        del self.finished[:-REMEMBERED]
        return partition


def approval_sensor(
    *,
    job: dg.JobDefinition | dg.UnresolvedAssetJobDefinition,
    asset_key: dg.AssetKey | str,
    name: str | None = None,
    resource_key: str = "approval_gate",
    minimum_interval_seconds: int = 30,
    run_config: RunConfigFn | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    description: str | None = None,
) -> dg.SensorDefinition:
    """A sensor that launches ``job`` once per approved gate requested on ``asset_key``.

    ``open_gate(context, ..., asset_key=asset_key)`` records each request; the launched run
    carries the gate in its tags (``gatehouse/gate_id``, ``gatehouse/approvers``, …) and, if given,
    ``run_config(decision)``; a gate requested in a partitioned run launches that partition.
    Rejected, expired and cancelled gates are logged as warnings and recorded on ``asset_key`` as
    observations with the reason. ``resource_key`` names the ``ApprovalGateResource``."""
    watched = asset_key if isinstance(asset_key, dg.AssetKey) else dg.AssetKey.from_user_string(asset_key)

    @dg.sensor(
        job=job,
        name=name or f"{job.name}_on_approval",
        minimum_interval_seconds=minimum_interval_seconds,
        required_resource_keys={resource_key},
        default_status=default_status,
        description=description
        or f"Launches {job.name} once per approved Gatehouse gate requested on {watched.to_user_string()}.",
    )
    def _approval_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        gates = getattr(context.resources, resource_key)
        if not isinstance(gates, ApprovalGateResource):
            raise dg.DagsterInvariantViolationError(
                f"resource {resource_key!r} is a {type(gates).__name__}, not an ApprovalGateResource"
            )
        return evaluate(context, gates, watched, run_config)

    return _approval_sensor


def evaluate(
    context: dg.SensorEvaluationContext,
    gates: ApprovalGateResource,
    watched: dg.AssetKey,
    run_config: RunConfigFn | None = None,
) -> dg.SensorResult:
    """One tick of ``approval_sensor``: discover new requests, poll every pending gate at once."""
    cursor = SensorCursor.parse(context.cursor)
    discovered = discover(context.instance, watched, cursor)
    if discovered:
        context.log.info(f"gatehouse: {discovered} new gate request(s) on {watched.to_user_string()}")
    if not cursor.pending:
        return dg.SensorResult(skip_reason="no gates awaiting a decision", cursor=cursor.dump())
    try:
        changed, pending = poll(gates.shared_client(), list(cursor.pending))
    except GatehouseError as exc:
        context.log.warning(f"gatehouse: cannot reach the gate service: {exc}")
        return dg.SensorResult(skip_reason=f"gate service unavailable: {exc}", cursor=cursor.dump())

    runs: list[dg.RunRequest] = []
    events: list[dg.AssetObservation | dg.AssetMaterialization | dg.AssetCheckEvaluation] = []
    refused: list[str] = []
    now = datetime.now(UTC)
    for gate in changed:
        if gate.id not in cursor.pending:
            continue
        partition = cursor.finish(gate.id)
        if gate.status is GateStatus.APPROVED and now < gate.expires_at:
            decision = ApprovalDecision.from_gate(gate, gates.public_url)
            runs.append(
                dg.RunRequest(
                    run_key=gate.id,
                    run_config=run_config(decision) if run_config else None,
                    tags=run_tags(decision),
                    partition_key=partition or None,
                )
            )
        elif gate.status is GateStatus.CONSUMED:
            context.log.info(f"gatehouse: gate {gate.id} was already used by a run; not launching another")
        else:
            reason = _why_not(gate)
            context.log.warning(f"gatehouse: not launching {context.sensor_name or 'the job'}: {reason}")
            refused.append(f"{gate.id} {gate.status.value}")
            events.append(
                dg.AssetObservation(
                    asset_key=watched,
                    description=reason,
                    metadata=outcome_observation(gate, gates.public_url),
                    partition=partition or None,
                )
            )
    for gate_id in set(cursor.pending) - set(pending):  # unknown to the service (deleted database?)
        cursor.finish(gate_id)
        context.log.warning(f"gatehouse: gate {gate_id} is unknown to the gate service; no longer watched")

    skip = None
    if not runs:
        skip = f"{len(cursor.pending)} gate(s) awaiting a decision"
        if refused:
            skip += f"; not launched: {', '.join(refused)}"
    return dg.SensorResult(run_requests=runs, asset_events=events, cursor=cursor.dump(), skip_reason=skip)


def discover(instance: dg.DagsterInstance, watched: dg.AssetKey, cursor: SensorCursor) -> int:
    """Read gate requests recorded on ``watched`` since the cursor; returns how many are new."""
    new = 0
    for _ in range(MAX_PAGES_PER_TICK):
        page = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=watched, after_storage_id=cursor.after),
            limit=EVENT_PAGE,
            ascending=True,
        )
        for record in page.records:
            cursor.after = record.storage_id
            observation = record.asset_observation
            if observation is None:
                continue
            metadata = observation.metadata
            if _text(metadata.get(EVENT)) != REQUESTED or GATE_ID not in metadata:
                continue
            new += cursor.track(_text(metadata[GATE_ID]), observation.partition or "")
        if not page.has_more:
            break
    return new


def poll(client: HttpGateClient, gate_ids: Sequence[str]) -> tuple[list[Gate], list[str]]:
    """The gates' states without waiting: one ``POST /v1/gates/wait`` per 10,000 ids."""
    changed: list[Gate] = []
    pending: list[str] = []
    for start in range(0, len(gate_ids), WAIT_BATCH):
        result = client.wait_many(gate_ids[start : start + WAIT_BATCH], timeout=0)
        changed.extend(result.changed)
        pending.extend(result.pending)
    return changed, pending


def run_tags(decision: ApprovalDecision) -> dict[str, str]:
    """Tags of a run launched by an approval: visible in the runs list, read by require_approval."""
    tags = {
        GATE_ID_TAG: decision.gate_id,
        "gatehouse/approvers": ",".join(decision.approvers) or "policy",
        "gatehouse/rule": decision.rule,
        REQUESTER_TAG: decision.requester,
    }
    if decision.decided_at is not None:
        tags["gatehouse/decided_at"] = decision.decided_at.isoformat(timespec="seconds")
    return tags


def _why_not(gate: Gate) -> str:
    if gate.status is GateStatus.APPROVED:
        return f"the approval of gate {gate.id} expired at {gate.expires_at.isoformat(timespec='seconds')}"
    return str(not_approved(gate))


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))
