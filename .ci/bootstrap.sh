#!/usr/bin/env bash
# Create .venv and install Gatehouse with every extra, at exactly the versions pinned in
# requirements/lock.txt (`make lock` refreshes it). Idempotent: re-installs only when
# pyproject.toml or the lock changed. Needs Python 3.11+ and the package index; nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "gatehouse: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
    exit 1
}

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $(pick_python)"
    "$(pick_python)" -m venv .venv
fi
stamp=.venv/.gatehouse-installed
want=$(cat pyproject.toml requirements/lock.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing gatehouse and its dependencies (uv, bytecode compiled: imports are ~2x faster)"
    .venv/bin/python -m pip --version >/dev/null 2>&1 || .venv/bin/python -m ensurepip --upgrade >/dev/null
    .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
    # Installed before the distribution was renamed gatehouse-approvals: remove the old name first,
    # or two distributions would declare the same entry points (the CLI, Airflow's provider).
    if .venv/bin/python -c 'import importlib.metadata as m, sys; sys.exit(not any(e.value == "gate_core.cli:main" for e in m.distribution("gatehouse").entry_points))' 2>/dev/null; then
        echo "==> removing the install under the old distribution name gatehouse"
        VIRTUAL_ENV="$PWD/.venv" .venv/bin/uv pip uninstall --quiet gatehouse
    fi
    if ! UV_COMPILE_BYTECODE=1 VIRTUAL_ENV="$PWD/.venv" .venv/bin/uv pip install --quiet -e '.[all,dev]' \
        --constraint requirements/lock.txt; then
        echo "gatehouse: installing from requirements/lock.txt failed; if pyproject.toml's dependencies" >&2
        echo "           changed, refresh the lock with: make lock" >&2
        exit 1
    fi
    echo "$want" >"$stamp"
fi

