"""What you import matches what you install: the core (what pipelines and adapters import) never
pulls in the service's web stack, so ``pip install gatehouse-approvals`` without the ``service`` extra is a
working core, and a DAG importing ``gate_core`` pays for no web framework."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

WEB_STACK = ("fastapi", "starlette", "uvicorn", "jinja2", "slack_sdk", "jwt", "itsdangerous", "multipart")
CORE_MODULES = (
    "gate_core",
    "gate_core.session",
    "gate_core.identity",
    "gate_core.testing",
    "gate_core.sql",
    "gate_core.cli_errors",
)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_the_core_imports_no_web_stack(module: str) -> None:
    probe = (
        f"import json, sys; import {module}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {WEB_STACK!r})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [], f"importing {module} loads the service's web stack"
