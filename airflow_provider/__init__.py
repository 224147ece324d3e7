"""Gatehouse for Apache Airflow: human approval gates in front of tasks, with lineage.

    from airflow_provider import GateOperator, GateSensor, gated

Folders by role, as Airflow providers are laid out: ``hooks`` (the ``gatehouse`` connection),
``operators`` (GateOperator), ``sensors`` (GateSensor), ``triggers`` (GateTrigger and its shared
waiter), ``decorators`` (``@gated`` / ``@task.gated``). Airflow finds the provider through the
``apache_airflow_provider`` entry point (``get_provider_info``). Names here load lazily, so
importing the package for its metadata does not import Airflow's operator machinery.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider.decorators.gated import gated
    from airflow_provider.exceptions import GateNotPassed, GateRejected, GateUnavailable
    from airflow_provider.hooks.gatehouse import GatehouseHook
    from airflow_provider.operators._base import BaseGateOperator
    from airflow_provider.operators.gate import GateOperator
    from airflow_provider.sensors.gate import GateSensor
    from airflow_provider.triggers.events import GateEvent, GateOutcome
    from airflow_provider.triggers.gate import GateTrigger

_WHERE = {
    "BaseGateOperator": "airflow_provider.operators._base",
    "GateEvent": "airflow_provider.triggers.events",
    "GateNotPassed": "airflow_provider.exceptions",
    "GateOperator": "airflow_provider.operators.gate",
    "GateOutcome": "airflow_provider.triggers.events",
    "GateRejected": "airflow_provider.exceptions",
    "GateSensor": "airflow_provider.sensors.gate",
    "GateTrigger": "airflow_provider.triggers.gate",
    "GateUnavailable": "airflow_provider.exceptions",
    "GatehouseHook": "airflow_provider.hooks.gatehouse",
    "gated": "airflow_provider.decorators.gated",
}

__all__ = [
    "BaseGateOperator",
    "GateEvent",
    "GateNotPassed",
    "GateOperator",
    "GateOutcome",
    "GateRejected",
    "GateSensor",
    "GateTrigger",
    "GateUnavailable",
    "GatehouseHook",
    "gated",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'airflow_provider' has no attribute {name!r}")
