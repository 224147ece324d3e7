"""Resuming (or failing) a waiting flow run with its gate's verified decision, via Prefect's API.

resume_with_decision()   PAUSED → RUNNING (paused run) or → Scheduled "Resuming" (suspended
                         run, a worker starts it again); the decision becomes the run input
fail_with_decision()     a suspended run whose gate was not approved: record the decision as
                         its run input and move it to Failed, without starting it again
"""

from __future__ import annotations

import json
import logging
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import OrchestrationResult, SetStateStatus
from prefect.input import keyset_from_paused_state
from prefect.states import Failed

from prefect_blocks._decision import GateDecision, gate_id_from_pause_key

log = logging.getLogger("gatehouse.prefect")


def waiting_on(flow_run: FlowRun) -> str | None:
    """The gate a PAUSED (or Suspended) flow run waits on, if Gatehouse paused it."""
    state = flow_run.state
    if state is None or not state.is_paused():
        return None
    return gate_id_from_pause_key(state.state_details.pause_key)


def is_suspended(flow_run: FlowRun) -> bool:
    """Suspended (its process exited; a resume reschedules it) rather than paused in place."""
    state = flow_run.state
    return bool(state is not None and state.is_paused() and state.state_details.pause_reschedule)


def resume_with_decision(prefect: SyncPrefectClient, flow_run_id: UUID, decision: GateDecision) -> bool:
    """Resume the run with ``decision`` as its input. True if Prefect accepted the resume; False
    if the run was no longer paused (someone else resumed, failed or cancelled it first)."""
    result = prefect.resume_flow_run(flow_run_id, run_input=decision.run_input())
    if result.status is SetStateStatus.ACCEPT:
        log.info("resumed flow run %s: gate %s %s", flow_run_id, decision.gate_id, decision.status)
        return True
    reason = getattr(result.details, "reason", "") or ""
    if result.status is SetStateStatus.ABORT:  # "Cannot resume a flow run that is not paused."
        log.info("flow run %s was not paused any more (%s)", flow_run_id, reason)
        return False
    raise RuntimeError(f"Prefect refused to resume flow run {flow_run_id}: {reason or result.status.value}")


def fail_with_decision(
    prefect: SyncPrefectClient, flow_run: FlowRun, decision: GateDecision, reason: str
) -> None:
    """Store ``decision`` as the suspended run's input (who rejected it, and why) and fail it."""
    if flow_run.state is None:
        return
    keyset = keyset_from_paused_state(flow_run.state)
    prefect.create_flow_run_input(flow_run.id, keyset["response"], json.dumps(decision.run_input()))
    result: OrchestrationResult[None] = prefect.set_flow_run_state(flow_run.id, Failed(message=reason))
    if result.status is not SetStateStatus.ACCEPT:
        log.warning("Prefect would not fail flow run %s: %s", flow_run.id, result.details)
    else:
        log.info("failed flow run %s: %s", flow_run.id, reason)
