"""BaseGateOperator: what every gated task does, whatever runs after the gate.

    open_gate(context)      open (or, on a retry, find) this task's gate; PENDING → defer to a
                            GateTrigger; already decided → conclude at once
    resume_gate(context, e) the trigger's typed GateEvent → conclude
    conclude                APPROVED → consume (the service checks the approval covers exactly
                            this request, within its expiry) · REJECTED → fail with the reason,
                            or skip · EXPIRED / CANCELLED / timed out → fail · ERROR → fail

Subclasses decide what passing means: GateOperator returns the decision, the ``@gated`` task
runs its function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException
from pydantic import ValidationError

from airflow_provider import _context, _lineage
from airflow_provider._decision import decision_of
from airflow_provider.exceptions import GateNotPassed, GateRejected, GateUnavailable
from airflow_provider.hooks.gatehouse import DEFAULT_CONN_ID, GatehouseHook
from airflow_provider.triggers.events import GateEvent, GateOutcome, MalformedEvent
from airflow_provider.triggers.gate import DEFAULT_POLL_TIMEOUT, GateTrigger
from gate_core import (
    ApprovalNotUsable,
    DatasetRef,
    Gate,
    GatehouseError,
    GateRequest,
    GateStatus,
    ServiceUnavailable,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

OnReject = Literal["fail", "skip"]
GATE_TEMPLATE_FIELDS: tuple[str, ...] = (
    "target",
    "datasets",
    "environment",
    "reason",
    "parameters",
    "requester",
)
OUTCOME_XCOM_KEY = "gatehouse_outcome"  # the GateEvent payload when a gate did not pass
DEFER_MARGIN = timedelta(seconds=60)  # the service reports expiry itself; Airflow's timeout is a backstop


class BaseGateOperator(BaseOperator):
    """Open a Gatehouse gate for this task and wait for it without holding a worker slot.

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
    :param gatehouse_conn_id: the ``gatehouse`` connection (default falls back to the environment).
    :param poll_timeout: seconds per shared long-poll in the triggerer.
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

    def gate_request(self, context: Context) -> GateRequest:
        """What this task asks, from its arguments and its Airflow context."""
        self._task_datasets = datasets = self.task_datasets()
        try:
            self._request = GateRequest(
                action=self.action,
                target=self.target,
                datasets=datasets.all,
                parameters=self.parameters,
                environment=self.environment,
                requester=_context.requester(self.requester, context, self.owner),
                run=_context.run_context(context),
                idempotency_key=_context.idempotency_key(context),
                reason=self.reason,
            )
        except (ValidationError, ValueError) as exc:
            raise GateNotPassed(f"gatehouse: invalid gate request: {exc}") from None
        return self._request

    # ------------------------------------------------------------------ waiting

    def open_gate(self, context: Context) -> Gate:
        """Open this task's gate (a retry finds the same one); defer while it is PENDING."""
        request = self.gate_request(context)
        try:
            gate = self.hook.client.open(request)
        except ServiceUnavailable as exc:
            raise GateUnavailable(f"gatehouse: {exc}") from exc
        except GatehouseError as exc:
            raise GateNotPassed(f"gatehouse refused the request: {exc}") from exc
        context["ti"].xcom_push(key="gate_id", value=gate.id)
        self.log.info(
            "gatehouse: gate %s is %s (rule %s: %s); review at %s",
            gate.id,
            gate.status.value,
            gate.rule,
            gate.explanation,
            self.hook.console_url(gate.id),
        )
        if gate.status is GateStatus.PENDING:
            self._defer_on(gate)
        return self._conclude(request, GateEvent.from_gate(gate), context)

    def _defer_on(self, gate: Gate) -> NoReturn:
        now = datetime.now(UTC)
        deadline = now + self.timeout if self.timeout is not None else None
        until = min(gate.expires_at, deadline) if deadline is not None else gate.expires_at
        self.log.info(
            "gatehouse: waiting for %d approval(s) from %s until %s",
            gate.approvals_missing(),
            ", ".join(gate.approver_groups) or "the policy's approvers",
            until.isoformat(timespec="seconds"),
        )
        self.defer(
            trigger=GateTrigger(
                gate_id=gate.id,
                gatehouse_conn_id=self.gatehouse_conn_id,
                poll_timeout=self.poll_timeout,
                deadline=deadline.isoformat() if deadline is not None else None,
            ),
            method_name="execute_complete",
            timeout=max(until - now, timedelta(0)) + DEFER_MARGIN,
        )

    def resume_gate(self, context: Context, event: Mapping[str, Any] | None) -> Gate:
        """Conclude from the trigger's event (a typed GateEvent payload)."""
        try:
            parsed = GateEvent.from_payload(event)
        except MalformedEvent as exc:
            raise GateUnavailable(f"gatehouse: the trigger's event cannot be read: {exc}") from None
        return self._conclude(self.gate_request(context), parsed, context)

    def _conclude(self, request: GateRequest, event: GateEvent, context: Context) -> Gate:
        if event.outcome is not GateOutcome.APPROVED:  # why it did not pass, for trigger-ruled tasks
            context["ti"].xcom_push(key=OUTCOME_XCOM_KEY, value=event.to_payload())
        match event.outcome:
            case GateOutcome.APPROVED:
                self._gate = self._consume(request, event.gate_id)
                self.log.info("gatehouse: %s", event.describe())
                return self._gate
            case GateOutcome.REJECTED:
                if self.on_reject == "skip":
                    raise AirflowSkipException(event.describe())
                raise GateRejected(event.describe())
            case GateOutcome.TIMED_OUT:
                self._withdraw(event.gate_id, event.message)
                raise GateNotPassed(event.describe())
            case GateOutcome.EXPIRED | GateOutcome.CANCELLED:
                raise GateNotPassed(event.describe())
            case GateOutcome.ERROR:
                raise GateUnavailable(event.describe())

    def _consume(self, request: GateRequest, gate_id: str) -> Gate:
        try:
            return self.hook.client.consume(gate_id, request.binding_hash(), request.run.try_number)
        except ApprovalNotUsable as exc:
            raise GateNotPassed(f"gatehouse: {exc}") from exc
        except ServiceUnavailable as exc:
            raise GateUnavailable(f"gatehouse: {exc}") from exc

    def _withdraw(self, gate_id: str, why: str) -> None:
        try:
            self.hook.client.cancel(gate_id, reason=f"withdrawn by Airflow: {why}")
        except GatehouseError as exc:  # already decided or unreachable: the task fails either way
            self.log.warning("gatehouse: could not withdraw gate %s: %s", gate_id, exc)

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
            run=request.run,
            actor=request.requester,
            gate_id=gate.id,
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
