"""Which Gatehouse run an OpenLineage runId belongs to — when anyone can compute a runId.

Airflow's OpenLineage provider derives a task run's runId from dag id, task id, try number, logical
date and map index; for a scheduled run it is known in advance. So the receiver never lets one
claim decide: every run a runId was claimed for is kept (``gh_lineage_ol_runs``, one row per
claim, with the sending credential's principal), and

    an event with its own orchestrator facets (``airflow``/``airflowDagRun``) is its own run,
        recorded and checked there, whatever was claimed before;
    a child (a Spark or dbt job naming a parent runId) takes its parent's claims — those made by
        the same sender if any (a pipeline's Spark job posts with the pipeline's own credential),
        else every one — is recorded once, under a gated claim if any, and checked against the
        approvals of each gated claim;
    a runId of a gated run claimed for another run by an event's own facets is a ``contested_run``
        finding for that gate (someone posted under a runId that is not theirs, or a producer is
        misconfigured);
    at most MAX_CLAIMS runs per runId and sender: more are dropped (and logged), so no flood of
        claims makes every event that names the runId cost more — and none keeps another sender's
        claim out.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gate_core import Gate, RunContext
from lineage._ol_events import SeenEvent
from lineage._scope import CONTESTED_RUN, Finding, finding_id, governing_gate

log = logging.getLogger("gatehouse.lineage.openlineage")
MAX_CLAIMS = 8
RunKey = tuple[str, str, str]  # orchestrator, pipeline, run id: the gates of a run


def claim_key(run: RunContext) -> str:
    """A claimed run as one fixed-width key (migration 0005 computes the same; none of the four
    can hold NUL)."""
    joined = f"{run.orchestrator}\x00{run.pipeline}\x00{run.run_id}\x00{run.task_id}"
    return hashlib.sha256(joined.encode()).hexdigest()


def run_ident(run: RunContext) -> RunKey:
    """What a run's gates are grouped by (``RunContext.key()`` is its hash, for the index)."""
    return (run.orchestrator, run.pipeline, run.run_id)


@dataclass(frozen=True, slots=True)
class Claim:
    run: RunContext
    by: str  # principal of the credential that posted the claiming event ("" before migration 0005)
    key: str  # claim_key(run)


def airflow_run(seen: SeenEvent) -> RunContext | None:
    """The run an event's own Airflow facets name, or None."""
    ids = seen.run
    if not (ids.dag_id and ids.dag_run_id):
        return None
    task = ids.task_id
    if task is None and seen.job_name.startswith(f"{ids.dag_id}."):
        task = seen.job_name[len(ids.dag_id) + 1 :]
    if task and ids.map_index is not None:
        task = f"{task}[{ids.map_index}]"
    return RunContext(
        orchestrator="airflow",
        pipeline=ids.dag_id,
        run_id=ids.dag_run_id,
        task_id=(task or "")[:500],
        try_number=max(1, min(ids.try_number or 1, 1_000_000)),
    )


def add_claim(claimed: list[Claim], run: RunContext, by: str, ol_run_id: str) -> Claim | None:
    """``run`` as a claim of the runId whose claims are ``claimed`` (the existing claim if it is
    one already, try numbers aside); None past MAX_CLAIMS claims by ``by``."""
    key = claim_key(run)
    for claim in claimed:
        if claim.key == key:
            return claim
    if sum(c.by == by for c in claimed) >= MAX_CLAIMS:
        log.warning("OpenLineage runId %s has %d claims by %s; %s dropped", ol_run_id, MAX_CLAIMS, by, key)
        return None
    claim = Claim(run, by, key)
    claimed.append(claim)
    return claim


def preferred(claims: Sequence[Claim], by: str) -> list[Claim]:
    """The claims made by ``by``, if any; else all of them."""
    mine = [c for c in claims if c.by == by]
    return mine or list(claims)


def derived(seen: SeenEvent, known: Mapping[str, list[Claim]], by: str) -> list[RunContext]:
    """The runs of an event without orchestrator facets: its parent's (or root's), else a run of
    its own."""
    ids = seen.run
    parents = known.get(ids.parent_run_id or "") or known.get(ids.root_run_id or "") or []
    if parents:
        # an orchestrator's task keeps its name (Spark/dbt ran inside it); a bare OpenLineage
        # parent (dbt's run) is the run, and each child job its own task
        return [
            c.run.model_copy(update={"task_id": seen.job_name[:500]})
            if c.run.orchestrator == "openlineage"
            else c.run
            for c in preferred(parents, by)
        ]
    if ids.parent_run_id:
        return [
            RunContext(
                orchestrator="openlineage",
                pipeline=(ids.parent_job or "")[:500],
                run_id=ids.parent_run_id,
                task_id=seen.job_name[:500],
            )
        ]
    return [
        RunContext(
            orchestrator="openlineage",
            pipeline=f"{seen.job_namespace}/{seen.job_name}"[:500],
            run_id=seen.ol_run_id or "",
            task_id=seen.job_name[:500],
        )
    ]


def contested(
    seen: SeenEvent,
    own: RunContext | None,
    claims: Sequence[Claim],
    gates_by_run: Mapping[RunKey, list[Gate]],
) -> list[tuple[Finding, RunContext]]:
    """A ``contested_run`` finding for each gated run among several that claim this event's runId,
    when the event claims it itself (``own``: ``airflow_run(seen)``); children inherit claims and
    are checked against them, not reported again."""
    if len(claims) < 2 or own is None:
        return []
    found = []
    for claim in claims:
        gates = gates_by_run.get(run_ident(claim.run))
        if not gates:
            continue
        gate = governing_gate(gates, seen.event_time)
        others = "; ".join(
            f"{c.run.orchestrator} {c.run.pipeline} run {c.run.run_id} task {c.run.task_id}"
            for c in claims
            if c.key != claim.key
        )
        subject = f"openlineage run {seen.ol_run_id}"
        finding = Finding(
            finding_id(gate.id, CONTESTED_RUN, subject, "claim"),
            gate.id,
            CONTESTED_RUN,
            subject,
            "claim",
            (),
            seen.event_time,
            f"OpenLineage runId {seen.ol_run_id} of this run was also claimed for {others}"[:1000],
        )
        found.append((finding, claim.run))
    return found
