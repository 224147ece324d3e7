"""``ApprovalGateResource``: approval gates inside Dagster ops and assets.

Short waits block the step on the gate service's long-poll (``require_approval``); long waits
open the gate and end the step (``open_gate``), and ``approval_sensor`` launches the gated job
once the gate is approved, so nothing holds a run worker in the meantime.

This module keeps ``from __future__ import annotations``: Dagster reads a resource's config
fields through pydantic, which resolves the string annotations against this module's globals
(``str``, ``float | None``, ``bool`` — all importable here). Modules that declare *ops or assets*
with typed resource or config parameters cannot use it (Dagster inspects those annotations
itself and refuses strings), which is why the example and the tests go without.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import dagster as dg
from pydantic import Field, JsonValue, PrivateAttr

import lineage
from dagster_resources._context import GATE_ID_TAG, StepContext, StepIdentity
from dagster_resources._decision import (
    ApprovalDecision,
    failure_metadata,
    gate_failure,
    request_observation,
)
from dagster_resources._lineage import StepLineage, classified, operation_for, table_metadata
from dagster_resources._step import (
    Deadline,
    approved,
    attach,
    failure,
    observed_key,
    token_principal,
    waiting,
)
from gate_core import DatasetRef, Gate, GatehouseError, GateRequest, GateStatus, HttpGateClient

if TYPE_CHECKING:
    import pandas as pd

_T = TypeVar("_T")


# Unparametrised like Dagster's own resources: the resource value is the resource itself, and
# subscripting the pydantic generic at runtime would make Dagster see a different class.
class ApprovalGateResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Human approval gates for ops and assets, through the Gatehouse service.

    ::

        approval_gate = ApprovalGateResource(
            url=EnvVar("GATEHOUSE_URL"), token=EnvVar("GATEHOUSE_TOKEN")
        )

        @asset
        def customers_export(context: AssetExecutionContext, approval_gate: ApprovalGateResource):
            decision = approval_gate.require_approval(
                context, action="export", target="s3://exports/customers.csv",
                datasets=["warehouse/customers#pii"], reason="quarterly churn report",
            )
            ...
    """

    url: str = Field(description="Base URL of the Gatehouse service, e.g. https://gatehouse.example.com.")
    token: str = Field(
        description=(
            "The pipeline's API token (scope `request`: it opens and waits on gates, never decides). "
            'Pass EnvVar("GATEHOUSE_TOKEN") so it is read at run time and never stored.'
        )
    )
    wait_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Longest a step waits for a decision. None (the default) waits until the gate expires "
            "(the policy rule's expiry). A step that stops waiting fails; re-executing the run finds "
            "the same gate, still open."
        ),
    )
    poll_seconds: float = Field(
        default=25.0,
        gt=0,
        le=600,
        description=(
            "Length of one long-poll request. The step wakes the moment a decision lands whatever "
            "this is; keep it under your proxies' idle timeout."
        ),
    )
    request_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Timeout of one ordinary HTTP request."
    )
    requester: str | None = Field(
        default=None,
        description=(
            "The principal gates are requested for when the run has no launching-user tag "
            "(dagster/user, set by the UI and Dagster+). None: the token's own principal."
        ),
    )
    console_url: str | None = Field(
        default=None, description="Public URL of the Gatehouse console for links in metadata; default `url`."
    )
    dagster_url: str | None = Field(
        default=None, description="Base URL of the Dagster UI, so approvers can open the run from the gate."
    )
    record_lineage: bool = Field(
        default=True,
        description="Record the datasets an approved step touches as access events (lineage).",
    )

    _principal: str | None = PrivateAttr(default=None)
    _client: HttpGateClient | None = PrivateAttr(default=None)
    _sink: lineage.HttpSink | None = PrivateAttr(default=None)
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    # ------------------------------------------------------------------ clients

    def get_client(self) -> HttpGateClient:
        """A new client for the gate service; the caller closes it."""
        return HttpGateClient(self.url, self.token, timeout=self.request_timeout_seconds)

    def shared_client(self) -> HttpGateClient:
        """The client this resource's own calls share (kept-alive connections; a new client costs
        an SSL context, ~0.1 s), closed when Dagster tears the resource down."""
        with self._client_lock:
            if self._client is None:
                self._client = self.get_client()
            return self._client

    def lineage_sink(self) -> lineage.HttpSink:
        """Where this resource records access events: the gate service, with the same token."""
        with self._client_lock:
            if self._sink is None:
                self._sink = lineage.HttpSink(self.url, self.token, timeout=self.request_timeout_seconds)
            return self._sink

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._sink is not None:
                self._sink.close()
                self._sink = None

    @property
    def public_url(self) -> str:
        return self.console_url or self.url

    # ------------------------------------------------------------------ short waits

    def require_approval(
        self,
        context: StepContext,
        *,
        action: str,
        target: str = "",
        datasets: Iterable[str | DatasetRef] = (),
        reason: str = "",
        environment: str = "",
        parameters: Mapping[str, JsonValue] | None = None,
        requester: str | None = None,
        key: str | None = None,
        operation: str | None = None,
    ) -> ApprovalDecision:
        """Open a gate for this step (or find the one an earlier attempt opened), wait for the
        decision, and return it once approved.

        The approval is consumed (bound to exactly this action, target, environment, parameters
        and datasets) and shown on the step: output metadata, which for an asset is its
        materialization's. Raises ``dagster.Failure`` with the reason and the gate's metadata on
        reject, expiry or cancellation, and when the service cannot be asked (fail closed).
        ``key`` tells apart several gates in one step; ``operation`` is the lineage operation
        for ``datasets`` (default: the action when it names one — export, write, delete — else
        read).
        """
        step = StepIdentity.of(context)
        refs = self._datasets(datasets)
        client = self.shared_client()
        try:
            request = self._request(
                client, step, action, target, refs, reason, environment, parameters, requester, key
            )
            gate = self._launching_gate(client, step, request, context) or client.open(request)
            if gate.status is GateStatus.PENDING:
                context.log.info(waiting(gate, self.public_url))
                gate = self._wait(client, gate)
            if gate.status not in (GateStatus.APPROVED, GateStatus.CONSUMED):
                raise gate_failure(gate, self.public_url)
            gate = client.consume(gate.id, request.binding_hash(), try_number=step.retry_number + 1)
        except GatehouseError as exc:
            raise failure(exc) from exc
        decision = ApprovalDecision.from_gate(gate, self.public_url)
        attach(context, decision.metadata())
        context.log.info(approved(decision))
        if self.record_lineage and gate.request.datasets:
            events = self._lineage(step, gate.request.requester, gate.id)
            self._record(lambda: events.datasets(gate.request.datasets, operation_for(operation or action)))
        return decision

    def _wait(self, client: HttpGateClient, gate: Gate) -> Gate:
        """Long-poll until the gate leaves PENDING. The service answers the moment a decision
        lands and ends a wait at the gate's expiry with the gate EXPIRED."""
        clock = Deadline(self.wait_timeout_seconds)
        while gate.status is GateStatus.PENDING:
            remaining = clock.remaining()
            if remaining is not None and remaining <= 0:
                raise dg.Failure(
                    description=(
                        f"gate {gate.id} is still waiting for a decision after "
                        f"{self.wait_timeout_seconds:g}s "
                        f"(it stays open until {gate.expires_at.isoformat(timespec='seconds')}); "
                        "re-execute the run to keep waiting on the same gate"
                    ),
                    metadata=failure_metadata(gate, self.public_url),
                )
            chunk = self.poll_seconds if remaining is None else min(self.poll_seconds, remaining)
            gate = client.wait(gate.id, timeout=max(chunk, 0.0))
        return gate

    # ------------------------------------------------------------------ long waits

    def open_gate(
        self,
        context: StepContext,
        *,
        action: str,
        target: str = "",
        datasets: Iterable[str | DatasetRef] = (),
        reason: str = "",
        environment: str = "",
        parameters: Mapping[str, JsonValue] | None = None,
        requester: str | None = None,
        key: str | None = None,
        asset_key: dg.AssetKey | str | None = None,
    ) -> Gate:
        """Open a gate and return at once: the long-wait pattern.

        The request is recorded as an ``AssetObservation`` on ``asset_key`` (default: the asset
        this step materializes), which ``approval_sensor`` watches: once the gate is approved the
        sensor launches the gated job, whose ``require_approval`` with the same request consumes
        this gate without waiting. Nothing holds a run worker while people decide."""
        step = StepIdentity.of(context)
        observed = observed_key(context, asset_key)
        refs = self._datasets(datasets)
        client = self.shared_client()
        try:
            request = self._request(
                client, step, action, target, refs, reason, environment, parameters, requester, key
            )
            gate = client.open(request)
        except GatehouseError as exc:
            raise failure(exc) from exc
        context.log_event(
            dg.AssetObservation(
                asset_key=observed,
                description=(
                    f"approval requested: gate {gate.id} ({gate.status.value}, rule {gate.rule!r}); "
                    "approval_sensor launches the gated job once it is approved"
                ),
                metadata=request_observation(gate, self.public_url),
                partition=step.partition_key,
            )
        )
        return gate

    # ------------------------------------------------------------------ lineage

    def track_dataframe(
        self,
        context: StepContext,
        df: pd.DataFrame,
        *,
        dataset: str | DatasetRef,
        operation: str,
        decision: ApprovalDecision | None = None,
        requester: str | None = None,
        fingerprint: bool = False,
    ) -> dict[str, dg.MetadataValue]:
        """Record this step's access of ``df`` (schema, rows, bytes, classification tags — never
        values) and return Dagster table metadata for it: ``dagster/column_schema`` with column
        tags and ``dagster/row_count``. Return it from an asset (``MaterializeResult(metadata=…)``
        or ``context.add_output_metadata``) and the Dagster UI shows the schema and row count."""
        step = StepIdentity.of(context)
        actor = decision.requester if decision else self._actor(step, requester)
        events = self._lineage(step, actor, decision.gate_id if decision else None)
        event = self._record(
            lambda: events.dataframe(df, dataset=dataset, operation=operation, fingerprint=fingerprint)
        )
        return table_metadata(event)

    @contextmanager
    def lineage_scope(
        self, context: StepContext, decision: ApprovalDecision | None = None, requester: str | None = None
    ) -> Iterator[None]:
        """Around your own ``lineage.record_access``/``track_dataframe`` calls in a step: their
        events carry this Dagster run and step, the person it runs for and the gate."""
        step = StepIdentity.of(context)
        actor = decision.requester if decision else self._actor(step, requester)
        with self._lineage(step, actor, decision.gate_id if decision else None).scope():
            yield

    # ------------------------------------------------------------------ internals

    def _lineage(self, step: StepIdentity, actor: str, gate_id: str | None) -> StepLineage:
        return StepLineage(self.lineage_sink(), step.run_context(self.dagster_url), actor, gate_id)

    def _record(self, record: Callable[[], _T]) -> _T:
        try:
            return record()
        except GatehouseError as exc:  # lineage errors are GatehouseErrors too: fail closed
            raise dg.Failure(description=f"could not record lineage: {exc}", allow_retries=True) from exc

    @staticmethod
    def _datasets(datasets: Iterable[str | DatasetRef]) -> tuple[DatasetRef, ...]:
        try:
            return classified(datasets)
        except (GatehouseError, ValueError) as exc:
            raise dg.Failure(description=f"invalid datasets for a gate: {exc}", allow_retries=False) from exc

    def _request(
        self,
        client: HttpGateClient,
        step: StepIdentity,
        action: str,
        target: str,
        datasets: tuple[DatasetRef, ...],
        reason: str,
        environment: str,
        parameters: Mapping[str, JsonValue] | None,
        requester: str | None,
        key: str | None,
    ) -> GateRequest:
        who = requester or step.launched_by or self.requester or self._token_principal(client)
        try:
            return GateRequest(
                action=action,
                target=target,
                datasets=datasets,
                parameters=dict(parameters or {}),
                environment=environment,
                requester=who,
                run=step.run_context(self.dagster_url),
                idempotency_key=step.idempotency_key(key),
                reason=reason,
            )
        except ValueError as exc:
            raise dg.Failure(description=f"invalid gate request: {exc}", allow_retries=False) from exc

    def _launching_gate(
        self, client: HttpGateClient, step: StepIdentity, request: GateRequest, context: StepContext
    ) -> Gate | None:
        """The gate whose approval launched this run (approval_sensor), when it covers exactly
        this request; otherwise this step opens its own.

        Only a run launched *for* that gate may use it: the sensor launches with run key = gate
        id (Dagster tags the run ``dagster/run_key``, and re-executions keep their root's), so a
        ``gatehouse/gate_id`` tag copied onto another run does not carry the approval over."""
        if not step.launching_gate:
            return None
        if step.logical_run != step.launching_gate:
            context.log.warning(
                f"gatehouse: this run carries {GATE_ID_TAG}={step.launching_gate} but was not launched for "
                "that gate (its run key differs); opening this step's own gate"
            )
            return None
        gate = client.get(step.launching_gate)
        if gate.binding_hash == request.binding_hash():
            return gate
        context.log.warning(
            f"gatehouse: this run was launched by gate {gate.id}, approved for another action, target, "
            f"parameters or datasets; opening a gate for {request.action!r} on this step instead"
        )
        return None

    def _actor(self, step: StepIdentity, requester: str | None) -> str:
        who = requester or step.launched_by or self.requester
        if who:
            return who
        try:
            return self._token_principal(self.shared_client())
        except GatehouseError as exc:
            raise failure(exc) from exc

    def _token_principal(self, client: HttpGateClient) -> str:
        if self._principal is None:
            self._principal = token_principal(client)
        return self._principal
