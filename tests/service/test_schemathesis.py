"""Schemathesis over the service's own OpenAPI spec: whatever it sends, never a 5xx.

Both valid (positive) and schema-violating (negative) inputs, per operation, authenticated as
an admin so requests reach every handler, on both backends; afterwards the audit still verifies.
(Driven through schemathesis' strategies with hypothesis: its pytest plugin does not support
pytest 9 yet.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from gate_core import GateRequest
from gate_core.service import ServiceConfig
from gate_core.testing import actor
from tests.conftest import Report
from tests.service.conftest import Service


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_causes_a_server_error(
    service_factory: Callable[..., Service], mode: GenerationMode, report: Report
) -> None:
    # long-polls are capped short here: a wait is not a hang, and the fuzzer must not sit in one
    service = service_factory(ServiceConfig(max_wait_s=0.3))
    for reason in ("a", "b"):  # real gates, so generated ids sometimes hit something
        service.gatekeeper.open(
            GateRequest(action="export", requester="alice", reason=reason), submitted_by=actor("etl-bot")
        )
    schema = schemathesis.openapi.from_url(f"{service.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {service.tokens['admin']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    exercised = 0
    for operation in operations:

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy(generation_mode=mode))
        def exercise(case: Any) -> None:
            case.call_and_validate(
                base_url=service.base_url, headers=headers, checks=[not_a_server_error], timeout=30
            )

        try:
            exercise()
            exercised += 1
        except Unsatisfiable:
            # an operation without inputs (GET /healthz, /v1/me) has no schema-violating variant
            assert mode is GenerationMode.NEGATIVE, operation.label
    assert exercised >= (len(operations) if mode is GenerationMode.POSITIVE else 6)
    assert service.gatekeeper.audit.verify().ok
    backend = service.gatekeeper.store.dialect
    # Any server error failed the test above; the figure says how much was fuzzed to show it.
    skipped = len(operations) - exercised
    report(
        f"Schemathesis ({mode.value}, {backend}): server errors over {exercised} operations fuzzed"
        + (f" ({skipped} take no input to violate)" if skipped else ""),
        0,
        "errors",
        "0",
    )
