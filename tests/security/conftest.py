"""The security suite reuses the real service fixtures (uvicorn over a socket, SQLite and PostgreSQL)."""

from tests.gate_core.conftest import clock, gatekeeper, signer  # noqa: F401 - shared fixtures
from tests.service.conftest import service, service_factory, service_settings  # noqa: F401 - shared fixtures
