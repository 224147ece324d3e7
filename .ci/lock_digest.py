"""The digest of what pyproject.toml asks to install: requires-python, dependencies and every
extra. requirements/lock.txt records it in its first line; a lock whose digest differs from the
pyproject's is stale (tests/test_lock.py fails, `make lock` refreshes it). Only the dependency
tables count, so editing tool settings in pyproject.toml does not stale the lock."""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
HEADER = "# pyproject-dependencies-sha256: "


def pyproject_digest(pyproject: Path = ROOT / "pyproject.toml") -> str:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    wanted = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
    }
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()


def lock_digest(lock: Path = LOCK) -> str | None:
    first = lock.read_text(encoding="utf-8").splitlines()[0] if lock.exists() else ""
    return first[len(HEADER) :].strip() if first.startswith(HEADER) else None


if __name__ == "__main__":
    print(HEADER + pyproject_digest())
    sys.exit(0)
