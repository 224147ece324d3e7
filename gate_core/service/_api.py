"""The REST API under /v1: the one boundary pipelines cross."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from gate_core._audit import csv_lines, jsonl_lines
from gate_core._client import Me
from gate_core._errors import GatehouseError, GateNotFound
from gate_core._gatekeeper import DecisionRequest
from gate_core._models import Gate, GateRequest, GateStatus, Verdict, check_text
from gate_core._ports import GateFilter
from gate_core._tokens import Scope
from gate_core.service._auth import Identity
from gate_core.service._state import ServiceState, identity, state_of

router = APIRouter(prefix="/v1")
Caller = Annotated[Identity, Depends(identity)]
GateId = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        check_text(data)
        return data


class OpenGate(GateRequest):
    """A gate request; ``requester`` defaults to the caller (a service token names the person it acts for)."""

    requester: str | None = Field(default=None, min_length=1, max_length=200)  # type: ignore[assignment]


class DecisionIn(_Body):
    decision: Verdict
    comment: str = Field(default="", max_length=4000)


class CancelIn(_Body):
    reason: str = Field(default="", max_length=4000)


class ConsumeIn(_Body):
    binding_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    try_number: int = Field(default=1, ge=1, le=10_000)


class WaitManyIn(_Body):
    ids: list[GateId] = Field(min_length=1, max_length=10_000)
    timeout: float = Field(default=30.0, ge=0, le=600)


class WaitManyOut(BaseModel):
    changed: list[Gate]
    pending: list[str]


class VerifyOut(BaseModel):
    ok: bool
    entries: int
    head_hash: str
    checkpoints_checked: int
    first_bad_seq: int | None
    problem: str
    witnessed_size: int | None = None  # the newest checkpoint a quorum of witnesses cosigned
    witnesses: list[str] = []
    gate: str | None = None


class LoginOidc(BaseModel):
    issuer: str
    client_id: str = Field(description="the public client `gatehouse login` runs the device flow as")
    audience: str = Field(description="the aud the service accepts on access tokens")
    scope: str


class LoginInfo(BaseModel):
    """How a terminal signs in to this service (``gatehouse login``): the IdP's device flow when
    configured, else a personal token created in the console."""

    oidc: LoginOidc | None


@router.get("/me", response_model=Me, tags=["identity"])
def me(caller: Caller) -> Me:
    return Me.of(caller.principal, caller.via, caller.scope, subject=caller.subject, unlinked=caller.unlinked)


@router.get("/auth/login", response_model=LoginInfo, tags=["identity"])
def login_info(request: Request) -> LoginInfo:
    """Public: what `gatehouse login --url` needs to run the device authorization grant."""
    oidc = state_of(request).config.oidc
    if oidc is None or oidc.cli_client_id is None:
        return LoginInfo(oidc=None)
    return LoginInfo(
        oidc=LoginOidc(
            issuer=oidc.issuer,
            client_id=oidc.cli_client_id,
            audience=oidc.api_audience or oidc.audience,
            scope="openid email profile offline_access",
        )
    )


@router.post("/gates", response_model=Gate, tags=["gates"])
def open_gate(body: OpenGate, caller: Caller, request: Request) -> Gate:
    """Open a gate, or return the one its idempotency key already names."""
    caller.require(Scope.REQUEST)
    state = state_of(request)
    gate_request = GateRequest.model_validate(
        {**body.model_dump(), "requester": body.requester or caller.principal.id}
    )
    caller.require_pipeline(gate_request.run.pipeline)
    gate, created = state.gatekeeper.open_or_find(gate_request, submitted_by=caller.actor)
    if created:
        state.hub.gate_opened(gate)
    return gate


@router.get("/gates", response_model=list[Gate], tags=["gates"])
def list_gates(
    caller: Caller,
    request: Request,
    status: GateStatus | None = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    dataset: Annotated[str | None, Query(max_length=1600, description="NAMESPACE/NAME")] = None,
    requester: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Gate]:
    return state_of(request).gatekeeper.list(
        GateFilter(status=status, action=action, dataset=dataset, requester=requester, limit=limit)
    )


@router.get("/gates/{gate_id}", response_model=Gate, tags=["gates"])
def get_gate(gate_id: GateId, caller: Caller, request: Request) -> Gate:
    return state_of(request).gatekeeper.get(gate_id)


@router.post(
    "/gates/{gate_id}/decisions",
    response_model=Gate,
    tags=["gates"],
    responses={
        403: {"description": "self-approval, service principal, not an approver"},
        409: {"description": "already decided (by whom and when), expired, or duplicate"},
    },
)
async def decide(gate_id: GateId, body: DecisionIn, caller: Caller, request: Request) -> Gate:
    caller.require(Scope.DECIDE)
    state = state_of(request)
    gate = await state.decisions.decide(
        DecisionRequest(gate_id, caller.actor, body.decision, body.comment, caller.asserted_principal)
    )
    state.changed(gate)
    return gate


@router.post("/gates/{gate_id}/cancel", response_model=Gate, tags=["gates"])
def cancel(gate_id: GateId, body: CancelIn, caller: Caller, request: Request) -> Gate:
    caller.require(Scope.REQUEST)
    state = state_of(request)
    gate = state.gatekeeper.cancel(gate_id, actor=caller.actor, reason=body.reason)
    state.changed(gate)
    return gate


@router.post("/gates/{gate_id}/consume", response_model=Gate, tags=["gates"])
def consume(gate_id: GateId, body: ConsumeIn, caller: Caller, request: Request) -> Gate:
    caller.require(Scope.REQUEST)
    state = state_of(request)
    gate = state.gatekeeper.consume(
        gate_id, actor=caller.actor, binding_hash=body.binding_hash, try_number=body.try_number
    )
    state.bus.publish(gate.id)
    return gate


@router.get("/gates/{gate_id}/wait", response_model=Gate, tags=["waiting"])
async def wait_one(
    gate_id: GateId, caller: Caller, request: Request, timeout: Annotated[float, Query(ge=0, le=600)] = 30.0
) -> Gate:
    """Long-poll: returns the moment the gate leaves PENDING, or after ``timeout`` seconds still PENDING."""
    state = state_of(request)
    result = await _wait(state, [gate_id], min(timeout, state.config.max_wait_s))
    if not result.changed and not result.pending:
        raise GateNotFound(gate_id)  # answered at once: _wait never parks on ids it cannot find
    if result.changed:
        return result.changed[0]
    return await run_in_threadpool(state.gatekeeper.get, gate_id)


@router.post("/gates/wait", response_model=WaitManyOut, tags=["waiting"])
async def wait_many(body: WaitManyIn, caller: Caller, request: Request) -> WaitManyOut:
    """Long-poll many gates at once: returns as soon as any has left PENDING (with all that have),
    or after ``timeout`` with none. Unknown ids are ignored."""
    state = state_of(request)
    return await _wait(state, body.ids, min(body.timeout, state.config.max_wait_s))


async def _wait(state: ServiceState, ids: list[str], timeout: float) -> WaitManyOut:
    """Each cycle is one ``Gatekeeper.poll``: a narrow read of status and expiry (a triggerer
    may hold 10,000 ids) that expires overdue gates, whole gates only for those that left PENDING."""
    deadline = time.monotonic() + timeout
    gatekeeper = state.gatekeeper
    with state.bus.subscribe(ids) as subscription:  # subscribe first: no change slips between read and wait
        while True:
            seen = await run_in_threadpool(gatekeeper.poll, ids)
            remaining = deadline - time.monotonic()
            if seen.closed or remaining <= 0 or not seen.states or state.bus.draining:
                return WaitManyOut(changed=seen.closed, pending=seen.pending)
            soonest_expiry = min(s.expires_at for s in seen.states.values())
            until_expiry = (soonest_expiry - gatekeeper.clock.now()).total_seconds()
            remaining = min(remaining, max(0.05, until_expiry))
            subscription.rearm()
            await subscription.wait(remaining)
            await asyncio.sleep(0)


@router.get("/audit/verify", response_model=VerifyOut, tags=["audit"])
def audit_verify(caller: Caller, request: Request) -> VerifyOut:
    audit = state_of(request).gatekeeper.audit
    with contextlib.suppress(GatehouseError):  # verify below reports whatever stops it
        audit.witness_pending(now=True)  # the newest checkpoint reaches the witnesses before it is judged
    report = audit.verify()
    return VerifyOut(
        ok=report.ok,
        entries=report.entries,
        head_hash=report.head_hash,
        checkpoints_checked=report.checkpoints_checked,
        first_bad_seq=report.first_bad_seq,
        problem=report.problem,
        witnessed_size=report.witnessed_size,
        witnesses=list(report.witnesses),
        gate=report.gate,
    )


@router.get(
    "/audit/export",
    tags=["audit"],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
)
def audit_export(
    caller: Caller,
    request: Request,
    format: Literal["jsonl", "csv"] = "jsonl",
    since_seq: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> StreamingResponse:
    """Every audit event with its SOC 2, ISO 27001:2022 and NIST 800-53 control ids (admin scope)."""
    caller.require(Scope.ADMIN)
    # Run the query before the response starts: a database error must be a 503 problem, not a
    # stream that breaks off after a 200.
    entries = state_of(request).gatekeeper.audit.entries(after_seq=since_seq)
    first = next(entries, None)
    rows = itertools.chain([first] if first is not None else [], entries)
    lines = jsonl_lines(rows) if format == "jsonl" else csv_lines(rows)
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return StreamingResponse(
        lines,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="gatehouse-audit.{format}"'},
    )
