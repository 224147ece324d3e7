"""Tables of the gate store. Migrations in ``migrations/`` create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from gate_core.sql import UtcDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


gates = Table(
    "gh_gates",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("idempotency_key", String(500), unique=True),
    Column("status", String(16), nullable=False, index=True),
    Column("action", String(100), nullable=False, index=True),
    Column("target", String(1000), nullable=False),
    Column("environment", String(100), nullable=False),
    Column("requester", String(200), nullable=False, index=True),
    Column("submitted_by", String(200), nullable=False),
    Column("binding_hash", String(64), nullable=False),
    Column("policy_hash", String(64), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("required_approvals", Integer, nullable=False),
    Column("request", Text, nullable=False, doc="canonical JSON of the GateRequest"),
    Column(
        "context", Text, nullable=False, doc="canonical JSON: rules, explanation, groups, notify, identities"
    ),
    Column("created_at", UtcDateTime, nullable=False, index=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("decided_at", UtcDateTime),
    Column("decided_by", Text, nullable=False, default="[]"),
    Column("consumed_at", UtcDateTime),
    Column("remind_at", UtcDateTime),
    Column("reminded_at", UtcDateTime, doc="set once, by whichever replica sends the reminder"),
    Column("run_key", String(64), doc="RunContext.key() of the request's run; NULL outside any run"),
    Index("ix_gh_gates_pending_expiry", "status", "expires_at"),
    Index("ix_gh_gates_run_key", "run_key"),
    Index("ix_gh_gates_reminder", "status", "remind_at"),
    Index("ix_gh_gates_action_target", "action", "target", "decided_at"),
)

gate_datasets = Table(
    "gh_gate_datasets",
    metadata,
    Column("gate_id", String(32), ForeignKey("gh_gates.id"), primary_key=True),
    Column("qualified_name", String(1600), primary_key=True),
    Index("ix_gh_gate_datasets_name", "qualified_name"),
)

decisions = Table(
    "gh_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gate_id", String(32), ForeignKey("gh_gates.id"), nullable=False, index=True),
    Column("principal_id", String(200), nullable=False),
    Column("person_key", String(400), nullable=False),
    Column("email", String(320)),
    Column("display_name", String(200), nullable=False),
    Column("verdict", String(8), nullable=False),
    Column("comment", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("via", String(32), nullable=False),
    Column("break_glass", Boolean, nullable=False),
    Column("counts_for", Integer, doc="index of the gate's approval requirement (multi-group rules)"),
    Column("issuer", String(500), doc="the IdP whose subject made this decision (via oidc)"),
    Column("subject", String(255), doc="the IdP's sub for the person (via oidc)"),
    Column("passkey", String(1400), doc="credential id of the passkey that signed it (signature rules)"),
    # The database itself refuses a second decision by one person: quorum can never double-count.
    UniqueConstraint("gate_id", "person_key", name="uq_gh_decisions_person"),
    UniqueConstraint("gate_id", "principal_id", name="uq_gh_decisions_principal"),
)

audit_log = Table(
    "gh_audit_log",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("event", String(64), nullable=False, index=True),
    Column("actor", String(200), nullable=False),
    Column("gate_id", String(32), index=True),
    Column("body", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row: the chain's head. Locking it serialises appends across processes and replicas.
audit_head = Table(
    "gh_audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_checkpoints = Table(
    "gh_audit_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("size", BigInteger, nullable=False, index=True),
    Column("head_hash", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("root", String(64), doc="hex RFC 9162 root at size, signed too (v2); NULL before 0005"),
)

# The RFC 9162 tree over the log: the hash of every perfect subtree of 2^level leaves from level
# NODE_LEVEL (16) up, written by the signer with each checkpoint. Read by proofs in O(log n) rows,
# never trusted: every proof is checked against a signed root, and verify recomputes the tree.
audit_tree = Table(
    "gh_audit_tree",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,
)

# Witness cosignatures (C2SP tlog-cosignature) on the C2SP checkpoint note of the log at ``size``:
# the witness's signature line as it answered, and the log-signed note it cosigned.
audit_cosignatures = Table(
    "gh_audit_cosignatures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("size", BigInteger, nullable=False, index=True),
    Column("root", String(64), nullable=False, doc="base64 RFC 9162 root at size"),
    Column("witness", String(200), nullable=False, index=True, doc="the witness's key name"),
    Column("key_id", String(8), nullable=False),
    Column("cosigned_at", BigInteger, nullable=False, doc="the cosignature's POSIX timestamp"),
    Column("line", Text, nullable=False),
    Column("note", Text, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
)

# Every policy and directory version that was ever in force, so an audit entry's policy hash can
# be resolved to the exact rules that applied.
config_versions = Table(
    "gh_config_versions",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("hash", String(64), primary_key=True),
    Column("source", String(1000), nullable=False),
    Column("content", Text, nullable=False),
    Column("loaded_at", UtcDateTime, nullable=False),
)

# Append-only enforcement, installed by the migrations. SQLite: triggers; PostgreSQL: a trigger
# function that also refuses TRUNCATE.
APPEND_ONLY_TABLES = ("gh_audit_log", "gh_audit_checkpoints", "gh_audit_tree", "gh_audit_cosignatures")

api_tokens = Table(
    "gh_api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("principal_id", String(200), nullable=False, index=True),
    Column("scope", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False, doc="SHA-256 of the secret; the secret is shown once"),
    Column("description", String(500), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
    Column("created_via", String(32), doc="channel the issuer used; NULL for tokens from before 0003"),
    Column("pipelines", JSON, doc="globs a service token may open gates for; NULL: any"),
)

# Where each gate's request was posted (a Slack channel + message ts, …) so it can be updated.
notifications = Table(
    "gh_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gate_id", String(32), ForeignKey("gh_gates.id"), nullable=False, index=True),
    Column("target", String(300), nullable=False),
    Column("channel", String(100), nullable=False),
    Column("message_ref", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("sent_at", UtcDateTime, nullable=False),
)

# The provisioned directory (SCIM) as a change log: each row is one version, the resource as it
# became (NULL when deleted). The state at any moment is the fold of the rows up to it.
directory_changes = Table(
    "gh_directory_changes",
    metadata,
    Column("version", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("kind", String(8), nullable=False, doc="User | Group"),
    Column("resource_id", String(64), nullable=False, index=True),
    Column("resource", JSON, doc="the SCIM resource after the change; NULL: deleted"),
    Column("actor", String(200), nullable=False),
)

# Passkeys (WebAuthn credentials) people registered in the console to sign decisions (issue 19).
# The audit log holds every registration and removal with the public key, so verification needs
# only the log; this table is the service's working copy (and the live signature counter).
passkeys = Table(
    "gh_passkeys",
    metadata,
    Column("credential_id", String(1400), primary_key=True, doc="base64url"),
    Column("principal_id", String(200), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("public_key", Text, nullable=False, doc="COSE_Key, base64url"),
    Column("sign_count", BigInteger, nullable=False),
    Column("rp_id", String(253), nullable=False),
    Column("origin", String(500), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("removed_at", UtcDateTime),
)
