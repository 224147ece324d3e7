"""GateSensor: wait for a gate opened elsewhere (by the CLI, another DAG, a person).

    GateSensor(task_id="wait_for_approval", gate_id="{{ ti.xcom_pull('open_gate', key='gate_id') }}")

Deferrable by default (the shared GateTrigger, no worker slot held); ``deferrable=False`` with
``mode="reschedule"`` pokes with one ``get`` per ``poke_interval`` instead. Approved → the
sensor succeeds and pushes the decision (as GateOperator does). Rejected → fails with the reason
(or skips, ``on_reject="skip"``); expired or cancelled → fails. The sensor only watches: the step
that opened the gate is the one that consumes its approval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider._decision import decision_of
from airflow_provider.exceptions import GateUnavailable, OnReject, stop
from airflow_provider.hooks.gatehouse import DEFAULT_CONN_ID, GatehouseHook
from airflow_provider.triggers.events import GateEvent, GateOutcome, MalformedEvent
from airflow_provider.triggers.gate import DEFAULT_POLL_TIMEOUT, GateTrigger
from gate_core import Gate, GatehouseError, GateStatus

if TYPE_CHECKING:
    from airflow.sdk import Context


class GateSensor(BaseSensorOperator):
    """Succeed when gate ``gate_id`` is approved.

    :param gate_id: the gate to watch. Templated.
    :param on_reject: ``"fail"`` (default) or ``"skip"``.
    :param deferrable: wait in the triggerer (default); False pokes in ``mode``.
    :param gatehouse_conn_id: the ``gatehouse`` connection (default falls back to the environment).
    """

    template_fields: Sequence[str] = ("gate_id",)
    ui_color = "#f4d35e"

    def __init__(
        self,
        *,
        gate_id: str,
        on_reject: OnReject = "fail",
        deferrable: bool = True,
        gatehouse_conn_id: str | None = DEFAULT_CONN_ID,
        poll_timeout: float = DEFAULT_POLL_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gate_id = gate_id
        self.on_reject = on_reject
        self.deferrable = deferrable
        self.gatehouse_conn_id = gatehouse_conn_id
        self.poll_timeout = poll_timeout

    @cached_property
    def hook(self) -> GatehouseHook:
        return GatehouseHook(self.gatehouse_conn_id)

    def _get(self) -> Gate:
        try:
            return self.hook.client.get(self.gate_id)
        except GatehouseError as exc:
            stop(exc)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        gate = self._get()
        if gate.status is GateStatus.PENDING:
            self.defer(
                trigger=GateTrigger(
                    gate_id=gate.id, gatehouse_conn_id=self.gatehouse_conn_id, poll_timeout=self.poll_timeout
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )
        return self._passed(GateEvent.from_gate(gate), gate)

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> dict[str, Any]:
        try:
            parsed = GateEvent.from_payload(event)
        except MalformedEvent as exc:
            raise GateUnavailable(f"gatehouse: the trigger's event cannot be read: {exc}") from None
        return self._passed(parsed, None)

    def poke(self, context: Context) -> PokeReturnValue:
        gate = self._get()
        if gate.status is GateStatus.PENDING:
            self.log.info("gatehouse: gate %s still needs %d approval(s)", gate.id, gate.approvals_missing())
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._passed(GateEvent.from_gate(gate), gate))

    def _passed(self, event: GateEvent, gate: Gate | None) -> dict[str, Any]:
        if event.outcome is not GateOutcome.APPROVED:
            stop(event.error(), self.on_reject)
        gate = gate or self._get()
        self.log.info("gatehouse: %s", event.describe())
        return decision_of(gate, self.hook.console_url(gate.id))
