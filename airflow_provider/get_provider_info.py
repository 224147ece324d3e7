"""Provider metadata for Airflow (the ``apache_airflow_provider`` entry point).

Listed by ``airflow providers list``; the ``gatehouse`` connection type appears in the UI's
connection form; ``@task.gated`` becomes available. Validated against Airflow's own
``provider_info.schema.json`` in the tests.
"""

from __future__ import annotations

from typing import Any

from gate_core._distribution import distribution_name, distribution_version

INTEGRATION = "Gatehouse"


def get_provider_info() -> dict[str, Any]:
    """What Airflow's ProvidersManager reads about this provider."""
    return {
        # Airflow refuses a provider whose package-name is not its distribution's name
        # ("gatehouse-approvals"; "gatehouse" in environments installed before the rename)
        "package-name": distribution_name(),
        "name": INTEGRATION,
        "description": (
            "Human approval gates for Airflow tasks — Slack/Teams/console approvals, quorum of "
            "distinct approvers, no self-approval, a signed audit trail — and data-usage lineage."
        ),
        "versions": [distribution_version()],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://gatehouse.dev/airflow/",
                "tags": ["service"],
            }
        ],
        "operators": [
            {"integration-name": INTEGRATION, "python-modules": ["airflow_provider.operators.gate"]}
        ],
        "sensors": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider.sensors.gate"]}],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider.hooks.gatehouse"]}],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider.triggers.gate"]}],
        "connection-types": [
            {
                "connection-type": "gatehouse",
                "hook-class-name": "airflow_provider.hooks.gatehouse.GatehouseHook",
                "hook-name": "Gatehouse",
            }
        ],
        "task-decorators": [{"name": "gated", "class-name": "airflow_provider.decorators.gated.gated_task"}],
    }
