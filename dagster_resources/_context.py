"""Where a Dagster step is: job, run, step or asset, partition, retry and the launching user.

Everything a gate needs to know about the step that asks for it is read here, once, into a
``StepIdentity``; the rest of the adapter never touches Dagster's execution context directly.

The **logical run** is the root of a re-execution chain: a run re-executed from the UI (or by
run retries) gets a new run id but keeps its root run id, so a retried step finds the gate its
first attempt opened. A root run tagged ``gatehouse/run_key`` or launched with a sensor or
schedule run key (``dagster/run_key``) is named by that key instead, so launching the same
logical run again finds the same gate too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from gate_core import RunContext
from gate_core.session import RequesterClaim, StepRun

StepContext = dg.OpExecutionContext | dg.AssetExecutionContext

ORCHESTRATOR = "dagster"
GATE_ID_TAG = "gatehouse/gate_id"  # set by approval_sensor on the runs it launches
RUN_KEY_TAG = "gatehouse/run_key"  # optional: names the logical run for idempotency keys
DAGSTER_RUN_KEY_TAG = "dagster/run_key"  # set by Dagster on sensor/schedule runs with a run key
REQUESTER_TAG = "gatehouse/requester"  # set by approval_sensor: the person the gate was requested for
LAUNCHED_BY_TAG = "dagster/user"  # Dagster's own record of who launched the run (UI, Dagster+)
# Names a run's launcher may put on it themselves: claims, never stronger than Dagster's record.
NAMED_USER_TAGS = ("user", REQUESTER_TAG)


def op_context(context: StepContext) -> dg.OpExecutionContext:
    """The op-level context of either kind (an asset's context wraps one)."""
    if isinstance(context, dg.AssetExecutionContext):
        return context.op_execution_context
    return context


@dataclass(frozen=True, slots=True)
class StepIdentity:
    """One step of one Dagster run, as Gatehouse names it."""

    job_name: str
    run_id: str
    logical_run: str  # root run's key or id: shared by every re-execution of the run
    step_key: str  # Dagster's step key (op handle, plus [mapping key] for dynamic steps)
    asset_key: str | None  # "a/b" when the step materializes exactly one asset
    partition: str | None  # the partition key, or "start...end" for a partition range
    partition_key: str | None  # the single partition key, when the run has one
    retry_number: int  # 0 on the first attempt of this step in this run
    launched_by: str | None  # who launched the run, as Dagster recorded it (``dagster/user``)
    named_user: str | None  # a ``user`` / ``gatehouse/requester`` tag on the run
    launching_gate: str | None  # the gate whose approval launched this run (approval_sensor)

    @classmethod
    def of(cls, context: StepContext) -> StepIdentity:
        ctx = op_context(context)
        try:
            run = ctx.run
            step_key = ctx.get_step_execution_context().step.key  # the documented hook for frameworks
        except dg.DagsterError:  # DagsterInvalidPropertyError (private) on direct invocation
            raise dg.DagsterInvariantViolationError(
                "an approval gate needs a real run (materialize, execute_in_process, a launched run), "
                "not a directly invoked op or asset: it is keyed on the job, run and step"
            ) from None
        asset_key = None
        if ctx.has_assets_def and len(ctx.selected_asset_keys) == 1:
            asset_key = next(iter(ctx.selected_asset_keys)).to_user_string()
        partition = partition_key = None
        if ctx.has_partition_key:
            partition = partition_key = ctx.partition_key
        elif ctx.has_partition_key_range:
            key_range = ctx.partition_key_range
            partition = f"{key_range.start}...{key_range.end}"
        return cls(
            job_name=ctx.job_name,
            run_id=ctx.run_id,
            logical_run=_logical_run(ctx),
            step_key=step_key,
            asset_key=asset_key,
            partition=partition,
            partition_key=partition_key,
            retry_number=ctx.retry_number,
            launched_by=run.tags.get(LAUNCHED_BY_TAG) or None,
            named_user=next((run.tags[t] for t in NAMED_USER_TAGS if run.tags.get(t)), None),
            launching_gate=run.tags.get(GATE_ID_TAG) or None,
        )

    @property
    def task(self) -> str:
        """The step as people know it: the asset key for a single-asset step, else the step key."""
        return self.asset_key or self.step_key

    def idempotency_key(self, key: str | None = None) -> str:
        """``dagster:{job}:{logical run}:{step or asset}[:{partition}][:{key}]`` — no retry number,
        so every attempt and re-execution of this step finds the same gate."""
        parts = [ORCHESTRATOR, self.job_name, self.logical_run, self.task]
        if self.partition:
            parts.append(self.partition)
        if key:
            parts.append(key)
        return ":".join(parts)

    def requester_claims(self, explicit: str | None, configured: str | None) -> list[RequesterClaim]:
        """Who the step acts for, strongest first: Dagster's record of the launching user, then
        ``requester=``, a user tag on the run, the resource's configured ``requester``."""
        candidates = [
            (self.launched_by, f"Dagster run tag {LAUNCHED_BY_TAG}", True),
            (explicit, "argument requester=", False),
            (self.named_user, "run tag", False),
            (configured, "resource requester", False),
        ]
        return [RequesterClaim(name, source, recorded) for name, source, recorded in candidates if name]

    def step_run(
        self, claims: Sequence[RequesterClaim], dagster_url: str | None, key: str | None = None
    ) -> StepRun:
        return StepRun(self.run_context(dagster_url), self.idempotency_key(key), tuple(claims))

    def run_context(self, dagster_url: str | None) -> RunContext:
        url = f"{dagster_url.rstrip('/')}/runs/{self.run_id}" if dagster_url else None
        return RunContext(
            orchestrator=ORCHESTRATOR,
            pipeline=self.job_name,
            run_id=self.run_id,
            task_id=self.task if not self.partition else f"{self.task}[{self.partition}]",
            try_number=self.retry_number + 1,
            url=url,
        )


def _logical_run(ctx: dg.OpExecutionContext) -> str:
    run = ctx.run
    root = run
    if run.root_run_id and run.root_run_id != run.run_id:
        root = ctx.instance.get_run_by_id(run.root_run_id) or run
    named = run.tags.get(RUN_KEY_TAG) or root.tags.get(RUN_KEY_TAG) or root.tags.get(DAGSTER_RUN_KEY_TAG)
    return named or root.run_id
