"""What a gate needs to know about the Prefect run asking: where, who, and under which key.

current_step()        the flow run (and task run, if inside one) from Prefect's run context
requester_claims()    who the run acts for, each name with its source (the core picks)
idempotency_key()     stable across task retries, flow retries and a suspended run's re-run
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.utilities.urls import url_for

from gate_core import RunContext
from gate_core.session import RequesterClaim, StepRun

ORCHESTRATOR = "prefect"
_MAX_KEY = 500  # GateRequest.idempotency_key's limit


@dataclass(frozen=True)
class Step:
    """The Prefect run a gate is opened from."""

    flow_run: FlowRun
    flow_name: str
    deployment_name: str | None
    task_run: TaskRun | None
    is_async: bool  # the innermost flow or task is a coroutine function

    @property
    def pipeline(self) -> str:
        """``flow-name/deployment-name`` (Prefect's own way of naming a deployment), else the flow."""
        return f"{self.flow_name}/{self.deployment_name}" if self.deployment_name else self.flow_name

    @property
    def step_name(self) -> str:
        return self.task_run.name if self.task_run is not None else "flow"

    @property
    def try_number(self) -> int:
        count = self.task_run.run_count if self.task_run is not None else self.flow_run.run_count
        return max(1, count)

    def run_context(self) -> RunContext:
        return RunContext(
            orchestrator=ORCHESTRATOR,
            pipeline=self.pipeline[:500],
            run_id=str(self.flow_run.id),
            task_id=self.task_run.name[:500] if self.task_run is not None else "",
            try_number=self.try_number,
            url=url_for("flow-run", obj_id=self.flow_run.id),
        )


def current_step() -> Step:
    """The flow run this code runs in (from inside a flow, or a task of it).

    Raises RuntimeError outside a flow run: a gate needs a run to pause and resume."""
    flow_ctx = FlowRunContext.get()
    if flow_ctx is None or flow_ctx.flow_run is None:
        raise RuntimeError(
            "ApprovalGate.require() runs inside a Prefect flow run (in the flow or one of its tasks)"
        )
    task_ctx = TaskRunContext.get()
    flow_run = flow_ctx.flow_run
    flow_name = flow_ctx.flow.name if flow_ctx.flow is not None else str(flow_run.flow_id)
    innermost: Any = task_ctx.task if task_ctx is not None else flow_ctx.flow
    return Step(
        flow_run=flow_run,
        flow_name=flow_name,
        deployment_name=_deployment_name(flow_run),
        task_run=task_ctx.task_run if task_ctx is not None else None,
        is_async=bool(getattr(innermost, "isasync", False)),
    )


def _deployment_name(flow_run: FlowRun) -> str | None:
    if flow_run.deployment_id is None:
        return None
    with get_client(sync_client=True) as client:
        return client.read_deployment(flow_run.deployment_id).name


def requester_claims(
    step: Step, explicit: str | None, parameter: str, default: str | None
) -> tuple[RequesterClaim, ...]:
    """Who the run acts for, strongest first (``gate_core.session.resolve_requester`` picks):
    the user who created the flow run when Prefect recorded one (Prefect Cloud: ``created_by`` of
    type USER), then ``requester=``, the flow-run parameter named ``parameter``, the block's
    ``default_requester``."""
    claims = []
    created_by = step.flow_run.created_by
    if created_by is not None and (created_by.type or "").upper() == "USER" and created_by.display_value:
        claims.append(RequesterClaim(created_by.display_value, "prefect-user", recorded_by_orchestrator=True))
    if explicit:
        claims.append(RequesterClaim(explicit, "argument"))
    value = (step.flow_run.parameters or {}).get(parameter)
    if isinstance(value, str) and value:
        claims.append(RequesterClaim(value, f"flow-run parameter {parameter!r}"))
    if default:
        claims.append(RequesterClaim(default, "block default_requester"))
    return tuple(claims)


def step_run(
    step: Step, claims: tuple[RequesterClaim, ...], action: str, target: str, key: str | None
) -> StepRun:
    return StepRun(step.run_context(), idempotency_key(step, action, target, key), claims)


def idempotency_key(step: Step, action: str, target: str, key: str | None) -> str:
    """``prefect:<flow>:<key>`` for a caller's key (shared by every run of the flow that passes
    it), else ``prefect:<flow run id>:<step>:<action>:<target>``: no attempt number, so a
    retried task, a retried flow and a suspended run's re-run all find the gate they opened."""
    if key:
        text = f"{ORCHESTRATOR}:{step.flow_name}:{key}"
    else:
        text = f"{ORCHESTRATOR}:{step.flow_run.id}:{step.step_name}:{action}:{target}"
    if len(text) <= _MAX_KEY:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{text[: _MAX_KEY - 65]}#{digest}"
