"""The install is reproducible: requirements/lock.txt pins what pyproject.toml asks for, and this
environment is exactly what the lock says (the bootstrap installs with it as constraints)."""

from __future__ import annotations

import importlib.util
import re
from importlib.metadata import distributions
from pathlib import Path
from types import ModuleType

from packaging.markers import Marker

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)\s*(?:;\s*(?P<marker>.+))?$")


def _digest_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_digest", ROOT / ".ci" / "lock_digest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_is_not_stale(tmp_path: Path) -> None:
    lock_digest = _digest_module()
    assert lock_digest.lock_digest() == lock_digest.pyproject_digest(), (
        "requirements/lock.txt is stale against pyproject.toml's dependencies: run `make lock`"
    )
    # and the check really bites: one more dependency makes the same lock stale
    edited = tmp_path / "pyproject.toml"
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    edited.write_text(text.replace('"httpx>=0.27",', '"httpx>=0.27",\n    "six",', 1), encoding="utf-8")
    assert lock_digest.pyproject_digest(edited) != lock_digest.lock_digest()


def test_this_environment_is_what_the_lock_pins() -> None:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text(encoding="utf-8").splitlines():
        found = PIN.match(line.strip())
        if found and (found["marker"] is None or Marker(found["marker"]).evaluate()):
            pins[_normal(found["name"])] = found["version"]
    installed = {_normal(d.metadata["Name"]): d.version for d in distributions()}
    assert len(pins) > 100
    differ = {name: (installed.get(name), want) for name, want in pins.items() if installed.get(name) != want}
    assert differ == {}, f"installed ≠ locked (installed, locked): {differ}"


def test_one_distribution_ships_gatehouse() -> None:
    """Renamed gatehouse → gatehouse-approvals: an environment that installed the new name beside
    the old one declares every entry point twice (Airflow then refuses one provider as
    mis-named, service plugins install twice). .ci/bootstrap.sh removes the old name first."""
    from gate_core._distribution import DISTRIBUTION, distribution_name, installed

    names = [d.metadata["Name"] for d in installed()]
    assert len(names) == 1, f"distributions declaring the gatehouse CLI: {names}; uninstall all but one"
    assert distribution_name() == names[0]
    assert DISTRIBUTION == "gatehouse-approvals"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'name = "{DISTRIBUTION}"' in pyproject
