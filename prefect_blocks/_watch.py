"""watch_and_resume: the resumer operators run next to the gate service, for suspended runs.

A suspended run has no live process to wait for its gate: its infrastructure was released and a
worker starts it again only once it is resumed. The watcher finds every PAUSED flow run whose
pause key names a Gatehouse gate (``gatehouse-<gate id>``), long-polls all of those gates with
one batched call to the gate service, and the moment one is decided:

- approved → resumes the run through Prefect's API with the verified GateDecision as run input
  (a suspended run is rescheduled; its re-run finds the approved gate and continues past it);
- rejected, expired or cancelled → a suspended run gets the decision as run input and is moved
  to Failed with the reason, without being started again; a run paused in place is resumed with
  the decision and fails itself.

It is stateless (Prefect's own run states say what is waiting), so several can run at once and a
restart loses nothing. It also covers paused runs whose own resumer thread died with them.

    python -m prefect_blocks watch --block gatehouse       # or GATEHOUSE_URL + GATEHOUSE_TOKEN
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import TYPE_CHECKING

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import FlowRun, StateType

from gate_core import Gate, GateClient, ServiceUnavailable
from gate_core.session import not_approved
from prefect_blocks._decision import GateDecision
from prefect_blocks._resume import fail_with_decision, is_suspended, resume_with_decision, waiting_on

if TYPE_CHECKING:
    from prefect_blocks._block import ApprovalGate

log = logging.getLogger("gatehouse.prefect.watch")

PAGE = 200


def watch_and_resume(
    gate: ApprovalGate,
    *,
    poll_seconds: float = 5.0,
    stop: threading.Event | None = None,
    once: bool = False,
) -> int:
    """Resume (or fail) flow runs waiting on Gatehouse gates as their gates are decided.

    Runs until ``stop`` is set; ``once`` makes a single pass without waiting (cron, tests).
    ``poll_seconds`` bounds how long a newly paused run goes unnoticed: decisions on runs already
    being watched are acted on the moment they land. Returns how many runs it resumed or failed."""
    stop = stop or threading.Event()
    settled = 0
    client = gate.get_client()
    try:
        with get_client(sync_client=True) as prefect:
            while not stop.is_set():
                settled += _cycle(prefect, client, gate.url, 0.0 if once else poll_seconds, stop)
                if once:
                    break
    finally:
        client.close()
    return settled


def _cycle(
    prefect: SyncPrefectClient, client: GateClient, service_url: str, wait_s: float, stop: threading.Event
) -> int:
    waiting = waiting_runs(prefect)
    if not waiting:
        stop.wait(wait_s)
        return 0
    try:
        result = client.wait_many(list(waiting), timeout=wait_s)
    except ServiceUnavailable as exc:
        log.warning("gate service unavailable: %s", exc)
        stop.wait(max(wait_s, 1.0))
        return 0
    settled = 0
    for decided in result.changed:
        for run in waiting.get(decided.id, ()):
            settled += _settle(prefect, run, decided, service_url)
    return settled


def waiting_runs(prefect: SyncPrefectClient) -> dict[str, list[FlowRun]]:
    """Every PAUSED flow run (paused or suspended) that waits on a Gatehouse gate, by gate id."""
    found: dict[str, list[FlowRun]] = defaultdict(list)
    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    offset = 0
    while True:
        page = prefect.read_flow_runs(flow_run_filter=paused, limit=PAGE, offset=offset)
        for run in page:
            gate_id = waiting_on(run)
            if gate_id is not None:
                found[gate_id].append(run)
        if len(page) < PAGE:
            return dict(found)
        offset += PAGE


def _settle(prefect: SyncPrefectClient, listed: FlowRun, gate: Gate, service_url: str) -> int:
    try:
        run = prefect.read_flow_run(listed.id)  # act on its state now, not as it was listed
        if waiting_on(run) != gate.id:
            return 0
        decision = GateDecision.from_gate(gate, service_url)
        if decision.approved or not is_suspended(run):
            return int(resume_with_decision(prefect, run.id, decision))
        fail_with_decision(prefect, run, decision, str(not_approved(gate)))
        return 1
    except Exception:  # one bad run must not stop the watcher for every other one
        log.exception("could not settle flow run %s on gate %s", listed.id, gate.id)
        return 0
