"""BaseGateOperator: what every gated task does, whatever runs after the gate.

    open_gate(context)      open (or, on a retry, find) this task's gate; PENDING → defer to a
                            GateTrigger (or, ``deferrable=False``, wait for it in this worker);
                            already decided → conclude at once
    resume_gate(context, e) the trigger's typed GateEvent → conclude
    conclude                APPROVED → consume (the service checks the approval covers exactly
                            this request, within its expiry) · REJECTED → fail with the reason,
                            or skip · EXPIRED / CANCELLED / timed out → fail · ERROR → fail

Subclasses decide what passing means: GateOperator returns the decision, the ``@gated`` task
runs its function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from airflow.sdk import BaseOperator

from airflow_provider import _context, _lineage
from airflow_provider._decision import decision_of
from airflow_provider.exceptions import GateUnavailable, OnReject, stop
from airflow_provider.hooks.gatehouse import DEFAULT_CONN_ID, GatehouseHook
from airflow_provider.triggers.events import GateEvent, GateOutcome, MalformedEvent
from airflow_provider.triggers.gate import DEFAULT_POLL_TIMEOUT, GateTrigger, wait_in_worker
from gate_core import DatasetRef, Gate, GatehouseError, GateRequest, GateStatus
from gate_core.session import GateSession, GateSpec, RequesterClaim, StepRun

if TYPE_CHECKING:
    from airflow.sdk import Context

GATE_TEMPLATE_FIELDS: tuple[str, ...] = (
    "target",
    "datasets",
    "environment",
    "reason",
    "parameters",
    "requester",
)
OUTCOME_XCOM_KEY = "gatehouse_outcome"  # the GateEvent payload when a gate did not pass
# The service reports a gate's expiry itself; a wait that outlives it by this much (Airflow's
# deferral timeout, or the in-worker wait's own) is a backstop that fails the task, never passes it.
DEFER_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class _WaitPlan:
    """How long one wait for a PENDING gate may last, deferred or in the worker."""

    deadline: str | None  # the task's own ``timeout`` (ISO): then TIMED_OUT, and the gate withdrawn
    backstop: timedelta  # past the gate's expiry (or the deadline) by DEFER_MARGIN: then the task fails


class BaseGateOperator(BaseOperator):
    """Open a Gatehouse gate for this task and wait for it, by default without holding a worker slot.

    :param action: what the step does (``export``, ``redeploy``…); policy rules match on it.
    :param target: what it acts on (``s3://exports/customers.csv``, ``models/churn``). Templated.
    :param datasets: ``"NAMESPACE/NAME[#tag,tag]"`` strings (or DatasetRefs) the step touches,
        besides the task's ``inlets``/``outlets``. Templated.
    :param environment: e.g. ``prod``; policy rules match on it. Templated.
    :param reason: why, for the approver. Templated.
    :param parameters: what else the approval is bound to (a model version…). Templated.
    :param requester: who asks; default the run's triggering user, else the DAG owner. Templated.
    :param on_reject: ``"fail"`` (default) or ``"skip"`` (the task and what depends on it skip).
    :param timeout: give up waiting after this long: the gate is withdrawn and the task fails.
    :param deferrable: ``True`` (default): defer to a GateTrigger, holding no worker slot while
        people decide — thousands of waiting gates share one long-poll in the triggerer.
        ``False``: wait inside this task with the same long-poll and conclude the moment the
        decision lands, without the triggerer's report, the scheduler pass that queues the resumed
        task and that task's start-up. It holds a worker slot for the whole wait: for short waits,
        where a slot is cheap and resuming fast matters. Both end the same way (consume, reject,
        expiry, ``timeout`` withdraws the gate); a killed worker leaves the gate for the retry.
    :param gatehouse_conn_id: the ``gatehouse`` connection (default falls back to the environment).
    :param poll_timeout: seconds each long-poll stays open (shared by all gates in the triggerer).
    :param record_lineage: record the step's dataset accesses under the gate when it passes.
    """

    template_fields: Sequence[str] = GATE_TEMPLATE_FIELDS
    template_fields_renderers: ClassVar[dict[str, str]] = {"parameters": "json", "datasets": "py"}
    ui_color = "#f4d35e"

    def __init__(
        self,
        *,
        action: str,
        target: str = "",
        datasets: Sequence[str | DatasetRef] = (),
        environment: str = "",
        reason: str = "",
        parameters: Mapping[str, Any] | None = None,
        requester: str | None = None,
        on_reject: OnReject = "fail",
        timeout: timedelta | None = None,
        deferrable: bool = True,
        gatehouse_conn_id: str | None = DEFAULT_CONN_ID,
        poll_timeout: float = DEFAULT_POLL_TIMEOUT,
        record_lineage: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_reject not in ("fail", "skip"):
            raise ValueError(f"on_reject must be 'fail' or 'skip', not {on_reject!r}")
        self.action = action
        self.target = target
        self.datasets = list(datasets)
        self.environment = environment
        self.reason = reason
        self.parameters = dict(parameters or {})
        self.requester = requester
        self.on_reject: OnReject = on_reject
        self.timeout = timeout
        self.deferrable = deferrable
        self.gatehouse_conn_id = gatehouse_conn_id
        self.poll_timeout = poll_timeout
        self.record_lineage = record_lineage
        self._gate: Gate | None = None
        self._request: GateRequest | None = None
        self._task_datasets: _context.TaskDatasets | None = None

    @cached_property
    def hook(self) -> GatehouseHook:
        return GatehouseHook(self.gatehouse_conn_id)

    # ------------------------------------------------------------------ the request

    def task_datasets(self) -> _context.TaskDatasets:
        """This task's datasets by role, with the lineage catalog's tags."""
        found = _context.task_datasets(self.datasets, self.inlets, self.outlets)
        return _context.TaskDatasets(
            inputs=tuple(map(_lineage.classify, found.inputs)),
            outputs=tuple(map(_lineage.classify, found.outputs)),
            declared=tuple(map(_lineage.classify, found.declared)),
        )

    def step_run(self, context: Context) -> StepRun:
        """Where this task runs and who it acts for, from its Airflow context."""
        claims = _context.requester_claims(self.requester, context, self.owner)
        return StepRun(_context.run_context(context), _context.idempotency_key(context), claims)

    def gate_request(self, context: Context) -> GateRequest:
        """What this task asks, from its arguments and its Airflow context."""
        return self._ask(context)[0]

    def _ask(self, context: Context) -> tuple[GateRequest, RequesterClaim]:
        self._task_datasets = datasets = self.task_datasets()
        spec = GateSpec(
            action=self.action,
            target=self.target,
            datasets=datasets.all,
            environment=self.environment,
            parameters=self.parameters,
            reason=self.reason,
        )
        try:
            self._request, requester = GateSession.request(spec, self.step_run(context))
        except GatehouseError as exc:
            stop(exc)
        return self._request, requester

    @property
    def session(self) -> GateSession:
        return GateSession(self.hook.client)

    # ------------------------------------------------------------------ waiting

    def open_gate(self, context: Context) -> Gate:
        """Open this task's gate (a retry finds the same one); wait while it is PENDING."""
        request, requester = self._ask(context)
        try:
            opened = self.session.adopt(request, self.hook.client.open(request), requester)
        except GatehouseError as exc:
            stop(exc)
        gate = opened.gate
        context["ti"].xcom_push(key="gate_id", value=gate.id)
        self.log.info(
            "gatehouse: gate %s is %s for %s (from %s; rule %s: %s); review at %s",
            gate.id,
            gate.status.value,
            request.requester,
            opened.requester.source,
            gate.rule,
            gate.explanation,
            self.hook.console_url(gate.id),
        )
        if gate.status is not GateStatus.PENDING:
            return self._conclude(request, GateEvent.from_gate(gate), context)
        if self.deferrable:
            self._defer_on(gate)
        return self._conclude(request, self._wait_in_worker(gate), context)

    def _plan_wait(self, gate: Gate) -> _WaitPlan:
        now = datetime.now(UTC)
        deadline = now + self.timeout if self.timeout is not None else None
        until = min(gate.expires_at, deadline) if deadline is not None else gate.expires_at
        self.log.info(
            "gatehouse: waiting %s for gate %s: %d approval(s) from %s until %s",
            "in the triggerer" if self.deferrable else "in this worker",
            gate.id,
            gate.approvals_missing(),
            ", ".join(gate.approver_groups) or "the policy's approvers",
            until.isoformat(timespec="seconds"),
        )
        return _WaitPlan(
            deadline=deadline.isoformat() if deadline is not None else None,
            backstop=max(until - now, timedelta(0)) + DEFER_MARGIN,
        )

    def _defer_on(self, gate: Gate) -> NoReturn:
        plan = self._plan_wait(gate)
        self.defer(
            trigger=GateTrigger(
                gate_id=gate.id,
                gatehouse_conn_id=self.gatehouse_conn_id,
                poll_timeout=self.poll_timeout,
                deadline=plan.deadline,
            ),
            method_name="execute_complete",
            timeout=plan.backstop,
        )

    def _wait_in_worker(self, gate: Gate) -> GateEvent:
        """The trigger's wait (``wait_for_decision``), run in this task: same event, same retries."""
        plan = self._plan_wait(gate)
        if self.record_lineage:
            _lineage.prepare(self.hook.credentials)
        return wait_in_worker(
            self.hook.credentials,
            gate.id,
            deadline=plan.deadline,
            give_up_after=plan.backstop.total_seconds(),
            poll_timeout=self.poll_timeout,
        )

    def resume_gate(self, context: Context, event: Mapping[str, Any] | None) -> Gate:
        """Conclude from the trigger's event (a typed GateEvent payload). The request is computed
        again from this try's context: the approval is consumed only if it covers exactly that."""
        try:
            parsed = GateEvent.from_payload(event)
        except MalformedEvent as exc:
            raise GateUnavailable(f"gatehouse: the trigger's event cannot be read: {exc}") from None
        return self._conclude(self.gate_request(context), parsed, context)

    def _conclude(self, request: GateRequest, event: GateEvent, context: Context) -> Gate:
        if event.outcome is not GateOutcome.APPROVED:  # why it did not pass, for trigger-ruled tasks
            context["ti"].xcom_push(key=OUTCOME_XCOM_KEY, value=event.to_payload())
            if event.outcome is GateOutcome.TIMED_OUT:
                self.session.withdraw(event.gate_id, f"withdrawn by Airflow: {event.message}")
            stop(event.error(), self.on_reject)
        try:
            self._gate = self.session.consume(request, event.gate_id)
        except GatehouseError as exc:
            stop(exc)
        self.log.info("gatehouse: %s", event.describe())
        return self._gate

    # ------------------------------------------------------------------ after the gate

    def decision(self, gate: Gate) -> dict[str, Any]:
        """The decision as pushed to XCom: gate_id, status, rule, approvers, comments, decided_at…"""
        return decision_of(gate, self.hook.console_url(gate.id))

    def record_gate_lineage(self, gate: Gate) -> None:
        """The step's datasets as access events under ``gate`` (a failure fails the task)."""
        request = self._request
        if not self.record_lineage or request is None:
            return
        count = _lineage.record(
            self._task_datasets or self.task_datasets(),
            self.action,
            request,
            gate,
            credentials=self.hook.credentials,
        )
        if count:
            self.log.info("gatehouse: recorded %d dataset access(es) under gate %s", count, gate.id)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs, outputs and the ``gatehouse_approval`` run facet for Airflow's OpenLineage provider."""
        gate = self._gate
        if gate is None:
            gate_id = task_instance.xcom_pull(task_ids=self.task_id, key="gate_id")
            gate = self.hook.client.get(str(gate_id)) if gate_id else None
        datasets = self._task_datasets or _context.task_datasets(self.datasets, self.inlets, self.outlets)
        return _lineage.operator_lineage(datasets, self.action, gate)
