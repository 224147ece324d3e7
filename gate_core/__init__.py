"""Gatehouse core: policy-driven human approval gates with a tamper-evident audit trail.

The public API is exactly ``__all__``; everything in ``gate_core._*`` is private.
"""

from __future__ import annotations

from gate_core._audit import Checkpoint, CheckpointSigner, Event, VerifyReport, control_ids, verify_chain
from gate_core._audit_service import AuditService
from gate_core._client import GateClient, HttpGateClient, LocalGateClient, Me, WaitResult
from gate_core._cosign import VerifierKey
from gate_core._errors import (
    AlreadyDecided,
    ApprovalNotUsable,
    AuditError,
    AuthenticationFailed,
    ConfigError,
    DecisionRefused,
    DirectoryError,
    DuplicateDecision,
    GateCancelled,
    GateExpired,
    GatehouseError,
    GateNotApproved,
    GateNotFound,
    GateRejected,
    IdempotencyConflict,
    InvalidInput,
    NotAnApprover,
    NotFound,
    NotTheRequester,
    PermissionDenied,
    PolicyError,
    RequestRefused,
    SelfApprovalRefused,
    ServicePrincipalRefused,
    ServiceUnavailable,
    SignatureInvalid,
    SignatureRequired,
    StoreError,
    StoreUnavailable,
    SubmitterNotAllowed,
    UnknownPrincipal,
)
from gate_core._gatekeeper import DecisionRequest, Gatekeeper, WaitSnapshot, principal_may_decide
from gate_core._home import Settings, init_home, open_gatekeeper
from gate_core._models import (
    Actor,
    AuthMethod,
    DatasetRef,
    Decision,
    Gate,
    GateRequest,
    GateStatus,
    LastReview,
    Principal,
    PrincipalKind,
    RunContext,
    Verdict,
)
from gate_core._observer import GateObserver
from gate_core._policy import Outcome, Policy, PolicyDecision, evaluate, load_policy, parse_policy
from gate_core._ports import Clock, GateFilter, GateStore, SystemClock
from gate_core._proofs import verify_bundle
from gate_core._store import SqlStore
from gate_core._token_service import TokenService
from gate_core._tokens import Scope
from gate_core._witnessing import WitnessPolicy, verify_witnessed_bundle
from gate_core.identity import Directory

__all__ = [
    "Actor",
    "AlreadyDecided",
    "ApprovalNotUsable",
    "AuditError",
    "AuditService",
    "AuthMethod",
    "AuthenticationFailed",
    "Checkpoint",
    "CheckpointSigner",
    "Clock",
    "ConfigError",
    "DatasetRef",
    "Decision",
    "DecisionRefused",
    "DecisionRequest",
    "Directory",
    "DirectoryError",
    "DuplicateDecision",
    "Event",
    "Gate",
    "GateCancelled",
    "GateClient",
    "GateExpired",
    "GateFilter",
    "GateNotApproved",
    "GateNotFound",
    "GateObserver",
    "GateRejected",
    "GateRequest",
    "GateStatus",
    "GateStore",
    "GatehouseError",
    "Gatekeeper",
    "HttpGateClient",
    "IdempotencyConflict",
    "InvalidInput",
    "LastReview",
    "LocalGateClient",
    "Me",
    "NotAnApprover",
    "NotFound",
    "NotTheRequester",
    "Outcome",
    "PermissionDenied",
    "Policy",
    "PolicyDecision",
    "PolicyError",
    "Principal",
    "PrincipalKind",
    "RequestRefused",
    "RunContext",
    "Scope",
    "SelfApprovalRefused",
    "ServicePrincipalRefused",
    "ServiceUnavailable",
    "Settings",
    "SignatureInvalid",
    "SignatureRequired",
    "SqlStore",
    "StoreError",
    "StoreUnavailable",
    "SubmitterNotAllowed",
    "SystemClock",
    "TokenService",
    "UnknownPrincipal",
    "Verdict",
    "VerifierKey",
    "VerifyReport",
    "WaitResult",
    "WaitSnapshot",
    "WitnessPolicy",
    "control_ids",
    "evaluate",
    "init_home",
    "load_policy",
    "open_gatekeeper",
    "parse_policy",
    "principal_may_decide",
    "verify_bundle",
    "verify_chain",
    "verify_witnessed_bundle",
]


def __getattr__(name: str) -> str:
    """``gate_core.__version__``: the installed distribution's version ("0.0.0" from a source
    tree never installed), looked up when first asked for, not at every import."""
    if name == "__version__":
        from gate_core._distribution import distribution_version

        return distribution_version()
    raise AttributeError(f"module 'gate_core' has no attribute {name!r}")
