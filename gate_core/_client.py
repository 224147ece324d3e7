"""GateClient: the one interface orchestrator adapters use, over HTTP or in-process.

    HttpGateClient   the gate service's REST API (httpx; sync calls plus async waits for
                     Airflow triggers); holds an API token, never database credentials
    LocalGateClient  a Gatekeeper in this process (single-process use, tests)

Both raise the same GatehouseError subclasses (HTTP problems are mapped back by their ``code``)
and pass one contract suite (tests/service/test_client_contract.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

import httpx
from pydantic import BaseModel, Field, TypeAdapter

from gate_core import _errors
from gate_core._audit import VerifyReport
from gate_core._errors import GatehouseError, ServiceUnavailable
from gate_core._gatekeeper import Gatekeeper
from gate_core._models import Actor, AuthMethod, Gate, GateRequest, Principal, Verdict
from gate_core._tokens import Scope
from gate_core.identity import IdpSubject


class WaitResult(BaseModel):
    changed: list[Gate]
    pending: list[str]


class Me(BaseModel):
    """Who a client acts as, and how that was established (``GET /v1/me``)."""

    principal_id: str
    email: str | None
    display_name: str
    groups: list[str]
    kind: str
    via: str
    scope: str = Field(description="request, decide or admin; 'read' for an IdP identity linked to nobody")
    issuer: str | None = Field(default=None, description="via oidc: the IdP that proved this caller")
    subject: str | None = Field(default=None, description="via oidc: the IdP's sub for this caller")
    linked: bool = Field(
        default=True, description="false: an IdP identity no directory principal is linked to"
    )
    note: str = Field(default="", description="for an unlinked IdP identity: what to configure")

    @classmethod
    def of(
        cls,
        principal: Principal,
        via: AuthMethod,
        scope: Scope,
        *,
        subject: IdpSubject | None = None,
        unlinked: str | None = None,
    ) -> Me:
        return cls(
            principal_id=principal.id,
            email=principal.email,
            display_name=principal.label,
            groups=sorted(principal.groups),
            kind=principal.kind.value,
            via=via.value,
            scope="read" if unlinked else scope.value,
            issuer=subject.issuer if subject else None,
            subject=subject.subject if subject else None,
            linked=unlinked is None,
            note=unlinked or "",
        )


class GateClient(Protocol):
    def open(self, request: GateRequest) -> Gate: ...

    def get(self, gate_id: str) -> Gate: ...

    def wait(self, gate_id: str, timeout: float) -> Gate:
        """Block until the gate leaves PENDING or ``timeout`` seconds pass; return it either way."""
        ...

    def wait_many(self, gate_ids: Sequence[str], timeout: float) -> WaitResult: ...

    async def await_many(self, gate_ids: Sequence[str], timeout: float) -> WaitResult: ...

    def decide(self, gate_id: str, verdict: Verdict, comment: str = "") -> Gate: ...

    def cancel(self, gate_id: str, reason: str = "") -> Gate: ...

    def consume(self, gate_id: str, binding_hash: str, try_number: int = 1) -> Gate: ...

    def me(self) -> Me:
        """Who this client acts as (a pipeline token's principal is its requester of last resort)."""
        ...

    def close(self) -> None: ...


def _error_classes() -> dict[str, type[GatehouseError]]:
    found: dict[str, type[GatehouseError]] = {}
    stack: list[type[GatehouseError]] = [GatehouseError]
    while stack:
        cls = stack.pop()
        found[cls.code] = cls
        stack.extend(cls.__subclasses__())
    return found


_ERRORS = _error_classes()


def error_from_problem(status: int, body: dict[str, Any]) -> GatehouseError:
    """Rebuild the core's exception from a problem+json body, so callers catch the same types."""
    cls = _ERRORS.get(str(body.get("code")), GatehouseError)
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    error = cls.__new__(cls)
    Exception.__init__(error, detail)
    if isinstance(error, _errors.AlreadyDecided):
        error.status = str(body.get("gate_status", ""))
        error.by = tuple(body.get("decided_by") or ())
        at = body.get("decided_at")
        error.at = datetime.fromisoformat(at) if at else None
    return error


_GATES = TypeAdapter(list[Gate])


class HttpGateClient:
    """The gate service over HTTP. Retries connection failures and 503s with backoff, then
    raises ServiceUnavailable: a gate never passes because the service could not be asked."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0, retries: int = 4) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": "gatehouse-client/0.1"}
        self._timeout = timeout
        self._retries = retries
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._sync is None:
                self._sync = httpx.Client(
                    base_url=self.base_url, headers=self._headers, timeout=self._timeout
                )
            return self._sync

    def _async_client(self) -> httpx.AsyncClient:
        if self._async is None:
            self._async = httpx.AsyncClient(
                base_url=self.base_url, headers=self._headers, timeout=self._timeout
            )
        return self._async

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        if response.is_success:
            return response.json()
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text[:200]}
        raise error_from_problem(response.status_code, body if isinstance(body, dict) else {})

    def _request(self, method: str, path: str, *, read_timeout: float | None = None, **kwargs: Any) -> Any:
        timeout = httpx.Timeout(self._timeout, read=read_timeout) if read_timeout else None
        for attempt in range(self._retries + 1):
            try:
                response = self.http.request(
                    method, path, timeout=timeout or httpx.USE_CLIENT_DEFAULT, **kwargs
                )
            except httpx.TransportError as exc:
                if attempt == self._retries:
                    raise ServiceUnavailable(f"gate service at {self.base_url} unreachable: {exc}") from exc
            else:
                if response.status_code != 503 or attempt == self._retries:
                    return self._check(response)
            time.sleep(min(0.2 * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    async def _arequest(
        self, method: str, path: str, *, read_timeout: float | None = None, **kwargs: Any
    ) -> Any:
        timeout = httpx.Timeout(self._timeout, read=read_timeout) if read_timeout else None
        client = self._async_client()
        for attempt in range(self._retries + 1):
            try:
                response = await client.request(
                    method, path, timeout=timeout or httpx.USE_CLIENT_DEFAULT, **kwargs
                )
            except httpx.TransportError as exc:
                if attempt == self._retries:
                    raise ServiceUnavailable(f"gate service at {self.base_url} unreachable: {exc}") from exc
            else:
                if response.status_code != 503 or attempt == self._retries:
                    return self._check(response)
            await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    def open(self, request: GateRequest) -> Gate:
        return Gate.model_validate(self._request("POST", "/v1/gates", json=request.model_dump(mode="json")))

    def get(self, gate_id: str) -> Gate:
        return Gate.model_validate(self._request("GET", f"/v1/gates/{gate_id}"))

    def list(self, **filters: str | int) -> list[Gate]:
        return _GATES.validate_python(self._request("GET", "/v1/gates", params=filters))

    def wait(self, gate_id: str, timeout: float) -> Gate:
        return Gate.model_validate(
            self._request(
                "GET", f"/v1/gates/{gate_id}/wait", params={"timeout": timeout}, read_timeout=timeout + 15
            )
        )

    def wait_many(self, gate_ids: Sequence[str], timeout: float) -> WaitResult:
        body = {"ids": list(gate_ids), "timeout": timeout}
        return WaitResult.model_validate(
            self._request("POST", "/v1/gates/wait", json=body, read_timeout=timeout + 15)
        )

    async def await_many(self, gate_ids: Sequence[str], timeout: float) -> WaitResult:
        body = {"ids": list(gate_ids), "timeout": timeout}
        data = await self._arequest("POST", "/v1/gates/wait", json=body, read_timeout=timeout + 15)
        return WaitResult.model_validate(data)

    def decide(self, gate_id: str, verdict: Verdict, comment: str = "") -> Gate:
        body = {"decision": verdict.value, "comment": comment}
        return Gate.model_validate(self._request("POST", f"/v1/gates/{gate_id}/decisions", json=body))

    def cancel(self, gate_id: str, reason: str = "") -> Gate:
        return Gate.model_validate(
            self._request("POST", f"/v1/gates/{gate_id}/cancel", json={"reason": reason})
        )

    def me(self) -> Me:
        return Me.model_validate(self._request("GET", "/v1/me"))

    def get_json(self, path: str, **params: str | int) -> Any:
        """GET any route of the service (those plugins add, e.g. ``/v1/lineage/…``) as JSON."""
        return self._request("GET", path, params=params)

    def audit_verify(self) -> VerifyReport:
        """The service's own verification of its audit log (with its key and witnesses)."""
        body = self._request("GET", "/v1/audit/verify")
        return VerifyReport(
            ok=bool(body["ok"]),
            entries=int(body["entries"]),
            head_hash=str(body["head_hash"]),
            checkpoints_checked=int(body["checkpoints_checked"]),
            first_bad_seq=body.get("first_bad_seq"),
            problem=str(body.get("problem") or ""),
            gate=body.get("gate"),
            signed_decisions=int(body.get("signed_decisions") or 0),
        )

    def audit_export(self, fmt: str = "jsonl", since_seq: int = 0) -> Iterator[str]:
        """Every audit event as the service exports it (admin scope), as the text arrives."""
        params: dict[str, str | int] = {"format": fmt, "since_seq": since_seq}
        with self.http.stream("GET", "/v1/audit/export", params=params) as response:
            if not response.is_success:
                response.read()
                self._check(response)
            yield from response.iter_text()

    def consume(self, gate_id: str, binding_hash: str, try_number: int = 1) -> Gate:
        body = {"binding_hash": binding_hash, "try_number": try_number}
        return Gate.model_validate(self._request("POST", f"/v1/gates/{gate_id}/consume", json=body))

    async def aclose(self) -> None:
        """Close the async connections (call from the loop that used them)."""
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    def close(self) -> None:
        """Close the sync connections; async ones die with their event loop (or use ``aclose``)."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        self._async = None


class LocalGateClient:
    """A Gatekeeper in this process, acting as ``actor``. Waits call ``Gatekeeper.poll`` every
    ``poll_s`` and wake at once for decisions made through this client."""

    def __init__(self, gatekeeper: Gatekeeper, actor: Actor, *, poll_s: float = 0.1) -> None:
        self.gatekeeper = gatekeeper
        self.actor = actor
        self.poll_s = poll_s
        self._changed = threading.Condition()

    def _notify(self, gate: Gate) -> Gate:
        with self._changed:
            self._changed.notify_all()
        return gate

    def open(self, request: GateRequest) -> Gate:
        return self.gatekeeper.open(request, submitted_by=self.actor)

    def get(self, gate_id: str) -> Gate:
        """No service sweeps overdue gates behind this client, so it expires an overdue gate itself
        (``Gatekeeper.expire``, audited): a sensor poking ``get`` sees EXPIRED, as it would from
        the service a sweep later. The Gatekeeper's own reads never write."""
        return self.gatekeeper.expire(gate_id)

    def wait(self, gate_id: str, timeout: float) -> Gate:
        result = self.wait_many([gate_id], timeout)
        return result.changed[0] if result.changed else self.gatekeeper.get(gate_id)

    def wait_many(self, gate_ids: Sequence[str], timeout: float) -> WaitResult:
        deadline = time.monotonic() + timeout
        ids = tuple(dict.fromkeys(gate_ids))
        while True:
            seen = self.gatekeeper.poll(ids)  # expires overdue gates, as the service's wait does
            remaining = deadline - time.monotonic()
            if seen.closed or remaining <= 0:
                return WaitResult(changed=seen.closed, pending=seen.pending)
            with self._changed:
                self._changed.wait(min(self.poll_s, remaining))

    async def await_many(self, gate_ids: Sequence[str], timeout: float) -> WaitResult:
        return await asyncio.to_thread(self.wait_many, gate_ids, timeout)

    def decide(self, gate_id: str, verdict: Verdict, comment: str = "") -> Gate:
        return self._notify(
            self.gatekeeper.decide(gate_id, actor=self.actor, verdict=verdict, comment=comment)
        )

    def cancel(self, gate_id: str, reason: str = "") -> Gate:
        return self._notify(self.gatekeeper.cancel(gate_id, actor=self.actor, reason=reason))

    def consume(self, gate_id: str, binding_hash: str, try_number: int = 1) -> Gate:
        return self.gatekeeper.consume(
            gate_id, actor=self.actor, binding_hash=binding_hash, try_number=try_number
        )

    def me(self) -> Me:
        principal = self.gatekeeper.directory.get(self.actor.principal_id)
        # in-process the caller holds the gatekeeper itself: every scope is theirs
        return Me.of(principal, self.actor.via, Scope.ADMIN)

    def close(self) -> None:
        """The gatekeeper belongs to the caller; nothing to release."""
