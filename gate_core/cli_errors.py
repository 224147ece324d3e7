"""How every ``gatehouse`` subcommand fails — the core's and those plugins add (``gatehouse lineage``):
one line on stderr, never a traceback, and the exit code the CLI documents (1 refused, not found or
a failed check; 2 usage error).

A module of its own because ``gate_core.cli`` loads the plugins' commands when it is imported: a
plugin importing it back would be an import cycle.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import NoReturn, ParamSpec, TypeVar

import click
from pydantic import ValidationError

from gate_core._errors import GatehouseError

__all__ = ["clean_errors", "fail"]

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"gatehouse: {message}", err=True)
    sys.exit(code)


def clean_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Every known failure (a ``GatehouseError``, invalid input) is one line on stderr and exit 1."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except GatehouseError as exc:
            fail(str(exc))
        except ValidationError as exc:
            first = exc.errors()[0]
            fail(f"invalid {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")

    return wrapper
