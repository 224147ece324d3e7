from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate_core import CheckpointSigner, DatasetRef, Gatekeeper, GateRequest, SqlStore
from gate_core.testing import ManualClock, example_directory, example_policy


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def signer() -> CheckpointSigner:
    return CheckpointSigner(Ed25519PrivateKey.generate())


@pytest.fixture
def gatekeeper(store: SqlStore, clock: ManualClock, signer: CheckpointSigner) -> Gatekeeper:
    """The example policy and directory on a fresh store, per backend."""
    gk = Gatekeeper(
        store, example_directory(), example_policy(), clock=clock, signer=signer, checkpoint_every=4
    )
    gk.record_configuration("example policy")
    return gk


def pii_export(**overrides: object) -> GateRequest:
    fields: dict[str, object] = {
        "action": "export",
        "target": "s3://exports/customers.csv",
        "datasets": (DatasetRef.parse("warehouse/customers#pii"),),
        "requester": "alice",
        "reason": "quarterly report",
    }
    fields.update(overrides)
    return GateRequest.model_validate(fields)


def prod_redeploy(**overrides: object) -> GateRequest:
    fields: dict[str, object] = {
        "action": "redeploy",
        "target": "models/churn",
        "environment": "prod",
        "requester": "alice",
        "parameters": {"version": "2.4.1"},
    }
    fields.update(overrides)
    return GateRequest.model_validate(fields)
