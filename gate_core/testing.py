"""Test helpers for people who test their own pipelines against Gatehouse.

from gate_core.testing import ManualClock, example_gatekeeper

clock = ManualClock()
gk = example_gatekeeper(clock=clock)              # in-memory SQLite, example policy + directory
gate = gk.open(request, submitted_by=actor("alice"))
gk.approve(gate.id, actor=actor("bob"))
clock.advance(hours=5)                             # make gates expire without sleeping
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources

from gate_core._audit import CheckpointSigner
from gate_core._gatekeeper import Gatekeeper
from gate_core._models import Actor, AuthMethod
from gate_core._policy import Policy, parse_policy
from gate_core._ports import Clock
from gate_core._store import SqlStore
from gate_core.identity import Directory, IdentitySource

__all__ = ["ManualClock", "actor", "example_directory", "example_gatekeeper", "example_policy"]


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        self._now += delta if delta is not None else timedelta(**kwargs)
        return self._now


def _example_text(name: str) -> str:
    return resources.files("gate_core.examples").joinpath(name).read_text("utf-8")


def example_policy() -> Policy:
    return parse_policy(_example_text("policy.yaml"), source="example policy.yaml")


def example_directory() -> Directory:
    return Directory.parse(_example_text("directory.yaml"), source="example directory.yaml")


def actor(principal_id: str, via: AuthMethod = AuthMethod.LOCAL_OS_USER) -> Actor:
    return Actor(principal_id=principal_id, via=via)


def example_gatekeeper(
    *,
    database_url: str = "sqlite://",
    clock: Clock | None = None,
    policy: Policy | None = None,
    directory: IdentitySource | None = None,
    signer: CheckpointSigner | None = None,
) -> Gatekeeper:
    """A Gatekeeper on an in-memory SQLite store (or ``database_url``) with the example files."""
    if signer is None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        signer = CheckpointSigner(Ed25519PrivateKey.generate())
    gatekeeper = Gatekeeper(
        SqlStore.open(database_url),
        directory or example_directory(),
        policy or example_policy(),
        clock=clock,
        signer=signer,
    )
    gatekeeper.record_configuration(_example_text("policy.yaml") if policy is None else None)
    return gatekeeper
