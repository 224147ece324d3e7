"""What the resource does to a Dagster step besides asking the gate service: the decision as
output metadata, run-log lines, the watched asset key, core errors as ``dagster.Failure``, and the
wait's time budget.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from dagster_resources._context import StepContext, op_context
from dagster_resources._decision import ApprovalDecision, console_link
from gate_core import (
    Gate,
    GatehouseError,
    IdempotencyConflict,
    ServiceUnavailable,
)


def failure(exc: GatehouseError) -> dg.Failure:
    """A core error as Dagster's idiom. Transient (service down) may be retried; a refusal not."""
    transient = isinstance(exc, ServiceUnavailable)
    hint = ""
    if isinstance(exc, IdempotencyConflict):
        hint = " (this step already has a gate for a different request; pass key=… to tell them apart)"
    return dg.Failure(description=f"gatehouse: {exc}{hint}", allow_retries=transient)


def observed_key(context: StepContext, asset_key: dg.AssetKey | str | None) -> dg.AssetKey:
    if asset_key is not None:
        return asset_key if isinstance(asset_key, dg.AssetKey) else dg.AssetKey.from_user_string(asset_key)
    ctx = op_context(context)
    if ctx.has_assets_def and len(ctx.selected_asset_keys) == 1:
        return next(iter(ctx.selected_asset_keys))
    raise dg.Failure(
        description=(
            "open_gate needs asset_key=… outside a single-asset step: the key approval_sensor watches"
        ),
        allow_retries=False,
    )


def attach(context: StepContext, metadata: Mapping[str, dg.MetadataValue]) -> None:
    """Put the decision on every output of the step (an asset's: its materialization). An op
    without outputs, or with dynamic ones (their mapping keys are not known yet), has the run
    log line only."""
    ctx = op_context(context)
    for name in sorted(ctx.selected_output_names):
        try:
            ctx.add_output_metadata(dict(metadata), output_name=name)
        except dg.DagsterInvariantViolationError:
            continue  # a dynamic output: Dagster needs a mapping key the step has not chosen yet


def waiting(gate: Gate, public_url: str) -> str:
    groups = ", ".join(gate.approver_groups) or "the approvers"
    return (
        f"gatehouse: waiting for approval of gate {gate.id} (rule {gate.rule!r}: {gate.required_approvals} "
        f"approval(s) from {groups}, expires {gate.expires_at.isoformat(timespec='seconds')}): "
        f"{console_link(public_url, gate.id)}"
    )


def approved(decision: ApprovalDecision) -> str:
    who = ", ".join(decision.approvers) or f"policy rule {decision.rule!r}"
    glass = " (BREAK-GLASS)" if decision.break_glass else ""
    return f"gatehouse: gate {decision.gate_id} approved by {who}{glass}; continuing: {decision.url}"
