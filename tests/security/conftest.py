from tests.gate_core.conftest import clock, gatekeeper, signer  # noqa: F401 - shared fixtures
