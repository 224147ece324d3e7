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
FORMER_NAMES = ("gatehouse",)  # before the rename (issue 21)
_CLI = "gate_core.cli:main"


def installed() -> list[metadata.Distribution]:
    """Every installed distribution, under our name or a former one, that declares our CLI (more
    than one is a broken install). Looked up by name: scanning every distribution's entry points
    costs a CLI start-up a second."""
    found = []
    for name in (DISTRIBUTION, *FORMER_NAMES):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if any(ep.group == "console_scripts" and ep.value == _CLI for ep in dist.entry_points):
            found.append(dist)
    return found


def distribution_name() -> str:
    found = installed()
    return str(found[0].metadata["Name"]) if found else DISTRIBUTION


def distribution_version() -> str:
    found = installed()
    return found[0].version if found else "0.0.0"  # a source tree that was never installed
