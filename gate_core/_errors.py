"""Every error Gatehouse raises, in one tree.

    GatehouseError
    ├── ConfigError                 a policy, directory or settings file is unusable
    │   ├── PolicyError             names the file and the path of the bad field
    │   └── DirectoryError
    ├── InvalidInput                text no store can keep (NUL, lone surrogates), bad filters
    ├── NotFound
    │   ├── GateNotFound
    │   └── UnknownPrincipal        an identity that maps to no directory principal
    ├── RequestRefused              a gate could not be opened as asked
    │   ├── IdempotencyConflict     the key already names a gate for a different payload
    │   └── SubmitterNotAllowed     a principal that may not open gates (or act for someone)
    ├── DecisionRefused             an approve/reject/cancel/consume that the rules forbid
    │   ├── SelfApprovalRefused     the requester (same id or same email) tried to decide
    │   ├── ServicePrincipalRefused service accounts never decide
    │   ├── NotAnApprover           not in the rule's approver or break-glass groups
    │   ├── DuplicateDecision       this person already decided this gate
    │   ├── SignatureRequired       the rule wants a passkey-signed decision; this channel cannot sign
    │   ├── SignatureInvalid        the passkey assertion does not sign this decision by this person
    │   ├── AlreadyDecided          the gate left PENDING: "already approved by bob at …"
    │   ├── GateExpired ─────────┐  the decision deadline passed (also a GateNotApproved)
    │   ├── NotTheRequester         cancel by someone who did not open the gate
    │   └── ApprovalNotUsable       consume refused: not approved, expired or a different payload
    ├── GateNotApproved             a step's gate closed without an approval it may use: the step
    │   │                           must not run (what every orchestrator adapter raises, or wraps
    │   │                           in its framework's idiom); carries gate_id, status, decided_by, reason
    │   ├── GateRejected            an approver, or a deny rule, rejected it
    │   ├── GateExpired ◄────────┘  nobody approved it in time, or the step stopped waiting first
    │   └── GateCancelled           withdrawn by its requester or its step
    ├── AuthenticationFailed        missing, malformed, forged, expired or revoked credentials
    ├── PermissionDenied            authenticated, but not allowed this operation (token scope)
    ├── StoreError
    │   ├── StoreUnavailable        database unreachable or locked — callers must fail closed
    │   └── UnreadableRecord        a stored row no reader can parse (written before a limit, or
    │                               altered in the database); lists skip it, loops count it
    ├── ServiceUnavailable          the gate service cannot be reached (client side) — fail closed
    └── AuditError                  the audit log cannot be written, read or checkpointed

Every error carries a one-line ``str()`` meant for a human (the CLI prints exactly that) and a
stable ``code`` for machines (the HTTP API maps it to a problem type and status).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class GatehouseError(Exception):
    """Base class. ``code`` is stable; the message is for people."""

    code = "gatehouse_error"


class ConfigError(GatehouseError):
    code = "config_error"


class PolicyError(ConfigError):
    code = "policy_invalid"

    def __init__(self, source: str, field_path: str, problem: str) -> None:
        self.source = source
        self.field_path = field_path
        self.problem = problem
        where = f"{source}: {field_path}" if field_path else source
        super().__init__(f"{where}: {problem}")


class DirectoryError(ConfigError):
    code = "directory_invalid"


class InvalidInput(GatehouseError):
    code = "invalid_input"


class NotFound(GatehouseError):
    code = "not_found"


class GateNotFound(NotFound):
    code = "gate_not_found"

    def __init__(self, gate_id: str) -> None:
        self.gate_id = gate_id
        super().__init__(f"no gate with id {gate_id!r}")


class UnknownPrincipal(NotFound):
    code = "unknown_principal"

    def __init__(self, identity: str, how: str = "") -> None:
        self.identity = identity
        suffix = f" (identified by {how})" if how else ""
        super().__init__(f"{identity!r} is not a principal in the directory{suffix}")


class RequestRefused(GatehouseError):
    code = "request_refused"


class IdempotencyConflict(RequestRefused):
    code = "idempotency_conflict"

    def __init__(self, key: str, gate_id: str) -> None:
        self.key = key
        self.gate_id = gate_id
        super().__init__(
            f"idempotency key {key!r} already belongs to gate {gate_id} for a different action, "
            "parameters or datasets; a different payload needs a new key"
        )


class SubmitterNotAllowed(RequestRefused):
    code = "submitter_not_allowed"


class DecisionRefused(GatehouseError):
    code = "decision_refused"


class SelfApprovalRefused(DecisionRefused):
    code = "self_approval"


class ServicePrincipalRefused(DecisionRefused):
    code = "service_principal"


class NotAnApprover(DecisionRefused):
    code = "not_an_approver"


class DuplicateDecision(DecisionRefused):
    code = "duplicate_decision"


class SignatureRequired(DecisionRefused):
    """The gate's rule requires a passkey-signed decision and this channel cannot provide one."""

    code = "signature_required"


class SignatureInvalid(DecisionRefused):
    """A passkey assertion that does not sign this decision with a key registered to this person."""

    code = "signature_invalid"


class AlreadyDecided(DecisionRefused):
    code = "already_decided"

    def __init__(self, status: str, by: tuple[str, ...], at: datetime | None) -> None:
        self.status = status
        self.by = by
        self.at = at
        who = " and ".join(by) if by else "policy"
        when = f" at {at.isoformat(timespec='seconds')}" if at else ""
        super().__init__(f"already {status.lower()} by {who}{when}")


class GateNotApproved(GatehouseError):
    """A gate that will not let its step run. The fields say which gate and why; they default to
    empty so an error rebuilt from an HTTP problem (message only) is still one of these."""

    code = "gate_not_approved"
    gate_id: str = ""
    status: str = ""
    reason: str = ""
    decided_by: tuple[str, ...] = ()

    def __init__(
        self,
        message: str,
        *,
        gate_id: str = "",
        status: str = "",
        reason: str = "",
        decided_by: tuple[str, ...] = (),
    ) -> None:
        self.gate_id = gate_id
        self.status = status
        self.reason = reason
        self.decided_by = tuple(decided_by)
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Orchestrators pickle a failed step's exception (Prefect results, subprocess runs): keep
        # every field, whatever the subclass.
        fields = {"gate_id": self.gate_id, "status": self.status, "reason": self.reason}
        return (_rebuild, (type(self), str(self), fields, self.decided_by))


def _rebuild(
    cls: type[GateNotApproved], message: str, fields: dict[str, str], decided_by: tuple[str, ...]
) -> GateNotApproved:
    return cls(message, decided_by=decided_by, **fields)


class GateRejected(GateNotApproved):
    code = "gate_rejected"


class GateExpired(DecisionRefused, GateNotApproved):
    """Both a refused decision (nobody may decide a gate past its deadline) and a step outcome."""

    code = "gate_expired"


class GateCancelled(GateNotApproved):
    code = "gate_cancelled"


class NotTheRequester(DecisionRefused):
    code = "not_the_requester"


class ApprovalNotUsable(DecisionRefused):
    code = "approval_not_usable"


class AuthenticationFailed(GatehouseError):
    code = "unauthenticated"


class PermissionDenied(GatehouseError):
    code = "permission_denied"


class StoreError(GatehouseError):
    code = "store_error"


class StoreUnavailable(StoreError):
    code = "store_unavailable"


class UnreadableRecord(StoreError):
    code = "unreadable_record"

    def __init__(self, gate_id: str, problem: str) -> None:
        super().__init__(f"gate {gate_id} is stored in a form no reader can parse: {problem}")
        self.gate_id = gate_id


class ServiceUnavailable(GatehouseError):
    code = "service_unavailable"


class AuditError(GatehouseError):
    code = "audit_error"
