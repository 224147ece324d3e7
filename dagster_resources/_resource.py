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
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Required, TypeVar, Unpack

import dagster as dg
from pydantic import Field, PrivateAttr

import lineage
from dagster_resources._context import GATE_ID_TAG, StepContext, StepIdentity
from dagster_resources._decision import (
    ApprovalDecision,
    failure_metadata,
    gate_failure,
    request_observation,
)
from dagster_resources._lineage import StepLineage, classified, table_metadata
from dagster_resources._step import approved, attach, failure, observed_key, waiting
from gate_core import (
    DatasetRef,
    Gate,
    GatehouseError,
    GateNotApproved,
    GateStatus,
    HttpGateClient,
    RequestRefused,
)
from gate_core.session import (
    GateArgs,
    GateSession,
    GateSpec,
    OpenedGate,
    RequesterClaim,
    StepRun,
    gate_args,
    resolve_requester,
)

if TYPE_CHECKING:
    import pandas as pd

_T = TypeVar("_T")


class GateOptions(GateArgs, total=False):
    """``open_gate``'s options: the gate's own (target, datasets, reason, …) and these."""

    action: Required[str]
    requester: str | None
    key: str | None


class ApprovalOptions(GateOptions, total=False):
    """``require_approval``'s options: ``open_gate``'s and the lineage operation."""

    operation: str | None


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

    def require_approval(self, context: StepContext, **options: Unpack[ApprovalOptions]) -> ApprovalDecision:
        """Open a gate for this step (or find the one an earlier attempt opened), wait for the
        decision, and return it once approved.

        Options: ``action`` (required), ``target``, ``datasets``, ``reason``, ``environment``,
        ``parameters``, ``requester``, ``key`` (tells apart several gates in one step),
        ``operation`` (the lineage operation for ``datasets``; default: the action when it names
        one — export, write, delete — else read). The approval is consumed (bound to exactly this
        action, target, environment, parameters and datasets) and shown on the step: output
        metadata, which for an asset is its materialization's. Raises ``dagster.Failure`` with the
        reason and the gate's metadata on reject, expiry or cancellation, and when the service
        cannot be asked (fail closed).
        """
        step = StepIdentity.of(context)
        session = self._session()
        try:
            spec, run = self._ask(step, options)
            opened = self._launching_gate(session, step, spec, run, context) or session.open(spec, run)
            gate = opened.gate
            if opened.pending:
                context.log.info(waiting(gate, self.public_url))
                gate = session.wait(opened, deadline=self._deadline())
            if gate.status is GateStatus.PENDING:
                raise self._still_waiting(gate)
            try:
                gate = session.conclude(opened, gate)
            except GateNotApproved as refused:
                raise gate_failure(gate, self.public_url, refused) from refused
        except GatehouseError as exc:
            raise failure(exc) from exc
        decision = ApprovalDecision.from_gate(gate, self.public_url)
        attach(context, decision.metadata())
        context.log.info(approved(decision))
        if self.record_lineage and opened.request.datasets:
            accesses = lineage.step_accesses(
                spec.action, declared=opened.request.datasets, operation=options.get("operation")
            )
            recorder = lineage.GateLineage(self.lineage_sink())
            self._record(lambda: session.record_lineage(recorder, opened.request, gate.id, accesses))
        return decision

    def _deadline(self) -> float | None:
        seconds = self.wait_timeout_seconds
        return None if seconds is None else time.monotonic() + seconds

    def _still_waiting(self, gate: Gate) -> dg.Failure:
        """The step's own wait ran out: it fails, and the gate stays open for a re-execution."""
        return dg.Failure(
            description=(
                f"gate {gate.id} is still waiting for a decision after {self.wait_timeout_seconds:g}s "
                f"(it stays open until {gate.expires_at.isoformat(timespec='seconds')}); "
                "re-execute the run to keep waiting on the same gate"
            ),
            metadata=failure_metadata(gate, self.public_url),
        )

    # ------------------------------------------------------------------ long waits

    def open_gate(
        self, context: StepContext, asset_key: dg.AssetKey | str | None = None, **options: Unpack[GateOptions]
    ) -> Gate:
        """Open a gate and return at once: the long-wait pattern.

        The request is recorded as an ``AssetObservation`` on ``asset_key`` (default: the asset
        this step materializes), which ``approval_sensor`` watches: once the gate is approved the
        sensor launches the gated job, whose ``require_approval`` with the same request consumes
        this gate without waiting. Nothing holds a run worker while people decide."""
        step = StepIdentity.of(context)
        observed = observed_key(context, asset_key)
        session = self._session()
        try:
            gate = session.open(*self._ask(step, options)).gate
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

    def _session(self) -> GateSession:
        return GateSession(self.shared_client(), long_poll_s=self.poll_seconds)

    def _ask(self, step: StepIdentity, options: GateOptions) -> tuple[GateSpec, StepRun]:
        """What this step asks, and for whom (the token's own principal as the last resort)."""
        try:
            spec = GateSpec.of(options["action"], **gate_args(options))
        except (GatehouseError, ValueError) as exc:
            raise dg.Failure(description=f"invalid gate request: {exc}", allow_retries=False) from exc
        spec = replace(spec, datasets=self._datasets(spec.datasets))
        claims = step.requester_claims(options.get("requester"), self.requester)
        if not claims:
            principal = self._token_principal(self.shared_client())
            claims.append(RequesterClaim(principal, "the pipeline token's principal"))
        return spec, step.step_run(claims, self.dagster_url, options.get("key"))

    def _launching_gate(
        self, session: GateSession, step: StepIdentity, spec: GateSpec, run: StepRun, context: StepContext
    ) -> OpenedGate | None:
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
        request, requester = session.request(spec, run)
        try:
            return session.adopt(request, session.client.get(step.launching_gate), requester)
        except RequestRefused:
            context.log.warning(
                f"gatehouse: this run was launched by gate {step.launching_gate}, approved for another "
                f"action, target, parameters or datasets; opening a gate for {spec.action!r} on this step "
                "instead"
            )
            return None

    def _actor(self, step: StepIdentity, requester: str | None) -> str:
        claims = step.requester_claims(requester, self.requester)
        if claims:
            return resolve_requester(claims).principal
        try:
            return self._token_principal(self.shared_client())
        except GatehouseError as exc:
            raise failure(exc) from exc

    def _token_principal(self, client: HttpGateClient) -> str:
        if self._principal is None:
            self._principal = client.me().principal_id
        return self._principal
