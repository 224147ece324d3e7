"""Gatekeeper: the gate core's application service. Every way in (CLI, HTTP API, Slack, Teams,
console, orchestrator adapters, the service's sweeper) ends in one of these methods or in one of
its two siblings on the same store, so every path obeys the same rules and writes the same audit
trail:

    gatekeeper            open, decide, cancel, consume, expire, poll (waiters), due_reminders,
                          notification bookkeeping, get/list
    gatekeeper.tokens     TokenService: create, revoke, list, authenticate API tokens
    gatekeeper.audit      AuditService: extension events, checkpoints, verify, entries

Reads never write. A gate past its expiry is moved to EXPIRED (audited) only by an explicit call:
``expire``/``expire_due`` (the sweeper, the CLI) or ``poll`` (every wait); until then it may
read PENDING, but deciding or consuming it is refused inside the store's atomic ``mutate``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gate_core._audit import AuditDraft, CheckpointSigner, Event, redact_parameters
from gate_core._audit_service import AuditService
from gate_core._classify import DatasetClassifier, classify_request
from gate_core._eligibility import is_expired, is_requester, judge_decision, refuse_if_closed
from gate_core._errors import (
    AlreadyDecided,
    ApprovalNotUsable,
    DecisionRefused,
    DepartedRefused,
    GateExpired,
    GatehouseError,
    IdempotencyConflict,
    NotTheRequester,
    PrincipalDeparted,
    StoreUnavailable,
    SubmitterNotAllowed,
)
from gate_core._ids import new_gate_id
from gate_core._limits import enforce_limits
from gate_core._models import (
    SYSTEM_ACTOR,
    Actor,
    Decision,
    Gate,
    GateRequest,
    GateStatus,
    Involved,
    Principal,
    PrincipalKind,
    Verdict,
    require_storable,
)
from gate_core._observer import GateObserver, Observers
from gate_core._passkey_service import PasskeyService
from gate_core._passkeys import (
    SIGNATURE_PASSKEY,
    Passkey,
    PasskeyAssertion,
    SignatureInvalid,
    SignatureRequired,
    counter_problem,
    decision_challenge,
    verify_assertion,
)
from gate_core._policy import Outcome, Policy, PolicyDecision, evaluate
from gate_core._ports import Clock, GateFilter, GateState, GateStore, Mutation, NotificationRef, SystemClock
from gate_core._token_service import TokenService
from gate_core.identity import AuthMethod, IdentitySource, has_departed, identity_key
from gate_core.identity._source import pinned

log = logging.getLogger("gatehouse")


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """One person's decision on one gate, as ``Gatekeeper.decide_many`` takes it."""

    gate_id: str
    actor: Actor
    verdict: Verdict
    comment: str = ""
    principal: Principal | None = None  # already verified by an identity adapter, else the directory
    assertion: PasskeyAssertion | None = None  # the decider's passkey signing this decision


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _request_record(request: GateRequest) -> dict[str, Any]:
    """The request as the audit trail records it: names, tags and hashes — never secrets."""
    data = request.model_dump(mode="json")
    data["parameters"] = redact_parameters(request.parameters)
    return data


def _evaluation_record(decision: PolicyDecision, binding_hash: str) -> dict[str, Any]:
    """What the audit trail records of a policy decision (``policy.evaluated``, with the gate's
    ``expires_at``): among it, everything a gate's approval stands on, which audit verify compares
    with the stored gate."""
    return {
        "policy_hash": decision.policy_hash,
        "outcome": decision.outcome.value,
        "rule": decision.rule,
        "matched_rules": list(decision.matched_rules),
        "explanation": decision.explanation,
        "required_approvals": decision.required_approvals,
        "approver_groups": list(decision.approver_groups),
        "break_glass_groups": list(decision.break_glass_groups),
        "requirements": [r.model_dump(mode="json") for r in decision.requirements],
        "identified_by": list(decision.identified_by),
        # a signed rule names the binding hash every signature must cover (offline verify)
        **({"signature": decision.signature, "binding_hash": binding_hash} if decision.signature else {}),
    }


BadRecord = Callable[[str, Exception], None]
"""Told of a gate a background pass had to skip: its id and what went wrong."""


def _bad_record(duty: str, gate_id: str, exc: Exception, on_bad_record: BadRecord | None) -> None:
    log.error("%s skipped gate %s: %s: %s", duty, gate_id, type(exc).__name__, exc)
    if on_bad_record is not None:
        on_bad_record(gate_id, exc)


@dataclass(frozen=True, slots=True)
class WaitSnapshot:
    """What ``Gatekeeper.poll`` saw: each known gate's status and expiry, and the whole gates of
    those that have left PENDING."""

    states: dict[str, GateState]
    closed: list[Gate]

    @property
    def pending(self) -> list[str]:
        return [gate_id for gate_id, s in self.states.items() if s.status.is_open]


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
        self.policy = policy
        self.clock: Clock = clock or SystemClock()
        self.audit = AuditService(
            store, self.clock, signer=signer, witness_path=witness_path, checkpoint_every=checkpoint_every
        )
        self.tokens = TokenService(store, directory, self.clock, self.audit)
        self.passkeys = PasskeyService(store, self.clock, self.audit)
        # Where a person signs a decision a rule wants signed; set by the service (public URL).
        self.console_url = ""
        self._directory = directory
        self.classifiers: list[DatasetClassifier] = []
        self.observers = Observers()

    def add_observer(self, observer: GateObserver) -> None:
        """Tell ``observer`` of every gate opened, decision recorded or refused, approval used and
        violation found from now on (gate_core._observer), after each is committed."""
        self.observers.add(observer)

    def violation_found(self, gate: Gate, kind: str) -> None:
        """An extension found that a run of ``gate`` went beyond its approval, and has stored and
        audited the finding (lineage's ``out_of_scope``): tell the observers, so the service's
        metrics count it. The finding itself is the extension's; the core only passes the word on."""
        self.observers.violation_found(gate, kind)

    def add_classifier(self, classifier: DatasetClassifier) -> None:
        """Classify every dataset of every gate opened from now on (gate_core._classify)."""
        self.classifiers.append(classifier)

    @property
    def directory(self) -> IdentitySource:
        return self._directory

    @directory.setter
    def directory(self, source: IdentitySource) -> None:
        """Swap the identity source (a reloaded directory) for every service that reads it."""
        self._directory = source
        self.tokens.directory = source

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
        directory = pinned(self.directory)  # the hash and the content audited are of one version
        directory_hash = directory.content_hash
        if self.store.record_config("directory", directory_hash, "directory", "", now):
            self.store.append_audit(
                [
                    AuditDraft(
                        Event.DIRECTORY_LOADED,
                        now,
                        SYSTEM_ACTOR,
                        payload={
                            "hash": directory_hash,
                            "principals": sorted(p.id for p in directory),
                            # the version's full content, so an auditor can tell who was in
                            # which group from the trail alone (not just that something changed)
                            "content": [
                                {
                                    "id": p.id,
                                    "email": p.email,
                                    "kind": p.kind.value,
                                    "groups": sorted(p.groups),
                                }
                                for p in sorted(directory, key=lambda p: p.id)
                            ],
                        },
                    )
                ]
            )
        self.audit.maybe_checkpoint()

    # ------------------------------------------------------------ opening

    def open(self, request: GateRequest, *, submitted_by: Actor) -> Gate:
        """Open a gate (or return the one its idempotency key already names)."""
        return self.open_or_find(request, submitted_by=submitted_by)[0]

    def open_or_find(self, request: GateRequest, *, submitted_by: Actor) -> tuple[Gate, bool]:
        """Like ``open``, also saying whether the gate is new (False: found by idempotency key)."""
        enforce_limits(request)  # before anything is written: every reader must read it back
        directory = pinned(self.directory)  # every lookup below from one reading of the directory
        submitter = directory.get(submitted_by.principal_id)
        requester = directory.get(request.requester)
        if not submitter.is_same_person(requester) and submitter.kind is not PrincipalKind.SERVICE:
            raise SubmitterNotAllowed(
                f"{submitter.id} may not open a gate on behalf of {requester.id}; "
                "only service principals act for others"
            )
        if request.requester != requester.id:  # named by alias or e-mail: record the directory's id
            request = request.model_copy(update={"requester": requester.id})
        request, tag_sources = classify_request(request, self.classifiers)  # before the policy sees it
        binding_hash = request.binding_hash()
        now = self.clock.now()
        decision = evaluate(request, requester, self.policy, now)
        involved = self._involved(request, requester, submitter, submitted_by)
        identities = tuple(
            dict.fromkeys(key for person in involved for key in self._keys_of(person.principal, directory))
        )
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
            involved=involved,
            binding_hash=binding_hash,
            policy_hash=decision.policy_hash,
            rule=decision.rule,
            matched_rules=decision.matched_rules,
            explanation=decision.explanation,
            required_approvals=decision.required_approvals,
            approver_groups=decision.approver_groups,
            break_glass_groups=decision.break_glass_groups,
            identified_by=decision.identified_by,
            notify=decision.notify,
            created_at=now,
            expires_at=now + decision.expiry,
            remind_at=now + decision.reminder if decision.reminder and status is GateStatus.PENDING else None,
            decided_at=decided_at,
            tag_sources=tag_sources,
            requirements=decision.requirements,
            signature=decision.signature,
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
                {**_evaluation_record(decision, binding_hash), "expires_at": gate.expires_at.isoformat()},
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
        if not created:  # a retried step finds its gate, expired (audited) if its time has passed
            return (self.expire(stored.id) if is_expired(stored, now) else stored), False
        self.audit.maybe_checkpoint()
        self.observers.gate_opened(stored)
        return stored, True

    def _involved(
        self, request: GateRequest, requester: Principal, submitter: Principal, submitted_by: Actor
    ) -> tuple[Involved, ...]:
        """Everyone involved, each with the source of the claim: the requester, the submitting
        credential's principal, every person the run names (the orchestrator's record and the
        pipeline's words alike) and the pipeline's owners in the policy. None of them decides."""
        people = [
            Involved(principal=requester.id, source="requester"),
            Involved(principal=submitter.id, source=f"submitted the request ({submitted_by.via.value})"),
            *request.involved,
            *(
                Involved(principal=owner, source=f"owner of pipelines {glob!r} (policy)")
                for owner, glob in self.policy.owners_of(request.run.pipeline)
            ),
        ]
        return tuple(dict.fromkeys(people))

    def _directory_person(self, verified: Principal, directory: IdentitySource) -> Principal:
        """A principal proven by another channel (an IdP's subject and e-mail) is the directory's
        person when it shares a canonical identity with one — by id, alias or e-mail — and decides
        as that person, with the directory's groups (a channel may narrow them, never add one).
        Without this, "same person" is not transitive: an IdP account sharing bob's mailbox and
        another sharing his (look-alike) id would each be bob yet not each other, and meet a
        two-person rule. An identity naming two people is refused."""
        keys = set(verified.identity_keys)
        matches = {p.id: p for p in directory if keys & set(p.identity_keys)}
        by_name = directory.find(verified.id)
        if by_name is not None:
            matches[by_name.id] = by_name
        if not matches:
            return verified
        if len(matches) > 1:
            raise DecisionRefused(
                f"{verified.id}: this identity matches {' and '.join(sorted(matches))} in the directory; "
                "one identity is one person, so it decides nothing"
            )
        [known] = matches.values()
        if known.id == verified.id:  # the channel already resolved it (groups narrowed, never added)
            return known.model_copy(update={"groups": known.groups & verified.groups})
        return known  # another identity of the directory's person: the directory's groups, no channel's

    def _keys_of(self, name: str, directory: IdentitySource) -> tuple[str, ...]:
        """The identity keys a name stands for: the directory principal's when it knows the name
        (id, alias or e-mail), else the name itself as id — and as e-mail when it is one — so an
        unknown name still excludes whoever later turns out to have it."""
        principal = directory.find(name)
        if principal is not None:
            return principal.identity_keys
        keys = [identity_key("id", name)]
        if "@" in name:
            keys.append(identity_key("email", name))
        return tuple(keys)

    # ------------------------------------------------------------ deciding

    def decide(
        self,
        gate_id: str,
        *,
        actor: Actor,
        verdict: Verdict,
        comment: str = "",
        principal: Principal | None = None,
        assertion: PasskeyAssertion | None = None,
    ) -> Gate:
        """Record one person's decision.

        ``principal`` is the identity an adapter has already verified (an OIDC token's person with
        the IdP's groups); without it the actor is looked up in the directory. Either way the same
        rules apply. ``assertion`` is the person's passkey signing exactly this decision; a gate
        whose rule requires one is never decided without it. Raises the DecisionRefused subclass
        that explains a refusal (audited too)."""
        request = DecisionRequest(gate_id, actor, verdict, comment, principal, assertion)
        [result] = self.decide_many([request])
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
        counters: dict[int, tuple[Passkey, int]] = {}  # request index → key and its new counter
        # One reading of the directory for the whole batch, taken after every request in it
        # arrived: a departure or group change committed before a request still governs it.
        directory = pinned(self.directory)
        for index, request in enumerate(requests):
            try:
                changes.append((request.gate_id, self._decision_change(request, directory, counters, index)))
                positions.append(index)
            except GatehouseError as refused:
                results[index] = refused
        for index, outcome in zip(positions, self.store.mutate_many(changes), strict=True):
            results[index] = outcome
            if isinstance(outcome, Gate) and index in counters:
                key, new_count = counters[index]
                if not self.store.advance_sign_count(key.credential_id, key.sign_count, new_count):
                    log.error(
                        "passkey %s of %s: signature counter moved concurrently (cloned authenticator?)",
                        key.credential_id[:16],
                        key.principal_id,
                    )
        self.audit.maybe_checkpoint()
        done = [r for r in results if r is not None]
        for request, result in zip(requests, done, strict=True):
            if isinstance(result, GatehouseError):
                self.observers.refused("decide", result.code, request.actor.via)
            else:
                self.observers.decision_recorded(result, request.verdict, request.actor.via)
        return done

    def _signed(
        self,
        gate: Gate,
        principal: Principal,
        request: DecisionRequest,
        key: Passkey | None,
    ) -> tuple[dict[str, Any], int] | None:
        """The verified signature of this decision for the audit entry (and the key's new counter),
        None when the gate takes none; refuses a signed rule's decision without a valid one."""
        assertion = request.assertion
        if gate.signature != SIGNATURE_PASSKEY and assertion is None:
            return None
        if assertion is None:
            where = f"{self.console_url or 'the Gatehouse console at /console'}/gates/{gate.id}"
            raise SignatureRequired(
                f"gate {gate.id} needs a decision signed with your passkey (rule {gate.rule!r}); "
                f"this channel cannot sign it — decide in the console: {where}"
            )
        if key is None or key.principal_id != principal.id:
            raise SignatureInvalid(
                f"{principal.id}: the passkey that signed this decision is not registered to you"
            )
        challenge = decision_challenge(gate.id, gate.binding_hash, request.verdict.value, request.comment)
        new_count = verify_assertion(assertion, key, challenge)
        problem = counter_problem(key.sign_count, new_count)
        if problem is not None:
            raise SignatureInvalid(f"{principal.id}: {problem}")
        return {**assertion.record(), "sign_count": new_count}, new_count

    def _decision_change(
        self,
        request: DecisionRequest,
        directory: IdentitySource,
        counters: dict[int, tuple[Passkey, int]] | None = None,
        index: int = 0,
    ) -> Callable[[Gate], Mutation]:
        require_storable(request.comment, "comment")
        key = self.store.get_passkey(request.assertion.credential_id) if request.assertion else None
        if request.principal is not None and request.principal.id != request.actor.principal_id:
            raise ValueError("the verified principal and the acting principal must be the same")
        names = [request.actor.principal_id, request.actor.email]
        if request.principal is not None:
            names.append(request.principal.email)
        departed = next((n for n in names if n and has_departed(directory, n)), None)
        if departed is not None:
            return self._refused_departed(departed, request)
        if request.principal is not None:
            principal = self._directory_person(request.principal, directory)
        else:
            principal = directory.get(request.actor.principal_id)
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
                effect = judge_decision(gate, principal, verdict, now, via=actor.via)
                signed = self._signed(gate, principal, request, key)
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
                counts_for=effect.counts_for,
                issuer=actor.issuer,
                subject=actor.subject,
                passkey=request.assertion.credential_id if signed and request.assertion else None,
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
                        **({"passkey": signed[0]} if signed else {}),
                    },
                )
            ]
            if signed and key is not None and counters is not None:
                counters[index] = (key, signed[1])
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

    def _refused_departed(self, name: str, request: DecisionRequest) -> Callable[[Gate], Mutation]:
        """Someone the IdP deactivated or deleted: refused on the gate, and audited there, whatever
        channel still carried their click (a Slack button, a console session, an IdP token)."""
        refusal = DepartedRefused(
            f"{name} has left the directory (deactivated or deleted by the identity provider) and "
            "decides nothing"
        )

        def change(gate: Gate) -> Mutation:
            payload = {
                "verdict": request.verdict.value,
                "reason": refusal.code,
                "message": str(refusal),
            }
            return Mutation(
                events=[
                    AuditDraft(Event.DECISION_REFUSED, self.clock.now(), request.actor, gate.id, payload)
                ],
                raise_after=refusal,
            )

        return change

    def refuse_departed(self, error: PrincipalDeparted, attempt: str) -> None:
        """Audit a departed person's attempt that a channel refused before any gate was named
        (a revoked token, an ended console session): who, over what, and what they tried."""
        actor = Actor(principal_id=error.identity[:200], via=AuthMethod(error.via))
        payload = {"reason": error.code, "attempt": attempt[:300], "message": str(error)}
        self.store.append_audit([AuditDraft(Event.ACCESS_REFUSED, self.clock.now(), actor, None, payload)])
        self.audit.maybe_checkpoint()

    def approve(self, gate_id: str, *, actor: Actor, comment: str = "") -> Gate:
        return self.decide(gate_id, actor=actor, verdict=Verdict.APPROVE, comment=comment)

    def reject(self, gate_id: str, *, actor: Actor, reason: str) -> Gate:
        return self.decide(gate_id, actor=actor, verdict=Verdict.REJECT, comment=reason)

    # ------------------------------------------------------------ cancel, consume, expire

    def cancel(self, gate_id: str, *, actor: Actor, reason: str = "") -> Gate:
        """The requester (or submitting pipeline) withdraws a pending gate."""
        require_storable(reason, "reason")
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

        gate = self._observed("cancel", actor, lambda: self.store.mutate(gate_id, change))
        self.audit.maybe_checkpoint()
        return gate

    def _observed(self, action: str, actor: Actor, run: Callable[[], Gate]) -> Gate:
        try:
            return run()
        except GatehouseError as refused:
            self.observers.refused(action, refused.code, actor.via)
            raise

    def consume(self, gate_id: str, *, actor: Actor, binding_hash: str, try_number: int = 1) -> Gate:
        """Mark that the step ran under this approval. Only an approved gate, within its expiry,
        for exactly the payload it was approved for; a retry of the same step may consume again
        within the expiry (the approval is single-use per request, not per attempt)."""

        def judge(gate: Gate) -> Mutation:
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

        first_use = False

        def change(gate: Gate) -> Mutation:
            nonlocal first_use
            mutation = judge(gate)
            first_use = mutation.consumed_at is not None  # the last attempt's view is the committed one
            return mutation

        gate = self._observed("consume", actor, lambda: self.store.mutate(gate_id, change))
        self.audit.maybe_checkpoint()
        if gate.consumed_at is not None and first_use:
            self.observers.approval_used(gate)
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

    # ------------------------------------------------------------ expiry

    def _expire_if_overdue(self, gate: Gate) -> Mutation:
        now = self.clock.now()
        return self._expire(gate, now) if is_expired(gate, now) else Mutation()

    def expire(self, gate_id: str) -> Gate:
        """Expire this gate if it is still PENDING past its expiry (audited); the gate as it now
        stands. Reads never expire: this, ``expire_due`` and ``poll`` are the only ways a gate
        times out — deciding, cancelling or consuming an overdue gate is refused regardless,
        judged inside the store's atomic ``mutate``."""
        gate = self.store.mutate(gate_id, self._expire_if_overdue)
        self.audit.maybe_checkpoint()
        return gate

    def expire_due(self, on_bad_record: BadRecord | None = None) -> list[Gate]:
        """Move every overdue PENDING gate to EXPIRED (the service's sweeper, ``gatehouse list``).
        Safe to run from many replicas at once. A gate that cannot be expired (a row no reader can
        parse, anything else unforeseen) is logged, handed to ``on_bad_record`` and passed over:
        one bad record must never stop every other gate from expiring."""
        expired = []
        for gate_id in self.store.due_for_expiry(self.clock.now()):
            try:
                gate = self.store.mutate(gate_id, self._expire_if_overdue)
            except StoreUnavailable:
                raise  # the database, not this record: the caller retries the whole pass
            except Exception as exc:
                _bad_record("expiry", gate_id, exc, on_bad_record)
                continue
            if gate.status is GateStatus.EXPIRED:
                expired.append(gate)
        if expired:
            self.audit.maybe_checkpoint()
        return expired

    # ------------------------------------------------------------ waiting and reminding

    def poll(self, ids: Sequence[str]) -> WaitSnapshot:
        """One look at the gates a waiter holds (a triggerer may hold 10,000): the status and
        expiry of each known id (unknown ids are left out) in one narrow read, and the whole
        gates only of those that have left PENDING. Overdue gates are expired first, audited, so
        a waiter sees EXPIRED at once rather than at the sweeper's next pass."""
        states = self.store.gate_states(ids)
        now = self.clock.now()
        overdue = [gate_id for gate_id, s in states.items() if s.status.is_open and now >= s.expires_at]
        if overdue:
            for gate_id in overdue:
                self.store.mutate(gate_id, self._expire_if_overdue)
            self.audit.maybe_checkpoint()
            states = self.store.gate_states(ids)
        closed = tuple(gate_id for gate_id, s in states.items() if not s.status.is_open)
        gates = self.store.list_gates(GateFilter(ids=closed, limit=len(closed))) if closed else []
        return WaitSnapshot(states, gates)

    def due_reminders(self, on_bad_record: BadRecord | None = None) -> list[Gate]:
        """Pending gates whose reminder is due, each claimed for this caller alone (so exactly one
        replica sends it). A claimed gate that cannot be read is passed over as in ``expire_due``."""
        due = []
        for gate_id in self.store.claim_reminders(self.clock.now()):
            try:
                due.append(self.store.get_gate(gate_id))
            except StoreUnavailable:
                raise
            except Exception as exc:
                _bad_record("reminder", gate_id, exc, on_bad_record)
        return due

    # ------------------------------------------------------------ notification bookkeeping

    def notification_posted(self, ref: NotificationRef) -> Gate:
        """Remember where a gate's request was posted (to update it with the outcome); returns the
        gate as it stands now, so the poster can show a decision taken while it was posting."""
        self.store.add_notification(ref)
        return self.store.get_gate(ref.gate_id)

    def notifications_for(self, gate_id: str) -> list[NotificationRef]:
        return self.store.notifications_for(gate_id)

    # ------------------------------------------------------------ reading

    def get(self, gate_id: str) -> Gate:
        """The gate as stored. Reads never write: an overdue gate reads PENDING until ``expire``,
        ``expire_due`` or ``poll`` moves it, yet no decision or consumption can use it."""
        return self.store.get_gate(gate_id)

    def list(self, query: GateFilter | None = None) -> list[Gate]:
        """Gates as stored, newest first (see ``get`` on overdue gates)."""
        query = query or GateFilter()
        require_storable([query.action, query.dataset, query.requester, *query.ids], "filter")
        return self.store.list_gates(query)


def principal_may_decide(
    gate: Gate, principal: Principal, now: datetime, via: AuthMethod | None = None
) -> str | None:
    """Why ``principal`` may not approve ``gate`` right now, or None if they may (for UIs; without
    ``via`` the rule's ``identified_by`` is not judged — the decision itself always is)."""
    try:
        judge_decision(gate, principal, Verdict.APPROVE, now, via=via)
    except (DecisionRefused, AlreadyDecided) as refusal:
        return str(refusal)
    return None
