#!/usr/bin/env bash
# Refresh requirements/lock.txt from pyproject.toml (`make lock`): every package of every extra,
# pinned, for all platforms (uv's universal resolution) on the oldest supported Python.
# The bootstrap installs exactly these versions; tests/test_lock.py fails when this file is stale.
# Pins already in the lock are kept (uv prefers an output file's versions): only what pyproject's
# change needs moves. `UPGRADE=1 make lock` re-resolves everything to the newest allowed versions.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/uv ]; then  # resolving needs only uv, not the (maybe stale) locked install
    "${PYTHON:-python3}" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
fi
out=requirements/lock.txt
tmp=$(mktemp)
upgrade=()
if [ "${UPGRADE:-0}" = 1 ]; then upgrade=(--upgrade); elif [ -f "$out" ]; then cp "$out" "$tmp"; fi
.venv/bin/uv pip compile pyproject.toml --extra all --extra dev --universal --python-version 3.11 \
    --custom-compile-command "make lock" -q "${upgrade[@]}" -o "$tmp"
{ .venv/bin/python .ci/lock_digest.py; cat "$tmp"; } >"$out"
rm -f "$tmp"
echo "==> $out: $(grep -c '^[A-Za-z0-9]' "$out") pinned packages"
