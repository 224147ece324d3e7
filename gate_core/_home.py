"""Settings from the environment and the ``$GATEHOUSE_HOME`` data directory.

$GATEHOUSE_HOME (default ~/.gatehouse)
├── gatehouse.db          SQLite store (unless GATEHOUSE_DATABASE_URL names another database)
├── policy.yaml           GATEHOUSE_POLICY overrides
├── directory.yaml        GATEHOUSE_DIRECTORY overrides
├── audit-signing.key     Ed25519 private key for checkpoints (0600)
├── audit-signing.pub     its public key: give this to whoever verifies the trail
├── audit-checkpoints.jsonl   every signed checkpoint, a witness kept outside the database
├── witnesses.yaml        optional: the independent witnesses (`gatehouse witness`) every new
│                         checkpoint is submitted to, and the quorum `audit verify` requires
└── sandbox.yaml          only in homes from `init --example`: marks a sandbox, where `--as NAME`
                          chooses who you are (unverified, recorded as such); elsewhere the CLI is
                          the kernel's OS account and `--as` is refused
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gate_core._audit import CheckpointSigner
from gate_core._classify import install_classifiers
from gate_core._errors import ConfigError
from gate_core._gatekeeper import Gatekeeper
from gate_core._policy import load_policy
from gate_core._ports import Clock
from gate_core._store import SqlStore
from gate_core._witnessing import WitnessPolicy
from gate_core.identity import load_source

MINIMAL_POLICY = """\
# Gatehouse policy. See `gatehouse init --example` for a commented example.
version: 1
rules: []
default:
  outcome: require
  approvers: {groups: [data-governance], count: 1}
  expiry: 24h
"""
SANDBOX_MARKER = """\
# This Gatehouse home is a SANDBOX (written by `gatehouse init --example`).
# Here `gatehouse --as NAME ...` chooses who you are, so that one person can walk through
# requests, refusals and quorums; every such action is recorded as an UNVERIFIED identity
# (method `sandbox`). Never use a sandbox for real approvals: production homes have no such file,
# and there the CLI acts as your operating-system account.
sandbox: true
"""
MINIMAL_DIRECTORY = """\
# Gatehouse directory: add your principals here (see `gatehouse init --example`).
principals: []
"""


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    database_url: str
    policy_path: Path
    directory_path: Path
    db_timeout_s: float = 30.0
    signing_key: Path | None = None  # $GATEHOUSE_SIGNING_KEY: the private key kept outside the home

    @property
    def signing_key_path(self) -> Path:
        return self.signing_key or self.home / "audit-signing.key"

    def key_beside_database(self) -> bool:
        """Does the private key share a directory with a SQLite database? Then whoever can rewrite
        the log can also re-sign it: keep the key elsewhere ($GATEHOUSE_SIGNING_KEY)."""
        if not self.database_url.startswith("sqlite:///"):
            return False
        database = Path(self.database_url.removeprefix("sqlite:///"))
        return database.parent.resolve() == self.signing_key_path.parent.resolve()

    @property
    def public_key_path(self) -> Path:
        return self.home / "audit-signing.pub"

    @property
    def witness_path(self) -> Path:
        return self.home / "audit-checkpoints.jsonl"

    @property
    def witnesses_path(self) -> Path:
        return self.home / "witnesses.yaml"

    @property
    def sandbox_marker_path(self) -> Path:
        return self.home / "sandbox.yaml"

    @property
    def is_sandbox(self) -> bool:
        """Whether ``init --example`` marked this home a sandbox (``--as`` allowed, unverified)."""
        return self.sandbox_marker_path.is_file()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("GATEHOUSE_HOME") or Path.home() / ".gatehouse").expanduser()
        return cls(
            home=home,
            database_url=env.get("GATEHOUSE_DATABASE_URL") or f"sqlite:///{home / 'gatehouse.db'}",
            policy_path=Path(env.get("GATEHOUSE_POLICY") or home / "policy.yaml"),
            directory_path=Path(env.get("GATEHOUSE_DIRECTORY") or home / "directory.yaml"),
            db_timeout_s=float(env.get("GATEHOUSE_DB_TIMEOUT") or 30.0),
            signing_key=Path(env["GATEHOUSE_SIGNING_KEY"]).expanduser()
            if env.get("GATEHOUSE_SIGNING_KEY")
            else None,
        )


def init_home(settings: Settings, *, example: bool = False, force: bool = False) -> list[Path]:
    """Create the data directory, key pair, policy and directory files, and the database.
    Existing files are kept unless ``force``; returns the files written."""
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.home.chmod(0o700)
    written: list[Path] = []
    for path, example_name, minimal in (
        (settings.policy_path, "policy.yaml", MINIMAL_POLICY),
        (settings.directory_path, "directory.yaml", MINIMAL_DIRECTORY),
    ):
        if path.exists() and not force:
            continue
        text = (
            resources.files("gate_core.examples").joinpath(example_name).read_text("utf-8")
            if example
            else minimal
        )
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if example and not settings.sandbox_marker_path.exists():
        settings.sandbox_marker_path.write_text(SANDBOX_MARKER, encoding="utf-8")
        written.append(settings.sandbox_marker_path)
    cases = settings.policy_path.with_name("policy_test.yaml")
    if example and (force or not cases.exists()):  # `gatehouse policy test` cases for the example
        cases.write_text(
            resources.files("gate_core.examples").joinpath("policy_test.yaml").read_text("utf-8"),
            encoding="utf-8",
        )
        written.append(cases)
    if not settings.signing_key_path.exists():
        CheckpointSigner.generate(settings.signing_key_path, settings.public_key_path)
        written += [settings.signing_key_path, settings.public_key_path]
    gatekeeper = open_gatekeeper(settings)
    gatekeeper.audit.checkpoint_if_unsigned()  # the configuration entries, signed before any use
    gatekeeper.store.close()
    return written


def open_gatekeeper(settings: Settings, *, clock: Clock | None = None, migrate: bool = True) -> Gatekeeper:
    """Build the core from settings: load and validate policy and directory, open the store,
    and audit the configuration in force if it changed."""
    if not settings.home.exists():
        raise ConfigError(
            f"{settings.home} does not exist; run `gatehouse init` (or `gatehouse init --example`) first"
        )
    policy = load_policy(settings.policy_path)
    directory = load_source(settings)
    if settings.signing_key is not None and not settings.signing_key.exists():
        raise ConfigError(
            f"GATEHOUSE_SIGNING_KEY names {settings.signing_key}, which does not exist; run `gatehouse init` "
            "with it set to create the key there"
        )
    signer = CheckpointSigner.load(settings.signing_key_path) if settings.signing_key_path.exists() else None
    store = SqlStore.open(settings.database_url, migrate=migrate, timeout_s=settings.db_timeout_s)
    gatekeeper = Gatekeeper(
        store, directory, policy, clock=clock, signer=signer, witness_path=settings.witness_path
    )
    gatekeeper.audit.use_witnesses(WitnessPolicy.load(settings.witnesses_path))
    install_classifiers(gatekeeper, settings)
    gatekeeper.record_configuration(settings.policy_path.read_text(encoding="utf-8"))
    return gatekeeper
