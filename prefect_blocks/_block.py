"""ApprovalGate: the Prefect block that stops a flow run at a Gatehouse gate until a person decides."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Unpack

from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext, TaskRunContext
from prefect.flow_runs import asuspend_flow_run, suspend_flow_run
from prefect.logging import get_run_logger
from pydantic import Field, HttpUrl, SecretStr

import lineage
from gate_core import Gate, GateRequest, GateStatus, HttpGateClient
from gate_core.session import GateArgs, GateSession, GateSpec, OpenedGate, gate_args
from prefect_blocks._context import Step, current_step, requester_claims, step_run
from prefect_blocks._decision import GateDecision, pause_key
from prefect_blocks._pause import PausedGate

Mode = Literal["pause", "suspend"]


class RequireOptions(GateArgs, total=False):
    """``require()``'s options besides the gate's own (target, datasets, reason, …)."""

    requester: str | None
    key: str | None
    mode: Mode | None
    timeout_seconds: int | None
    operation: str | None


# The project's public home. Prefect shows both in its block catalog; change them together.
HOME_URL = "https://gatehouse.example.com"
LOGO_URL = f"{HOME_URL}/static/prefect-blocks-logo.png"  # the same bytes as prefect_blocks/logo.png
DOCS_URL = f"{HOME_URL}/docs/prefect"
EXPIRY_SLACK_S = 5.0  # wait this long past the gate's expiry for the service to say EXPIRED


@dataclass(frozen=True)
class _Opened:
    """A gate opened (or found again) by one ``require()`` call, how long it may wait, and the
    connections its verdict will need (made before the wait, so none is set up after it)."""

    step: Step
    opened: OpenedGate
    mode: Mode
    deadline: float  # time.monotonic() past which the step stops waiting
    timeout_s: int
    client: HttpGateClient
    sink: lineage.HttpSink | None  # for the datasets named at the gate

    @property
    def session(self) -> GateSession:
        return GateSession(self.client)

    @property
    def gate(self) -> Gate:
        return self.opened.gate

    @property
    def request(self) -> GateRequest:
        return self.opened.request

    def close(self) -> None:
        self.client.close()
        if self.sink is not None:
            self.sink.close()


class ApprovalGate(Block):
    """Stops a flow run at a Gatehouse approval gate until a person other than the requester
    approves it, and resumes it the moment they do. The run shows as Paused (or Suspended,
    releasing its infrastructure) in Prefect meanwhile; the verified decision — who approved,
    how their identity was established, their comment — becomes the run's input.

    Example:
        ```python
        from prefect import flow
        from prefect_blocks import ApprovalGate

        @flow
        def export_customers(requester: str):
            gate = ApprovalGate.load("BLOCK_NAME")
            decision = gate.require(
                action="export",
                target="s3://exports/customers.csv",
                datasets=["warehouse/customers#pii"],
                reason="quarterly churn report",
            )
            print(f"approved by {decision.approvers}")
        ```
    """

    _block_type_name = "Gatehouse Approval Gate"
    _logo_url = HttpUrl(LOGO_URL)
    _documentation_url = HttpUrl(DOCS_URL)

    url: str = Field(
        description="Base URL of the Gatehouse gate service, e.g. https://gatehouse.example.com.",
    )
    token: SecretStr = Field(
        description=(
            "API token of the pipeline's service principal (scope request): it opens gates on the "
            "requester's behalf and can never decide them."
        ),
    )
    timeout_seconds: int = Field(
        default=24 * 3600,
        gt=0,
        description=(
            "How long a step waits for a decision, in seconds; the gate's own expiry (from the "
            "policy) still applies, whichever comes first."
        ),
    )
    mode: Mode = Field(
        default="pause",
        description=(
            "pause keeps the run's process and continues it the moment the gate is decided; suspend "
            "releases its infrastructure and needs a deployment, a worker and watch_and_resume."
        ),
    )
    poll_seconds: float = Field(
        default=5.0,
        gt=0,
        description=(
            "How often a paused run also reads its own state from Prefect, in seconds, to notice a "
            "resume made elsewhere (the UI, the watcher); the gate's decision itself arrives at once."
        ),
    )
    default_requester: str | None = Field(
        default=None,
        description=(
            "The person to open gates for when Prefect recorded no user for the run and the flow "
            "names none (a directory principal id)."
        ),
    )
    requester_parameter: str = Field(
        default="requester",
        description="The flow-run parameter that names the requester when Prefect recorded no user.",
    )
    record_lineage: bool = Field(
        default=True,
        description=(
            "Record the datasets named at the gate as accessed, tied to the flow run and the gate, "
            "through the gate service."
        ),
    )

    # ------------------------------------------------------------------ public API

    def get_client(self) -> HttpGateClient:
        """A client for the gate service holding this block's token. Close it when done."""
        return HttpGateClient(self.url, self.token.get_secret_value())

    def require(self, action: str, **options: Unpack[RequireOptions]) -> GateDecision:
        """Open a gate for this step and wait for it; return the decision once approved.

        Options: ``target``, ``datasets`` (``NAMESPACE/NAME[#tag,tag]``), ``reason``,
        ``environment``, ``parameters`` (what the approval is bound to), ``requester``, ``key``
        (identifies the gate across runs; default: this flow run and step), ``mode``,
        ``timeout_seconds``, ``operation`` (the lineage operation on ``datasets``). Raises
        GateRejected, GateExpired or GateCancelled when the gate closes without an approval,
        which fails the run. In ``suspend`` mode the run is suspended here and this call returns
        in the run's re-run, after the approval. Use ``await gate.arequire(...)`` in async flows
        and tasks."""
        if _in_async_run():
            raise TypeError(
                "ApprovalGate.require() blocks; in an async flow or task use `await gate.arequire(...)`"
            )
        opened = self._open(action, options)
        operation = options.get("operation")
        try:
            if opened.gate.status is not GateStatus.PENDING:
                return self._finish(opened, opened.gate, operation)
            if opened.mode == "suspend":
                suspend_flow_run(**self._suspension(opened))  # raises Pause: the process exits here
                return self._finish(opened, opened.client.get(opened.gate.id), operation)
            paused = self._paused(opened)
            return self._finish_paused(opened, paused, paused.wait(), operation)
        finally:
            opened.close()

    async def arequire(self, action: str, **options: Unpack[RequireOptions]) -> GateDecision:
        """``require()`` for async flows and tasks: waits without blocking the event loop."""
        opened = await asyncio.to_thread(self._open, action, options)
        operation = options.get("operation")
        try:
            if opened.gate.status is not GateStatus.PENDING:
                return await asyncio.to_thread(self._finish, opened, opened.gate, operation)
            if opened.mode == "suspend":
                await asuspend_flow_run(**self._suspension(opened))
                gate = await asyncio.to_thread(opened.client.get, opened.gate.id)
                return await asyncio.to_thread(self._finish, opened, gate, operation)
            paused = self._paused(opened)
            gate = await asyncio.to_thread(paused.wait)
            return await asyncio.to_thread(self._finish_paused, opened, paused, gate, operation)
        finally:
            opened.close()

    @contextmanager
    def approved(self, action: str, **kwargs: Any) -> Iterator[GateDecision]:
        """``with gate.approved(action=..., datasets=...) as decision:`` — ``require()``, then the
        body runs inside ``lineage_scope(decision)``: DataFrames tracked there are tied to the
        flow run and the gate."""
        decision = self.require(action, **kwargs)
        with self.lineage_scope(decision):
            yield decision

    @contextmanager
    def lineage_scope(self, decision: GateDecision) -> Iterator[None]:
        """Inside: ``lineage.track_dataframe`` / ``record_access`` calls are recorded for the
        current flow run, as the requester, under ``decision``'s gate, via the gate service."""
        sink = self._lineage_sink()
        try:
            scope = lineage.GateLineage(sink).scope(
                run=current_step().run_context(), actor=decision.requester, gate_id=decision.gate_id
            )
            with scope:
                yield
        finally:
            sink.close()

    def _lineage_sink(self) -> lineage.HttpSink:
        """Where a gated step's lineage goes: the gate service, with the block's token."""
        return lineage.HttpSink(self.url, self.token.get_secret_value())

    # ------------------------------------------------------------------ the steps of require()

    def _open(self, action: str, options: RequireOptions) -> _Opened:
        step = current_step()
        claims = requester_claims(
            step, options.get("requester"), self.requester_parameter, self.default_requester
        )
        spec = GateSpec.of(action, **gate_args(options))
        client = self.get_client()
        try:
            run = step_run(step, claims, action, spec.target, options.get("key"))
            opened = GateSession(client).open(spec, run)
        except BaseException:
            client.close()
            raise
        gate, request = opened.gate, opened.request
        sink = self._lineage_sink() if self.record_lineage and request.datasets else None
        timeout_s = options.get("timeout_seconds") or self.timeout_seconds
        to_expiry = (gate.expires_at - datetime.now(UTC)).total_seconds() + EXPIRY_SLACK_S
        chosen: Mode = options.get("mode") or self.mode
        get_run_logger().info(
            "Gatehouse gate %s (%s) for %s [requester from %s]: %s; rule %s; %s",
            gate.id,
            gate.status.value,
            request.requester,
            opened.requester.source,
            _describe(request),
            gate.rule,
            f"waiting for {gate.approvals_missing()} approval(s) ({chosen} mode)"
            if gate.status is GateStatus.PENDING
            else "no wait needed",
        )
        deadline = time.monotonic() + min(timeout_s, to_expiry)
        return _Opened(step, opened, chosen, deadline, timeout_s, client, sink)

    def _paused(self, opened: _Opened) -> PausedGate:
        return PausedGate(
            gate=opened.gate,
            flow_run_id=opened.step.flow_run.id,
            new_client=self.get_client,
            service_url=self.url,
            deadline=opened.deadline,
            poll_seconds=self.poll_seconds,
            description=_waiting_message(opened),
        )

    def _suspension(self, opened: _Opened) -> dict[str, Any]:
        """Arguments for Prefect's ``suspend_flow_run``, after checking suspension can work."""
        step = opened.step
        if step.task_run is not None:
            raise RuntimeError(
                "mode='suspend' needs require() in the flow itself: Prefect cannot suspend from a task"
            )
        if step.flow_run.deployment_id is None:
            raise RuntimeError(
                "mode='suspend' needs a flow run from a deployment (a worker must start it again); "
                "use mode='pause' for runs started directly"
            )
        with get_client(sync_client=True) as prefect:
            used = prefect.read_flow_run(step.flow_run.id).empirical_policy.pause_keys or set()
        attempt = 1
        while pause_key(opened.gate.id, attempt) in used:  # resumed without a decision before
            attempt += 1
        timeout = max(1, int(opened.deadline - time.monotonic()))
        return {
            "wait_for_input": GateDecision.with_initial_data(description=_waiting_message(opened)),
            "timeout": timeout,
            "key": pause_key(opened.gate.id, attempt),
        }

    def _finish_paused(
        self, opened: _Opened, paused: PausedGate, gate: Gate, operation: str | None
    ) -> GateDecision:
        """Verify and consume the decision while Prefect resumes the run; return once both are
        done (a rejected run must be resumed too: its run input records who rejected it)."""
        try:
            decision = self._finish(opened, gate, operation)
        except BaseException:
            try:
                paused.resumed()
            except Exception as exc:
                get_run_logger().warning("Prefect did not resume the run before it fails: %s", exc)
            raise
        paused.resumed()
        return decision

    def _finish(self, opened: _Opened, gate: Gate, operation: str | None) -> GateDecision:
        """The step may run: the approval is consumed for the step's own request (refused if it no
        longer applies) and the gate's datasets recorded. Otherwise raise what fails the step."""
        gate = opened.session.conclude(opened.opened, gate, waited_s=opened.timeout_s)
        decision = GateDecision.from_gate(gate, self.url)
        if opened.sink is not None:
            accesses = lineage.step_accesses(
                opened.request.action, declared=opened.request.datasets, operation=operation
            )
            opened.session.record_lineage(lineage.GateLineage(opened.sink), opened.request, gate.id, accesses)
        get_run_logger().info(
            "Gatehouse gate %s approved by %s%s",
            gate.id,
            ", ".join(decision.approvers) or "policy",
            f": {decision.comment}" if decision.comment else "",
        )
        return decision


def _in_async_run() -> bool:
    """Whether the innermost Prefect run (task, else flow) is a coroutine function."""
    task_ctx = TaskRunContext.get()
    if task_ctx is not None:
        return bool(task_ctx.task.isasync)
    flow_ctx = FlowRunContext.get()
    return bool(flow_ctx is not None and flow_ctx.flow is not None and flow_ctx.flow.isasync)


def _describe(request: GateRequest) -> str:
    what = f"{request.action} {request.target}".strip()
    if request.datasets:
        what += f" of {', '.join(str(d) for d in request.datasets)}"
    return what


def _waiting_message(opened: _Opened) -> str:
    """What Prefect shows on the paused run: which gate, what for, who asked, what it needs."""
    gate = opened.gate
    return (
        f"Waiting for Gatehouse gate {gate.id}: {_describe(opened.request)} requested by "
        f"{opened.request.requester}; needs {gate.approvals_missing()} approval(s) from "
        f"{', '.join(gate.approver_groups) or 'the policy'} (rule {gate.rule}) before "
        f"{gate.expires_at.isoformat(timespec='seconds')}"
    )
