"""The public API is exactly what we mean it to be, and the migrations match the schema."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import gate_core
from gate_core import SqlStore
from gate_core._store._migrate import HEAD, MIGRATIONS, VERSION_TABLE
from gate_core._store._schema import metadata

EXPECTED = {
    # domain
    "Actor",
    "AuthMethod",
    "DatasetRef",
    "Decision",
    "Gate",
    "GateRequest",
    "GateStatus",
    "LastReview",
    "Principal",
    "PrincipalKind",
    "RunContext",
    "Verdict",
    # policy and identity
    "Directory",
    "Outcome",
    "Policy",
    "PolicyDecision",
    "evaluate",
    "load_policy",
    "parse_policy",
    # clients: the one interface orchestrator adapters use
    "GateClient",
    "HttpGateClient",
    "LocalGateClient",
    "Me",
    "WaitResult",
    "Scope",
    # application service, ports and adapters
    "Gatekeeper",
    "GateObserver",
    "TokenService",
    "AuditService",
    "WaitSnapshot",
    "DecisionRequest",
    "GateFilter",
    "GateStore",
    "Clock",
    "SystemClock",
    "SqlStore",
    "Settings",
    "init_home",
    "open_gatekeeper",
    "principal_may_decide",
    # audit
    "Checkpoint",
    "CheckpointSigner",
    "Event",
    "VerifyReport",
    "control_ids",
    "verify_bundle",
    "verify_chain",
    "verify_witnessed_bundle",
    "VerifierKey",
    "WitnessPolicy",
    # errors
    "GatehouseError",
    "ConfigError",
    "PolicyError",
    "DirectoryError",
    "NotFound",
    "GateNotFound",
    "UnknownPrincipal",
    "RequestRefused",
    "IdempotencyConflict",
    "InvalidInput",
    "SubmitterNotAllowed",
    "DecisionRefused",
    "SelfApprovalRefused",
    "ServicePrincipalRefused",
    "SignatureInvalid",
    "SignatureRequired",
    "NotAnApprover",
    "DuplicateDecision",
    "AlreadyDecided",
    "GateExpired",
    "GateNotApproved",
    "GateRejected",
    "GateCancelled",
    "NotTheRequester",
    "ApprovalNotUsable",
    "StoreError",
    "StoreUnavailable",
    "AuditError",
    "AuthenticationFailed",
    "PermissionDenied",
    "ServiceUnavailable",
}


def test_public_api_is_exactly_all() -> None:
    assert set(gate_core.__all__) == EXPECTED
    for name in gate_core.__all__:
        assert getattr(gate_core, name).__module__.startswith("gate_core")


IDENTITY = {
    # who, and how we know
    "Principal",
    "PrincipalKind",
    "Actor",
    "AuthMethod",
    "SYSTEM_ACTOR",
    # the port and its file implementation
    "IdentitySource",
    "Directory",
    "load_source",
    "has_departed",  # people an IdP deactivated (SCIM): refused on every channel
    # the one canonical form
    "canonical_identity",
    "canonical_key",
    "identity_key",
    "person_key",
    "same_person",
    # who is this caller
    "Caller",
    "TokenAuthenticator",
    "IdpSubject",
    "OidcIdentityRules",
    "caller_from_token",
    "caller_from_oidc_claims",
    "claim_groups",
    "email_verified",
    "narrowed",
    "caller_from_proxy",
    "caller_from_sandbox",
    "caller_from_slack_email",
    "caller_from_teams_member",
    "caller_from_os_account",
    "os_account",
    "local_actor_name",
}


def test_identity_api_is_exactly_all() -> None:
    from gate_core import identity

    assert set(identity.__all__) == IDENTITY
    for name in identity.__all__:
        assert getattr(identity, name).__module__.startswith("gate_core.identity.")
        if name in EXPECTED:  # gate_core re-exports these: the same objects, not copies
            assert getattr(gate_core, name) is getattr(identity, name)


def test_every_error_is_in_the_tree_and_documented() -> None:
    doc = gate_core._errors.__doc__ or ""
    errors = [
        getattr(gate_core, n)
        for n in EXPECTED
        if isinstance(getattr(gate_core, n), type) and issubclass(getattr(gate_core, n), Exception)
    ]
    for error in errors:
        assert issubclass(error, gate_core.GatehouseError)
        assert error.__name__ in doc, f"{error.__name__} missing from the error tree docstring"
    codes = [e.code for e in errors]
    assert len(codes) == len(set(codes)), "error codes must be unique"


def test_head_constant_matches_the_newest_migration() -> None:
    assert MIGRATIONS.script_head() == HEAD


def test_migrations_create_exactly_the_declared_schema(store: SqlStore) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        diff = [d for d in compare_metadata(context, metadata) if not _is_dialect_noise(d)]
    assert diff == []


def _is_dialect_noise(diff: object) -> bool:
    return isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == VERSION_TABLE


PUBLIC_MODULES = (
    "gate_core.testing",
    "gate_core.cli",
    "gate_core.cli_errors",
    "gate_core.sql",
    "gate_core.session",
    "gate_core.service",
    "gate_core.service.extension",
    "gate_core.identity",
)


def test_the_service_extension_api_is_exactly_all() -> None:
    """What a service plugin may use: the verified caller, the service context, console pages."""
    from gate_core.service import extension

    assert set(extension.__all__) == {
        "Caller",
        "Console",
        "Identity",
        "LineageSender",
        "ServiceContext",
        "Viewer",
        "console_of",
        "context_of",
        "identity",
    }
    for name in extension.__all__:
        assert getattr(extension, name) is not None


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_public_modules_import(module: str) -> None:
    __import__(module)
