"""OpenLineage events → lineage records tied to the gates of their runs, and scope findings.

Runs are joined to Gatehouse runs (``RunContext``: orchestrator, pipeline, run id, task id):

    Airflow          the ``airflow`` run facet (task events) or ``airflowDagRun`` (DAG events):
                     dag_id, the DAG run's run_id, task_id (``[map_index]`` when mapped), try
    Spark, dbt, …    the ``parent`` facet (or its ``root``): a parent run the receiver has seen
                     (e.g. the Airflow task that launched spark-submit or dbt-ol) gives its run;
                     a dbt model's parent is the dbt run, whose own parent is the Airflow task
    otherwise        ``openlineage`` runs: pipeline = the parent job (dbt's ``dbt-run-…``) or the
                     job itself, run id = the parent's or own OpenLineage runId

Every run an OpenLineage runId is claimed for is kept (``gh_lineage_ol_runs``, one row per
claim) so a child arriving in a later request still finds its parent. Airflow's runIds can be
computed in advance, so a runId may be claimed for a decoy run before the real one: an event's own
orchestrator facets decide its own run, and a child is checked against every run its parent was
claimed for (recorded once, under a gated one). The gates of a run are those opened with the
same orchestrator, pipeline and run id (any task: a gate task and the SQL task after it share the
DAG run). Each access is recorded under the run's governing gate
(``lineage._scope.governing_gate``) and checked against what the run's approvals cover
(``lineage._scope.check``).

Idempotency: an access's id is a hash of (OpenLineage runId, job, dataset, operation, phase, the
run it is recorded in) — phase ``start`` for START/RUNNING/OTHER, ``end`` for COMPLETE/FAIL/ABORT —
so a retried event is stored once and a run's START and COMPLETE make at most two records per
dataset. A finding's id is
a hash of (gate, kind, dataset, operation): one violation, one audit event, one notification.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, column, func, select, table, text
from sqlalchemy.dialects import postgresql, sqlite

from gate_core import Actor, DatasetRef, Gate, GateFilter, Gatekeeper, RunContext
from gate_core.sql import json_rows
from lineage._catalog import Catalog, Classification
from lineage._models import AccessEvent, ColumnInfo, Operation
from lineage._ol_claims import (
    Claim,
    RunKey,
    add_claim,
    airflow_run,
    claim_key,
    contested,
    derived,
    preferred,
    run_ident,
)
from lineage._ol_events import SeenDataset, SeenEvent
from lineage._schema import column_edges, ol_runs, violations
from lineage._scope import Finding, RunScope, check, governing_gate
from lineage._store import LineageStore

log = logging.getLogger("gatehouse.lineage.openlineage")
OUT_OF_SCOPE = "lineage.out_of_scope"
_END = frozenset({"COMPLETE", "FAIL", "ABORT"})
_OUTPUT_ACTIONS = {"export": Operation.EXPORT, "delete": Operation.DELETE}
Alert = Callable[[Gate, str, Mapping[str, Any]], None]


@dataclass
class Ingested:
    received: int = 0
    recorded: int = 0
    violations: list[Finding] = field(default_factory=list)


def _access_id(*parts: str) -> str:
    return "o" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


_gates = table(
    "gh_gates", column("id"), column("run_key"), column("created_at")
)  # the gate store's run index (same database)
_RUNS_PER_LOOKUP = 500  # run keys per lookup of the gates' run index
# A run has a gate or a few. Past this many, only its newest are checked against: fewer approvals
# can only add findings, and no run's flood of gates can make a batch of other runs fail.
GATES_PER_RUN = 1000
_IDS_PER_LOAD = 1000  # gates loaded by id at a time: SQLite caps bound parameters per statement
_ROWS_PER_INSERT = 500  # rows per multi-row INSERT: far below SQLite's bound-parameter limit
_CLAIM_COLUMNS = (
    ol_runs.c.ol_run_id,
    ol_runs.c.orchestrator,
    ol_runs.c.pipeline,
    ol_runs.c.run_id,
    ol_runs.c.task_id,
    ol_runs.c.claimed_by,
    ol_runs.c.run_key,
)
# PostgreSQL: a batch's keys as one JSON parameter (gate_core.sql.json_rows), as lineage._edges
# does: one plan and one short statement text however many keys, where an IN list of a batch's
# 500 runIds cost more to render, convert and plan than to run. LATERAL: one index probe per key.
_PG_KNOWN_RUNS = text(
    "SELECT r.ol_run_id, r.orchestrator, r.pipeline, r.run_id, r.task_id, r.claimed_by, r.run_key "
    "FROM json_array_elements_text(CAST(:ids AS json)) AS k(id) CROSS JOIN LATERAL "
    "(SELECT * FROM gh_lineage_ol_runs WHERE ol_run_id = k.id) AS r "
    "ORDER BY r.ol_run_id, r.seen_at, r.run_key"
)
# The newest GATES_PER_RUN gates of each run, through the gates' run index (newest first per key).
_PG_GATES_OF_RUNS = text(
    "SELECT g.id, k.key FROM json_array_elements_text(CAST(:keys AS json)) AS k(key) CROSS JOIN LATERAL "
    "(SELECT id FROM gh_gates WHERE run_key = k.key ORDER BY created_at DESC LIMIT :n) AS g"
)


def _claimed(runs: Sequence[RunContext]) -> tuple[str, ...]:
    """The runs an access is checked in, as part of its id: every one of them, not only the one it
    is recorded under — that one is the gated run if any, and a gate opening between an event and
    its retry must not change the id (a retried event is stored once). One run: its four fields."""
    return tuple(
        part
        for fields in sorted((r.orchestrator, r.pipeline, r.run_id, r.task_id) for r in runs)
        for part in fields
    )


def _checked_claims(own: RunContext | None, claims: Sequence[Claim], by: str) -> list[Claim]:
    """The claims an event's accesses are recorded under and checked against: its own run when
    its facets name one (``own``) (never another claim of its runId), else its claims — those ``by`` made
    if any (``lineage._ol_claims``)."""
    if own is not None:
        key = claim_key(own)
        return [c for c in claims if c.key == key] or [Claim(own, by, key)]
    return preferred(claims, by)


def _on_conflict_nothing(conn: Connection, target: Any) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(target).on_conflict_do_nothing()


def _insert_new(conn: Connection, target: Any, rows: list[dict[str, Any]]) -> None:
    """Insert the rows whose primary key is new, in one statement: on PostgreSQL the whole batch
    as one JSON parameter turned into the table's row type (one plan, one round trip, where an
    executemany of a batch's run mappings cost more than the COPY of its accesses); on SQLite one
    executemany."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(_on_conflict_nothing(conn, target), rows)
        return
    sql = (
        f"INSERT INTO {target.name} SELECT * FROM "  # noqa: S608 - our own table
        f"json_populate_recordset(NULL::{target.name}, CAST(:rows AS json)) ON CONFLICT DO NOTHING"
    )
    conn.execute(text(sql), {"rows": json_rows(rows)})


def _inserted_ids(conn: Connection, target: Any, rows: list[dict[str, Any]]) -> set[str]:
    """Insert the rows whose ``id`` is new, in one statement; the ids that were new (from
    RETURNING: psycopg reports no rowcount for ON CONFLICT statements)."""
    if not rows:
        return set()
    stmt = _on_conflict_nothing(conn, target).values(rows).returning(target.c.id)
    return set(conn.execute(stmt).scalars())


@dataclass
class _BatchMemo:
    """What one batch works out once per distinct case: the catalog's classification of each
    dataset shape, and the first validated access of each (shape, run, operation, gate, actor)."""

    classified: dict[tuple[Any, ...], Classification] = field(default_factory=dict)
    accesses: dict[tuple[Any, ...], AccessEvent] = field(default_factory=dict)


class OpenLineageIngest:
    """Takes reduced events in, records accesses, finds what their runs' approvals did not cover."""

    def __init__(
        self, store: LineageStore, gatekeeper: Gatekeeper, catalog: Catalog, alert: Alert | None
    ) -> None:
        self.store = store
        self.gatekeeper = gatekeeper
        self.catalog = catalog
        self.alert = alert

    # ------------------------------------------------------------ runs

    def _known_runs(self, ids: set[str]) -> dict[str, list[Claim]]:
        """Every claim of each of these runIds so far, first claimed first."""
        if not ids:
            return {}
        found: dict[str, list[Claim]] = {}
        with self.store.db.read() as conn:
            if conn.dialect.name == "postgresql":
                rows = conn.execute(_PG_KNOWN_RUNS, {"ids": json_rows(sorted(ids))})
            else:
                rows = conn.execute(
                    select(*_CLAIM_COLUMNS)
                    .where(ol_runs.c.ol_run_id.in_(sorted(ids)))
                    .order_by(ol_runs.c.ol_run_id, ol_runs.c.seen_at, ol_runs.c.run_key)
                )
            for ol_run_id, orchestrator, pipeline, run_id, task_id, claimed_by, key in rows:
                run = RunContext(orchestrator=orchestrator, pipeline=pipeline, run_id=run_id, task_id=task_id)
                found.setdefault(ol_run_id, []).append(Claim(run, claimed_by, key))
        return found

    def _runs(
        self, batch: Sequence[SeenEvent], sender: str, owns: Mapping[int, RunContext | None]
    ) -> dict[str, list[Claim]]:
        """The claims of each OpenLineage runId of the batch, stored and new (``lineage._ol_claims``;
        in order: a parent met earlier in the same batch counts)."""
        wanted = {i for s in batch for i in (s.ol_run_id, s.run.parent_run_id, s.run.root_run_id) if i}
        known = self._known_runs(wanted)
        for seen in batch:
            if seen.ol_run_id is None:
                continue
            claimed = known.setdefault(seen.ol_run_id, [])
            own = owns[id(seen)]
            if own is not None:
                add_claim(claimed, own, sender, seen.ol_run_id)
            elif not claimed:
                for run in derived(seen, known, sender):
                    add_claim(claimed, run, sender, seen.ol_run_id)
        return known

    def gates_of_runs(self, runs: Iterable[RunContext]) -> dict[RunKey, list[Gate]]:
        """The gates opened in each of these orchestrator runs (any task; the newest GATES_PER_RUN),
        keyed by ``(orchestrator, pipeline, run id)``: probes of the gates' run index
        (``RunContext.key``), never a search of request text, which any gate's free-form parameters
        could also match. A gate belongs to the run its stored key names — the key audit verify
        checks against the gate's logged request — not to whatever its stored request JSON says."""
        by_key: dict[str, RunKey] = {}
        found: dict[RunKey, list[Gate]] = {}
        for run in runs:
            if (key := run.key()) is not None:
                by_key[key] = run_ident(run)
                found.setdefault(by_key[key], [])
        keys = sorted(by_key)
        pairs: dict[str, str] = {}
        for start in range(0, len(keys), _RUNS_PER_LOOKUP):
            some = keys[start : start + _RUNS_PER_LOOKUP]
            with self.store.db.read() as conn:
                if conn.dialect.name == "postgresql":
                    params = {"keys": json_rows(some), "n": GATES_PER_RUN}
                    pairs.update(conn.execute(_PG_GATES_OF_RUNS, params).all())
                    continue
                newest = func.row_number().over(
                    partition_by=_gates.c.run_key, order_by=_gates.c.created_at.desc()
                )
                ranked = (
                    select(_gates.c.id, _gates.c.run_key, newest.label("n"))
                    .where(_gates.c.run_key.in_(some))
                    .subquery()
                )
                pairs.update(
                    conn.execute(
                        select(ranked.c.id, ranked.c.run_key).where(ranked.c.n <= GATES_PER_RUN)
                    ).all()
                )
        ids = sorted(pairs)
        for start in range(0, len(ids), _IDS_PER_LOAD):
            chunk = tuple(ids[start : start + _IDS_PER_LOAD])
            for gate in self.gatekeeper.list(GateFilter(ids=chunk, limit=len(chunk))):
                found[by_key[pairs[gate.id]]].append(gate)
        return found

    def relevant_tags(self) -> frozenset[str]:
        """The tags the policy matches on (normalised when the policy loaded): what makes an
        unapproved dataset matter."""
        return frozenset(t for rule in self.gatekeeper.policy.rules for t in rule.match.dataset_tags)

    # ------------------------------------------------------------ accesses

    def _access(
        self,
        seen: SeenEvent,
        ds: SeenDataset,
        run: RunContext,
        gates: list[Gate],
        actor: str,
        memo: _BatchMemo,
        claimed: tuple[str, ...],
    ) -> AccessEvent:
        gate = governing_gate(gates, seen.event_time) if gates else None
        if ds.role == "output":
            action = gate.request.action if gate is not None else ""
            operation = _OUTPUT_ACTIONS.get(action, Operation.WRITE)
        else:
            operation = Operation.READ
        shape = (ds.namespace, ds.name, ds.tags, ds.fields, tuple(sorted(ds.column_tags.items())))
        classified = memo.classified.get(shape)
        if classified is None:
            columns = tuple(
                ColumnInfo(name=name, type=kind, tags=ds.column_tags.get(name, frozenset()))
                for name, kind in ds.fields
            )
            dataset = DatasetRef(namespace=ds.namespace, name=ds.name, tags=ds.tags)
            classified = memo.classified[shape] = self.catalog.classify(dataset, columns)
        phase = "end" if seen.event_type in _END else "start"
        key = (seen.ol_run_id or seen.event_time.isoformat(), seen.job_namespace, seen.job_name)
        # the runs it is checked in are part of the id (``_claimed``): a runId anyone could
        # compute, claimed first for a decoy run, must not make the real run's access look recorded
        access_id = _access_id(*key, ds.qualified_name, operation.value, phase, *claimed)
        gate_id = gate.id if gate is not None else None
        # A batch repeats a few (dataset, run, operation, gate) combinations many times. The first
        # of each is validated in full; the others copy it and change only what differs per event,
        # each valid by construction: the id (hex digest), the time (``_time``: aware, UTC) and the
        # counts (``_int``: 0 ≤ n < 2**63). Per-field validation of the rest would re-check the
        # very same dataset, columns and run objects that the first one checked.
        template_key = (shape, run, operation, gate_id, actor)
        template = memo.accesses.get(template_key)
        if template is not None:
            update = {"id": access_id, "at": seen.event_time, "row_count": ds.row_count, "bytes": ds.bytes}
            return template.model_copy(update=update)
        access = AccessEvent(
            id=access_id,
            at=seen.event_time,
            dataset=classified.dataset,
            operation=operation,
            columns=classified.columns,
            row_count=ds.row_count,
            bytes=ds.bytes,
            run=run,
            actor=actor,
            gate_id=gate_id,
        )
        memo.accesses[template_key] = access
        return access

    def ingest(self, batch: Sequence[SeenEvent], sender: Actor) -> Ingested:
        result = Ingested(received=len(batch))
        by = sender.principal_id
        owns = {id(s): airflow_run(s) for s in batch}  # the run each event's own facets name
        claims = self._runs(batch, by, owns)
        # per event: the claims it is checked against (its own run, or its parent's claims)
        checked = {
            s.ol_run_id: _checked_claims(owns[id(s)], claims.get(s.ol_run_id or "", []), by) for s in batch
        }
        contests = {s.ol_run_id for s in batch if len(claims.get(s.ol_run_id or "", [])) > 1}
        gates_by_run = self.gates_of_runs(
            [c.run for cs in checked.values() for c in cs]
            + [c.run for i in contests for c in claims[i or ""]]
        )
        scopes = {key: RunScope.of(gates) for key, gates in gates_by_run.items() if gates}
        memo = _BatchMemo()
        relevant = self.relevant_tags()
        accesses: list[AccessEvent] = []
        findings: dict[str, tuple[Finding, RunContext]] = {}
        edges: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        now = datetime.now(UTC)
        for seen in batch:
            own_claims = claims.get(seen.ol_run_id or "", [])
            for contest, claimant in contested(seen, owns[id(seen)], own_claims, gates_by_run):
                findings.setdefault(contest.id, (contest, claimant))
            candidates = [c.run for c in checked[seen.ol_run_id]] or [
                RunContext(orchestrator="openlineage", pipeline=seen.job_name[:500])
            ]
            # recorded once, under a gated claim if any (governance queries then show it there);
            # checked against the approvals of every gated claim
            run = next((c for c in candidates if run_ident(c) in scopes), candidates[0])
            gates = gates_by_run.get(run_ident(run), [])
            claimed = _claimed(candidates)
            for ds in seen.datasets:
                access = self._access(seen, ds, run, gates, by, memo, claimed)
                accesses.append(access)
                for claim in candidates:
                    key = run_ident(claim)
                    if key not in scopes:
                        continue
                    against = (
                        access
                        if claim is run
                        else self._access(seen, ds, claim, gates_by_run[key], by, memo, claimed)
                    )
                    finding = check(against, scopes[key], relevant)
                    if finding is not None:
                        findings.setdefault(finding.id, (finding, against.run))
                for edge in ds.column_edges:
                    ends = (
                        ds.qualified_name[:1600],
                        edge.downstream_field,
                        edge.upstream[:1600],
                        edge.upstream_field[:500],
                    )
                    names = ("downstream", "downstream_field", "upstream", "upstream_field")
                    edges[ends] = {**dict(zip(names, ends, strict=True)), "first_seen_at": now}
        in_batch = {s.ol_run_id for s in batch}
        run_rows = [
            {
                **{k: getattr(c.run, k) for k in ("orchestrator", "pipeline", "run_id", "task_id")},
                "ol_run_id": i,
                "seen_at": now,
                "run_key": c.key,
                "claimed_by": c.by,
            }
            for i, cs in sorted(claims.items())  # sorted: concurrent batches lock rows in one order
            if i in in_batch
            for c in sorted(cs, key=lambda c: c.key)
        ]
        edge_rows = [edges[k] for k in sorted(edges)]

        def mappings(conn: Connection) -> None:
            _insert_new(conn, ol_runs, run_rows)
            _insert_new(conn, column_edges, edge_rows)

        # accesses, run mappings and column edges: one transaction, one commit
        result.recorded = self.store.record_many(accesses, also=mappings)
        result.violations = self._report(list(findings.values()), sender)
        return result

    # ------------------------------------------------------------ findings

    def _report(self, found: list[tuple[Finding, RunContext]], sender: Actor) -> list[Finding]:
        """Store each finding once (one statement for the batch's findings); audit and notify the
        new ones only."""
        if not found:
            return []
        now = datetime.now(UTC)
        rows = {
            finding.id: {
                "id": finding.id,
                "at": now,
                "gate_id": finding.gate_id,
                "kind": finding.kind,
                "dataset": finding.dataset,
                "operation": finding.operation,
                "tags": json.dumps(list(finding.tags)),
                "orchestrator": run.orchestrator,
                "pipeline": run.pipeline,
                "run_id": run.run_id,
                "task_id": run.task_id,
                "accessed_at": finding.accessed_at,
                "detail": finding.detail,
            }
            for finding, run in found
        }
        ordered = [rows[i] for i in sorted(rows)]
        fresh: set[str] = set()
        with self.store.db.begin() as conn:
            for start in range(0, len(ordered), _ROWS_PER_INSERT):
                fresh |= _inserted_ids(conn, violations, ordered[start : start + _ROWS_PER_INSERT])
        new: list[Finding] = []
        for finding, _run in found:
            if finding.id not in fresh:
                continue
            new.append(finding)
            row = rows[finding.id]
            payload = {k: v for k, v in row.items() if k not in ("at", "accessed_at")}
            payload["accessed_at"] = finding.accessed_at.isoformat()
            payload["tags"] = list(finding.tags)
            self.gatekeeper.audit.record(OUT_OF_SCOPE, actor=sender, payload=payload, gate_id=finding.gate_id)
            if self.alert is not None:
                try:
                    self.alert(self.gatekeeper.get(finding.gate_id), OUT_OF_SCOPE, payload)
                except Exception:  # a notifier problem must not lose the (stored, audited) finding
                    log.exception("could not queue the out_of_scope notification for %s", finding.gate_id)
        return new
