"""Limits on what one gate request may hold, enforced when it is written.

Every stored request must be readable by every reader: the API's list and show, the console,
the CLI, the audit export, the sweeper, Slack/Teams cards and lineage. Those readers parse JSON
with their own recursion limits (pydantic's JSON parser stops at about 200 levels), so an
unbounded request accepted once would break them for everyone, for good. The limits sit well
inside every reader's; each refusal is an ``InvalidInput`` (422) naming the limit.

    limit                value    what it bounds
    parameters_depth     32       objects/arrays nested in ``parameters`` (itself level 1)
    parameters_bytes     65536    canonical JSON of ``parameters``, in UTF-8 bytes
    parameters_items     5000     keys plus array items in ``parameters``, all levels
    parameters_integer   2**63    magnitude of any integer in ``parameters`` (readers in other
                                  languages hold 64-bit integers)
    datasets             200      datasets in one request
    dataset_tags         50       tags on one dataset
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gate_core._errors import InvalidInput
from gate_core._hashing import canonical_json
from gate_core._models import GateRequest


@dataclass(frozen=True, slots=True)
class Limits:
    parameters_depth: int = 32
    parameters_bytes: int = 65_536
    parameters_items: int = 5_000
    parameters_integer: int = 2**63
    datasets: int = 200
    dataset_tags: int = 50


LIMITS = Limits()


def _refuse(name: str, found: object, limit: object) -> InvalidInput:
    return InvalidInput(f"request exceeds the limit {name} ({found} > {limit}); see gate_core._limits")


def _walk(value: Any, depth: int, counts: list[int], limits: Limits) -> None:
    """Depth-first; refuses as soon as a limit is passed, so a 100,000-level value costs no more
    than ``parameters_depth`` frames. ``depth`` is the nesting level of ``value`` if it is a container."""
    if isinstance(value, dict | list | tuple) and depth > limits.parameters_depth:
        raise _refuse("parameters_depth", f"depth {depth}+", limits.parameters_depth)
    if isinstance(value, dict):
        children: Any = value.values()
    elif isinstance(value, list | tuple):
        children = value
    else:
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return
        if isinstance(value, int) and abs(value) >= limits.parameters_integer:
            raise _refuse("parameters_integer", "|n|", "2**63 - 1")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput("parameters: numbers must be finite (no NaN or Infinity)")
        return
    counts[0] += len(children)
    if counts[0] > limits.parameters_items:
        raise _refuse("parameters_items", f"{counts[0]}+ items", limits.parameters_items)
    for child in children:
        _walk(child, depth + 1, counts, limits)


def enforce_limits(request: GateRequest, *, limits: Limits = LIMITS) -> None:
    """Refuse (``InvalidInput``, 422) a request beyond any limit, or whose action, environment or
    tags hold an invisible character (gate_core._terms); every channel's open calls this."""
    problem = request.invisible_term_problem()
    if problem is not None:
        raise InvalidInput(problem)
    _walk(request.parameters, 1, [0], limits)
    size = len(canonical_json(request.parameters).encode("utf-8"))
    if size > limits.parameters_bytes:
        raise _refuse("parameters_bytes", f"{size} bytes", limits.parameters_bytes)
    if len(request.datasets) > limits.datasets:
        raise _refuse("datasets", len(request.datasets), limits.datasets)
    for dataset in request.datasets:
        if len(dataset.tags) > limits.dataset_tags:
            raise _refuse("dataset_tags", f"{len(dataset.tags)} tags on one dataset", limits.dataset_tags)
