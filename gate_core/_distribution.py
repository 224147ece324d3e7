"""Which installed distribution ships this code, and its version.

The distribution is ``gatehouse-approvals`` on the package index: ``gatehouse`` and ``lineage``
were taken there by unrelated projects. An environment installed before the rename still holds
it under the old name ``gatehouse``; everything that needs the name (``gatehouse --version``,
Airflow's provider metadata, which Airflow requires to equal the distribution's name) asks
which distribution declares our ``gatehouse`` console script rather than assuming one.
"""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "gatehouse-approvals"
_CLI = "gate_core.cli:main"


def installed() -> list[metadata.Distribution]:
    """Every installed distribution that declares our CLI (more than one is a broken install)."""
    return [
        ep.dist
        for ep in metadata.entry_points(group="console_scripts", name="gatehouse")
        if ep.value == _CLI and ep.dist is not None
    ]


def distribution_name() -> str:
    found = installed()
    return str(found[0].metadata["Name"]) if found else DISTRIBUTION


def distribution_version() -> str:
    found = installed()
    return found[0].version if found else "0.0.0"  # a source tree that was never installed
