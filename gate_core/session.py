"""One adapter session: what every orchestrator adapter does around a gated step, written once.

An adapter translates its framework's context in and the outcome out; everything between is here::

    GateSpec        what the step asks: action, target, datasets, environment, parameters, reason
    StepRun         where it runs (RunContext + idempotency key) and who the orchestrator and the
                    pipeline say is behind it (RequesterClaims, each with its source)
        │
    GateSession.open(spec, step)        → OpenedGate   idempotent: a retry finds its own gate, and a
                                                        found gate must cover exactly this request
    GateSession.wait / await_decision   → Gate          long-polls until it leaves PENDING or the
                                                        step's own deadline passes
    GateSession.conclude(opened, gate)  → Gate          consumed with the binding hash computed HERE,
                                                        from the step's own request — never the
                                                        server's copy — or the GateNotApproved that
                                                        stops the step (a step that stopped waiting
                                                        withdraws its gate first)
    GateSession.record_lineage(...)                     the step's dataset accesses under the gate

Adapters turn ``GateNotApproved`` (GateRejected / GateExpired / GateCancelled) and
``ServiceUnavailable`` into their idiom: an Airflow exception or skip, a failed Prefect state,
a ``dagster.Failure``.

**Who asks.** ``resolve_requester`` is the one rule: the person the orchestrator itself recorded
as starting the run (Airflow's triggering user, Prefect's flow-run creator, Dagster's launching
user) wins over any name the pipeline supplies (an argument, a template, a run parameter, a
configured default), because whoever triggers a run controls those and could otherwise name a
colleague and approve the gate themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, cast

from gate_core._client import GateClient
from gate_core._errors import (
    GateCancelled,
    GateExpired,
    GatehouseError,
    GateNotApproved,
    GateRejected,
    InvalidInput,
    RequestRefused,
)
from gate_core._models import DatasetRef, Gate, GateRequest, GateStatus, Involved, RunContext, Verdict

__all__ = [
    "GateArgs",
    "GateSession",
    "GateSpec",
    "LineageRecorder",
    "OpenedGate",
    "RequesterClaim",
    "StepRun",
    "gate_args",
    "not_approved",
    "resolve_requester",
]

LONG_POLL_S = 25.0  # one wait request; keep it under proxies' idle timeouts and the service's cap


class GateArgs(TypedDict, total=False):
    """What a pipeline author passes to any adapter's gate call besides the action (each
    adapter's own options extend it)."""

    target: str
    datasets: Iterable[str | DatasetRef]
    environment: str
    parameters: Mapping[str, Any] | None
    reason: str


_GATE_ARGS = frozenset(GateArgs.__annotations__)


def gate_args(options: Mapping[str, Any]) -> GateArgs:
    """The gate's own arguments out of an adapter's options (which may hold more)."""
    return cast("GateArgs", {k: v for k, v in options.items() if k in _GATE_ARGS})


@dataclass(frozen=True, slots=True)
class GateSpec:
    """What a gated step asks for; the approval is bound to exactly this (its binding hash)."""

    action: str
    target: str = ""
    datasets: tuple[DatasetRef, ...] = ()
    environment: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""

    @classmethod
    def of(
        cls,
        action: str,
        *,
        target: str = "",
        datasets: Iterable[str | DatasetRef] = (),
        environment: str = "",
        parameters: Mapping[str, Any] | None = None,
        reason: str = "",
    ) -> GateSpec:
        """From what a pipeline author writes: datasets as ``NAMESPACE/NAME[#tag,tag]`` or refs."""
        try:
            refs = tuple(d if isinstance(d, DatasetRef) else DatasetRef.parse(d) for d in datasets)
        except ValueError as exc:
            raise InvalidInput(f"invalid dataset for a gate: {exc}") from None
        return cls(action, target, refs, environment, dict(parameters or {}), reason)


@dataclass(frozen=True, slots=True)
class RequesterClaim:
    """A name for the person a run acts for, and where it came from (shown in logs and errors)."""

    principal: str
    source: str  # "Airflow triggering user", "argument requester=", "flow-run parameter 'requester'"…
    recorded_by_orchestrator: bool = False  # the orchestrator's own record, not the pipeline's words


def resolve_requester(claims: Iterable[RequesterClaim]) -> RequesterClaim:
    """The person a gate is opened for: the first claim the orchestrator recorded itself, else the
    first the pipeline made (claims come strongest first). Blank names are no claim."""
    usable = [c for c in claims if c.principal.strip()]
    recorded = [c for c in usable if c.recorded_by_orchestrator]
    if not usable:
        raise InvalidInput(
            "no requester for the gate: the orchestrator recorded no user for this run and the "
            "pipeline names none (pass requester=…, or configure a default)"
        )
    chosen = (recorded or usable)[0]
    return RequesterClaim(chosen.principal.strip(), chosen.source, chosen.recorded_by_orchestrator)


@dataclass(frozen=True, slots=True)
class StepRun:
    """The run a gated step belongs to, as its orchestrator describes it."""

    run: RunContext
    idempotency_key: str  # no attempt number: every retry of the step finds the same gate
    requester_claims: tuple[RequesterClaim, ...]


@dataclass(frozen=True, slots=True)
class OpenedGate:
    """A step's gate: the request as the step computed it, and the gate as the service holds it."""

    request: GateRequest
    gate: Gate
    requester: RequesterClaim

    @property
    def pending(self) -> bool:
        return self.gate.status is GateStatus.PENDING


class LineageRecorder(Protocol):
    """Where a gated step's dataset accesses go (lineage's ``GateLineage``); the core never
    imports lineage, so the session only knows this shape."""

    def record(
        self, accesses: Sequence[tuple[DatasetRef, str]], *, run: RunContext, actor: str, gate_id: str
    ) -> int: ...


def not_approved(gate: Gate) -> GateNotApproved:
    """The error that stops the step of a gate that closed without an approval."""
    rejections = [d for d in gate.decisions if d.verdict is Verdict.REJECT]
    if gate.status is GateStatus.REJECTED:
        if not rejections:
            return GateRejected(
                f"gate {gate.id} was refused by policy rule {gate.rule!r}: {gate.explanation}",
                gate_id=gate.id,
                status=gate.status.value,
                reason=gate.explanation,
            )
        who = " and ".join(d.principal_id for d in rejections)
        reason = "; ".join(d.comment for d in rejections if d.comment)
        return GateRejected(
            f"gate {gate.id} was rejected by {who}" + (f": {reason}" if reason else ""),
            gate_id=gate.id,
            status=gate.status.value,
            reason=reason,
            decided_by=tuple(d.principal_id for d in rejections),
        )
    if gate.status is GateStatus.EXPIRED:
        approvers = tuple(d.principal_id for d in gate.approvals)
        groups = ", ".join(gate.approver_groups) or "the approvers"
        return GateExpired(
            f"gate {gate.id} expired at {gate.expires_at.isoformat(timespec='seconds')} with "
            f"{len(approvers)} of {gate.required_approvals} approvals from {groups}; the step must not run",
            gate_id=gate.id,
            status=gate.status.value,
            reason="expired",
            decided_by=approvers,
        )
    if gate.status is GateStatus.CANCELLED:
        who = " and ".join(gate.decided_by) or "its requester"
        return GateCancelled(
            f"gate {gate.id} was cancelled by {who}; the step must not run",
            gate_id=gate.id,
            status=gate.status.value,
            decided_by=gate.decided_by,
        )
    return GateNotApproved(
        f"gate {gate.id} is {gate.status.value}; the step must not run",
        gate_id=gate.id,
        status=gate.status.value,
    )


class GateSession:
    """Open → wait → conclude → lineage for one adapter, over any ``GateClient``."""

    def __init__(self, client: GateClient, *, long_poll_s: float = LONG_POLL_S) -> None:
        self.client = client
        self.long_poll_s = long_poll_s

    # ------------------------------------------------------------------ opening

    @staticmethod
    def request(spec: GateSpec, step: StepRun) -> tuple[GateRequest, RequesterClaim]:
        """The request a step sends, and who it is for. InvalidInput when it cannot be sent."""
        requester = resolve_requester(step.requester_claims)
        try:
            request = GateRequest(
                action=spec.action,
                target=spec.target,
                datasets=spec.datasets,
                parameters=dict(spec.parameters),
                environment=spec.environment,
                requester=requester.principal,
                run=step.run,
                idempotency_key=step.idempotency_key,
                reason=spec.reason,
                # Every claim, not only the chosen one: a name from a template or a parameter adds
                # an involved person and never replaces the user the orchestrator recorded.
                involved=tuple(
                    dict.fromkeys(
                        Involved(
                            principal=c.principal.strip(),
                            source=c.source,
                            recorded_by_orchestrator=c.recorded_by_orchestrator,
                        )
                        for c in step.requester_claims
                        if c.principal.strip()
                    )
                ),
            )
        except ValueError as exc:
            raise InvalidInput(f"invalid gate request: {exc}") from None
        return request, requester

    def open(self, spec: GateSpec, step: StepRun) -> OpenedGate:
        """Open the step's gate, or find the one an earlier attempt opened."""
        request, requester = self.request(spec, step)
        return self.adopt(request, self.client.open(request), requester)

    @staticmethod
    def adopt(request: GateRequest, gate: Gate, requester: RequesterClaim) -> OpenedGate:
        """Take ``gate`` as this request's gate, only if it was asked for exactly this request."""
        if gate.binding_hash != request.binding_hash():
            raise RequestRefused(
                f"gate {gate.id} was asked for another action, target, environment, parameters or "
                "datasets than this step's; it cannot let this step run"
            )
        return OpenedGate(request, gate, requester)

    # ------------------------------------------------------------------ waiting

    def wait(self, opened: OpenedGate, *, deadline: float | None = None) -> Gate:
        """Long-poll until the gate leaves PENDING or ``deadline`` (``time.monotonic()``) passes;
        the service answers the moment a decision lands, and ends a wait at the gate's expiry."""
        gate = opened.gate
        while gate.status is GateStatus.PENDING:
            chunk = self._chunk(deadline)
            if chunk is None:
                return gate
            gate = self.client.wait(gate.id, timeout=chunk)
        return gate

    async def await_decision(self, opened: OpenedGate, *, deadline: float | None = None) -> Gate:
        """``wait`` for async code: the event loop keeps running between long-polls."""
        gate = opened.gate
        while gate.status is GateStatus.PENDING:
            chunk = self._chunk(deadline)
            if chunk is None:
                return gate
            gate = await asyncio.to_thread(self.client.wait, gate.id, chunk)
        return gate

    def _chunk(self, deadline: float | None) -> float | None:
        if deadline is None:
            return self.long_poll_s
        remaining = deadline - time.monotonic()
        return None if remaining <= 0 else min(self.long_poll_s, remaining)

    # ------------------------------------------------------------------ concluding

    def conclude(self, opened: OpenedGate, gate: Gate, *, waited_s: float | None = None) -> Gate:
        """Let the step run — the approval consumed for the step's own request, within its expiry
        (the service refuses another payload) — or raise what stops it. A gate still PENDING means
        the step stopped waiting (after ``waited_s``): it is withdrawn, so nobody approves a step
        that no longer waits."""
        if gate.status is GateStatus.PENDING:
            waited = f"{waited_s:g}s" if waited_s is not None else "its wait"
            self.withdraw(gate.id, f"the step stopped waiting after {waited}")
            raise GateExpired(
                f"gate {gate.id} was not decided within {waited}; the step gave up and withdrew it",
                gate_id=gate.id,
                status=gate.status.value,
                reason="timeout",
            )
        if gate.status not in (GateStatus.APPROVED, GateStatus.CONSUMED):
            raise not_approved(gate)
        return self.consume(opened.request, gate.id)

    def consume(self, request: GateRequest, gate_id: str) -> Gate:
        """Record that the step runs under the approval of ``gate_id``, bound to ``request``."""
        return self.client.consume(gate_id, request.binding_hash(), request.run.try_number)

    def withdraw(self, gate_id: str, why: str) -> bool:
        """Cancel a gate nobody decided yet; False when it was decided or unreachable meanwhile
        (the step fails either way)."""
        try:
            self.client.cancel(gate_id, reason=why)
        except GatehouseError:
            return False
        return True

    # ------------------------------------------------------------------ lineage

    @staticmethod
    def record_lineage(
        recorder: LineageRecorder,
        request: GateRequest,
        gate_id: str,
        accesses: Sequence[tuple[DatasetRef, str]],
    ) -> int:
        """The step's accesses as lineage events under its gate, in its run, on behalf of its
        requester. Raises when they cannot be recorded, so an approved step never runs unrecorded."""
        if not accesses:
            return 0
        return recorder.record(accesses, run=request.run, actor=request.requester, gate_id=gate_id)
