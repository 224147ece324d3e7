"""Gatekeeper: the gate core's application service. Every way in (CLI, HTTP API, Slack, console,
orchestrator adapters) ends in one of these methods, so every path obeys the same rules and
writes the same audit trail.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gate_core._audit import (
    AuditDraft,
    Checkpoint,
    CheckpointSigner,
    Event,
    VerifyReport,
    redact_parameters,
    verify_chain,
)
from gate_core._errors import (
    AlreadyDecided,
    ApprovalNotUsable,
    AuthenticationFailed,
    DecisionRefused,
    GateExpired,
    GatehouseError,
    IdempotencyConflict,
    InvalidInput,
    NotTheRequester,
    SubmitterNotAllowed,
)
from gate_core._ids import new_gate_id
from gate_core._models import (
    SYSTEM_ACTOR,
    Actor,
    Decision,
    Gate,
    GateRequest,
    GateStatus,
    Principal,
    PrincipalKind,
    Verdict,
    check_text,
)
from gate_core._policy import Outcome, Policy, evaluate
from gate_core._ports import Clock, GateFilter, GateStore, Mutation, SystemClock
from gate_core._rules import is_expired, is_requester, judge_decision, refuse_if_closed
from gate_core._tokens import ApiToken, Scope, hash_secret, new_token, secret_matches, split_token
from gate_core.identity import IdentitySource

log = logging.getLogger("gatehouse")
_EXTENSION_EVENT = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*$")
# Extensions append under their own area ("lineage."), never the core's ("gate.", "decision."…).
_CORE_AREAS = frozenset(v.split(".")[0] for k, v in vars(Event).items() if k.isupper())


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """One person's decision on one gate, as ``Gatekeeper.decide_many`` takes it."""

    gate_id: str
    actor: Actor
    verdict: Verdict
    comment: str = ""
    principal: Principal | None = None  # already verified by an identity adapter, else the directory


def _storable(value: Any, what: str) -> None:
    try:
        check_text(value, what)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _request_record(request: GateRequest) -> dict[str, Any]:
    """The request as the audit trail records it: names, tags and hashes — never secrets."""
    data = request.model_dump(mode="json")
    data["parameters"] = redact_parameters(request.parameters)
    return data


class Gatekeeper:
    def __init__(
        self,
        store: GateStore,
        directory: IdentitySource,
        policy: Policy,
        *,
        clock: Clock | None = None,
        signer: CheckpointSigner | None = None,
        witness_path: Path | None = None,
        checkpoint_every: int = 256,
    ) -> None:
        self.store = store
        self.directory = directory
        self.policy = policy
        self.clock: Clock = clock or SystemClock()
        self.signer = signer
        self.witness_path = witness_path
        self.checkpoint_every = checkpoint_every
        self._checkpointed_at: int | None = None  # store.appended when this process last signed

    # ------------------------------------------------------------ configuration events

    def record_configuration(self, policy_text: str | None = None) -> None:
        """Audit the policy and directory in force, once per distinct version."""
        now = self.clock.now()
        if policy_text is not None and self.store.record_config(
            "policy", self.policy.hash, self.policy.source, policy_text, now
        ):
            self.store.append_audit(
                [
                    AuditDraft(
                        Event.POLICY_LOADED,
                        now,
                        SYSTEM_ACTOR,
                        payload={
                            "hash": self.policy.hash,
                            "source": self.policy.source,
                            "rules": [r.name for r in self.policy.rules],
                        },
                    )
                ]
            )
        directory_hash = self.directory.content_hash
        if self.store.record_config("directory", directory_hash, "directory", "", now):
            self.store.append_audit(
                [
                    AuditDraft(
                        Event.DIRECTORY_LOADED,
                        now,
                        SYSTEM_ACTOR,
                        payload={"hash": directory_hash, "principals": sorted(p.id for p in self.directory)},
                    )
                ]
            )
        self._maybe_checkpoint()

    # ------------------------------------------------------------ opening

    def open(self, request: GateRequest, *, submitted_by: Actor) -> Gate:
        """Open a gate (or return the one its idempotency key already names)."""
        return self.open_or_find(request, submitted_by=submitted_by)[0]

    def open_or_find(self, request: GateRequest, *, submitted_by: Actor) -> tuple[Gate, bool]:
        """Like ``open``, also saying whether the gate is new (False: found by idempotency key)."""
        submitter = self.directory.get(submitted_by.principal_id)
        requester = self.directory.get(request.requester)
        if not submitter.is_same_person(requester) and submitter.kind is not PrincipalKind.SERVICE:
            raise SubmitterNotAllowed(
                f"{submitter.id} may not open a gate on behalf of {requester.id}; "
                "only service principals act for others"
            )
        if request.requester != requester.id:  # named by alias or e-mail: record the directory's id
            request = request.model_copy(update={"requester": requester.id})
        binding_hash = request.binding_hash()
        now = self.clock.now()
        decision = evaluate(request, requester, self.policy)
        identities = tuple(dict.fromkeys(requester.identity_keys + submitter.identity_keys))
        status = GateStatus.PENDING
        decided_at = None
        if decision.outcome is Outcome.ALLOW:
            status, decided_at = GateStatus.APPROVED, now
        elif decision.outcome is Outcome.DENY:
            status, decided_at = GateStatus.REJECTED, now
        gate = Gate(
            id=new_gate_id(),
            status=status,
            request=request,
            submitted_by=submitter.id,
            requester_identities=identities,
            binding_hash=binding_hash,
            policy_hash=decision.policy_hash,
            rule=decision.rule,
            matched_rules=decision.matched_rules,
            explanation=decision.explanation,
            required_approvals=decision.required_approvals,
            approver_groups=decision.approver_groups,
            break_glass_groups=decision.break_glass_groups,
            notify=decision.notify,
            created_at=now,
            expires_at=now + decision.expiry,
            remind_at=now + decision.reminder if decision.reminder and status is GateStatus.PENDING else None,
            decided_at=decided_at,
        )
        actor = submitted_by.model_copy(update={"principal_id": submitter.id, "email": submitter.email})
        events = [
            AuditDraft(
                Event.GATE_REQUESTED,
                now,
                actor,
                gate.id,
                {"request": _request_record(request), "binding_hash": binding_hash},
            ),
            AuditDraft(
                Event.POLICY_EVALUATED,
                now,
                SYSTEM_ACTOR,
                gate.id,
                {
                    "policy_hash": decision.policy_hash,
                    "outcome": decision.outcome.value,
                    "rule": decision.rule,
                    "matched_rules": list(decision.matched_rules),
                    "explanation": decision.explanation,
                    "required_approvals": decision.required_approvals,
                    "approver_groups": list(decision.approver_groups),
                    "expires_at": gate.expires_at.isoformat(),
                },
            ),
        ]
        if status is not GateStatus.PENDING:
            closing = Event.GATE_APPROVED if status is GateStatus.APPROVED else Event.GATE_REJECTED
            events.append(
                AuditDraft(closing, now, SYSTEM_ACTOR, gate.id, {"by": "policy", "rule": decision.rule})
            )
        stored, created = self.store.create_gate(gate, events)
        if not created and stored.binding_hash != binding_hash:
            raise IdempotencyConflict(request.idempotency_key or "", stored.id)
        if not created:
            return self.get(stored.id), False  # a retried step finds its gate, expired if its time has passed
        self._maybe_checkpoint()
        return stored, True

    # ------------------------------------------------------------ deciding

    def decide(
        self,
        gate_id: str,
        *,
        actor: Actor,
        verdict: Verdict,
        comment: str = "",
        principal: Principal | None = None,
    ) -> Gate:
        """Record one person's decision.

        ``principal`` is the identity an adapter has already verified (an OIDC token's person with
        the IdP's groups); without it the actor is looked up in the directory. Either way the same
        rules apply. Raises the DecisionRefused subclass that explains a refusal (audited too)."""
        [result] = self.decide_many([DecisionRequest(gate_id, actor, verdict, comment, principal)])
        if isinstance(result, GatehouseError):
            raise result
        return result

    def decide_many(self, requests: Sequence[DecisionRequest]) -> list[Gate | GatehouseError]:
        """Decide many gates in one transaction (group commit); one result per request, in order:
        the gate as that decision left it, or the error that refused it. Same rules, same audit
        entries as ``decide``; only the database work is shared."""
        results: list[Gate | GatehouseError | None] = [None] * len(requests)
        changes: list[tuple[str, Callable[[Gate], Mutation]]] = []
        positions: list[int] = []
        for index, request in enumerate(requests):
            try:
                changes.append((request.gate_id, self._decision_change(request)))
                positions.append(index)
            except GatehouseError as refused:
                results[index] = refused
        for index, outcome in zip(positions, self.store.mutate_many(changes), strict=True):
            results[index] = outcome
        self._maybe_checkpoint()
        return [r for r in results if r is not None]

    def _decision_change(self, request: DecisionRequest) -> Callable[[Gate], Mutation]:
        _storable(request.comment, "comment")
        if request.principal is not None and request.principal.id != request.actor.principal_id:
            raise ValueError("the verified principal and the acting principal must be the same")
        principal = request.principal or self.directory.get(request.actor.principal_id)
        # the audit names the directory's id even when the actor came by alias or e-mail
        actor = request.actor.model_copy(update={"principal_id": principal.id, "email": principal.email})
        verdict, comment = request.verdict, request.comment

        def change(gate: Gate) -> Mutation:
            now = self.clock.now()
            if is_expired(gate, now):
                return self._expire(
                    gate,
                    now,
                    raise_after=GateExpired(
                        f"gate {gate.id} expired at {_when(gate.expires_at)}; its step must not run"
                    ),
                )
            try:
                effect = judge_decision(gate, principal, verdict, now)
            except DecisionRefused as refusal:
                return Mutation(
                    events=[
                        AuditDraft(
                            Event.DECISION_REFUSED,
                            now,
                            actor,
                            gate.id,
                            {"verdict": verdict.value, "reason": refusal.code, "message": str(refusal)},
                        )
                    ],
                    raise_after=refusal,
                )
            decision = Decision(
                principal_id=principal.id,
                email=principal.email,
                display_name=principal.label,
                verdict=verdict,
                comment=comment,
                at=now,
                via=actor.via,
                break_glass=effect.break_glass,
            )
            events = [
                AuditDraft(
                    Event.DECISION_RECORDED,
                    now,
                    actor,
                    gate.id,
                    {
                        "verdict": verdict.value,
                        "comment": comment,
                        "break_glass": effect.break_glass,
                        "approvals": effect.approvals_after,
                        "required": gate.required_approvals,
                        "binding_hash": gate.binding_hash,
                    },
                )
            ]
            if effect.new_status is GateStatus.PENDING:
                return Mutation(events=events, decision=decision, person_key=principal.person_key)
            deciders = (
                (*(d.principal_id for d in gate.approvals), principal.id)
                if effect.new_status is GateStatus.APPROVED
                else (principal.id,)
            )
            closing = Event.GATE_APPROVED if effect.new_status is GateStatus.APPROVED else Event.GATE_REJECTED
            payload: dict[str, Any] = {"by": list(deciders)}
            if effect.break_glass:
                payload["break_glass"] = True
                payload["warning"] = f"BREAK-GLASS approval by {principal.id} alone; review required"
                log.warning("break-glass approval of gate %s by %s", gate.id, principal.id)
            events.append(AuditDraft(closing, now, actor, gate.id, payload))
            return Mutation(
                events=events,
                status=effect.new_status,
                decided_at=now,
                decided_by=deciders,
                decision=decision,
                person_key=principal.person_key,
            )

        return change

    def approve(self, gate_id: str, *, actor: Actor, comment: str = "") -> Gate:
        return self.decide(gate_id, actor=actor, verdict=Verdict.APPROVE, comment=comment)

    def reject(self, gate_id: str, *, actor: Actor, reason: str) -> Gate:
        return self.decide(gate_id, actor=actor, verdict=Verdict.REJECT, comment=reason)

    # ------------------------------------------------------------ cancel, consume, expire

    def cancel(self, gate_id: str, *, actor: Actor, reason: str = "") -> Gate:
        """The requester (or submitting pipeline) withdraws a pending gate."""
        _storable(reason, "reason")
        principal = self.directory.get(actor.principal_id)

        def change(gate: Gate) -> Mutation:
            now = self.clock.now()
            if is_expired(gate, now):
                return self._expire(gate, now, raise_after=GateExpired(f"gate {gate.id} already expired"))
            refuse_if_closed(gate, now)
            if not is_requester(gate, principal):
                raise NotTheRequester(
                    f"{principal.id} did not request gate {gate.id}; only its requester may cancel it"
                )
            return Mutation(
                events=[AuditDraft(Event.GATE_CANCELLED, now, actor, gate.id, {"reason": reason})],
                status=GateStatus.CANCELLED,
                decided_at=now,
                decided_by=(principal.id,),
            )

        gate = self.store.mutate(gate_id, change)
        self._maybe_checkpoint()
        return gate

    def consume(self, gate_id: str, *, actor: Actor, binding_hash: str, try_number: int = 1) -> Gate:
        """Mark that the step ran under this approval. Only an approved gate, within its expiry,
        for exactly the payload it was approved for; a retry of the same step may consume again
        within the expiry (the approval is single-use per request, not per attempt)."""

        def change(gate: Gate) -> Mutation:
            now = self.clock.now()
            if gate.status not in (GateStatus.APPROVED, GateStatus.CONSUMED):
                raise ApprovalNotUsable(
                    f"gate {gate.id} is {gate.status.value}, not APPROVED; the step must not run"
                )
            if now >= gate.expires_at:
                raise ApprovalNotUsable(f"the approval of gate {gate.id} expired at {_when(gate.expires_at)}")
            if binding_hash != gate.binding_hash:
                raise ApprovalNotUsable(
                    f"gate {gate.id} was approved for other action, parameters or datasets; open a new gate"
                )
            return Mutation(
                events=[
                    AuditDraft(
                        Event.GATE_CONSUMED,
                        now,
                        actor,
                        gate.id,
                        {"try_number": try_number, "binding_hash": binding_hash},
                    )
                ],
                status=GateStatus.CONSUMED,
                consumed_at=now if gate.consumed_at is None else None,
            )

        gate = self.store.mutate(gate_id, change)
        self._maybe_checkpoint()
        return gate

    def _expire(self, gate: Gate, now: datetime, raise_after: DecisionRefused | None = None) -> Mutation:
        return Mutation(
            events=[
                AuditDraft(
                    Event.GATE_EXPIRED,
                    now,
                    SYSTEM_ACTOR,
                    gate.id,
                    {
                        "expires_at": gate.expires_at.isoformat(),
                        "approvals": len(gate.approvals),
                        "required": gate.required_approvals,
                    },
                )
            ],
            status=GateStatus.EXPIRED,
            decided_at=now,
            decided_by=(),
            raise_after=raise_after,
        )

    def expire_due(self) -> list[Gate]:
        """Move every overdue PENDING gate to EXPIRED. Safe to run from many replicas at once."""
        expired = []
        for gate_id in self.store.due_for_expiry(self.clock.now()):

            def change(gate: Gate) -> Mutation:
                now = self.clock.now()
                return self._expire(gate, now) if is_expired(gate, now) else Mutation()

            gate = self.store.mutate(gate_id, change)
            if gate.status is GateStatus.EXPIRED:
                expired.append(gate)
        if expired:
            self._maybe_checkpoint()
        return expired

    # ------------------------------------------------------------ reading

    def get(self, gate_id: str) -> Gate:
        gate = self.store.get_gate(gate_id)
        if is_expired(gate, self.clock.now()):
            gate = self.store.mutate(
                gate_id,
                lambda g: (
                    self._expire(g, self.clock.now()) if is_expired(g, self.clock.now()) else Mutation()
                ),
            )
        return gate

    def list(self, query: GateFilter | None = None) -> list[Gate]:
        query = query or GateFilter()
        _storable([query.action, query.dataset, query.requester, *query.ids], "filter")
        self.expire_due()
        return self.store.list_gates(query)

    # ------------------------------------------------------------ API tokens

    def create_token(
        self,
        principal_id: str,
        scope: Scope,
        *,
        created_by: Actor,
        description: str = "",
        expires_in: timedelta | None = None,
    ) -> tuple[ApiToken, str]:
        """Create a token; returns it with the one-time secret string. Only the hash is stored."""
        principal = self.directory.get(principal_id)
        now = self.clock.now()
        token_id, secret, token_string = new_token()
        token = ApiToken(
            id=token_id,
            principal_id=principal.id,
            scope=scope,
            description=description,
            created_at=now,
            created_by=created_by.principal_id,
            expires_at=now + expires_in if expires_in else None,
        )
        payload = {
            "token_id": token_id,
            "principal": principal.id,
            "scope": scope.value,
            "kind": principal.kind.value,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        }
        self.store.add_token(
            token, hash_secret(secret), [AuditDraft(Event.TOKEN_CREATED, now, created_by, None, payload)]
        )
        self._maybe_checkpoint()
        return token, token_string

    def revoke_token(self, token_id: str, *, actor: Actor) -> bool:
        now = self.clock.now()
        revoked = self.store.revoke_token(
            token_id, now, [AuditDraft(Event.TOKEN_REVOKED, now, actor, None, {"token_id": token_id})]
        )
        if revoked:
            self._maybe_checkpoint()
        return revoked

    def authenticate_token(self, token_string: str) -> tuple[Principal, ApiToken]:
        """The principal behind a bearer token, or AuthenticationFailed (never says which part was wrong)."""
        parts = split_token(token_string)
        found = self.store.get_token(parts[0]) if parts else None
        if parts is None or found is None or not secret_matches(parts[1], found[1]):
            raise AuthenticationFailed("invalid API token")
        token, _ = found
        if not token.usable_at(self.clock.now()):
            raise AuthenticationFailed("API token expired or revoked")
        principal = self.directory.find(token.principal_id)
        if principal is None:
            raise AuthenticationFailed(
                f"API token's principal {token.principal_id!r} is no longer in the directory"
            )
        return principal, token

    # ------------------------------------------------------------ audit

    def record_event(
        self, event: str, *, actor: Actor, payload: Mapping[str, Any], gate_id: str | None = None
    ) -> None:
        """Append an extension's event (e.g. ``lineage.retention_purged``) to the audit trail,
        chained and checkpointed like the core's own. The core's areas are refused, so no
        caller can forge a gate's history; the payload must be JSON and must not hold secrets
        or contents (it is hashed into the chain and exported as is)."""
        if not _EXTENSION_EVENT.match(event) or event.split(".")[0] in _CORE_AREAS:
            raise InvalidInput(
                f"audit event {event!r} must be 'area.name' in lower case, in an area that is not "
                f"the core's own ({', '.join(sorted(_CORE_AREAS))})"
            )
        _storable(dict(payload), "audit payload")
        self.store.append_audit([AuditDraft(event, self.clock.now(), actor, gate_id, dict(payload))])
        self._maybe_checkpoint()

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head. Also appended to the witness file, outside the database."""
        if self.signer is None:
            return None
        size, head = self.store.audit_head()
        checkpoint = self.signer.sign(size, head, self.clock.now())
        self.store.add_checkpoint(checkpoint)
        if self.witness_path is not None:
            with self.witness_path.open("a", encoding="utf-8") as witness:
                witness.write(checkpoint.to_json() + "\n")
        self._checkpointed_at = self.store.appended
        return checkpoint

    def _maybe_checkpoint(self) -> None:
        """Sign when the log has none yet, then after every ``checkpoint_every`` entries this
        process appended (counted in memory: no read on the hot path). The service's sweeper
        also signs whenever the head moved, so no tail stays unsigned for long."""
        if self.signer is None:
            return
        if self._checkpointed_at is None:
            if not self.store.checkpoints():
                self.checkpoint()
                return
            self._checkpointed_at = 0
        if self.store.appended - self._checkpointed_at >= self.checkpoint_every:
            self.checkpoint()

    def verify_audit(self, extra_checkpoints: Iterable[Checkpoint] = ()) -> VerifyReport:
        public_key = self.signer.public_key if self.signer else None
        marks = list(self.store.checkpoints()) + list(extra_checkpoints)
        return verify_chain(self.store.audit_rows(), marks, public_key)


def principal_may_decide(gate: Gate, principal: Principal, now: datetime) -> str | None:
    """Why ``principal`` may not approve ``gate`` right now, or None if they may (for UIs)."""
    try:
        judge_decision(gate, principal, Verdict.APPROVE, now)
    except (DecisionRefused, AlreadyDecided) as refusal:
        return str(refusal)
    return None
