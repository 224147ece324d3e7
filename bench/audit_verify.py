"""Audit verification of a large log (target: 1,000,000 entries verified in ≤ 10 s).

Builds a real audit log — bodies chained by ``gate_core._audit.chain`` from drafts shaped like
the ones the Gatekeeper writes, the Merkle nodes and signed checkpoints (with their roots) the
signer writes at the Gatekeeper's default cadence, and the gates and decisions those entries
leave — in the real schema (``SqlStore.open`` runs the migrations) on SQLite and PostgreSQL,
then times ``AuditService.verify()`` end to end as `gatehouse audit verify` runs it — with the
checkpoints of the home's witness file (``audit-checkpoints.jsonl``, which the signer appends
every checkpoint to) read and passed beside the stored ones: the hash chain, every checkpoint,
the RFC 9162 root at each, every stored tree node, and every gate's state replayed from the log.
As in the CLI, a second process re-checks the chain hashes meanwhile (gate_core._hash_worker):
its CPU is reported beside this process's.

    python -m bench.audit_verify            # 1,000,000 entries, SQLite + PostgreSQL
    python -m bench.audit_verify --quick    # 50,000 entries
    python -m bench.audit_verify --profile  # add a cProfile pass per backend

Writing through the Gatekeeper would take hours for a million entries, so entries are chained
in memory and bulk-loaded (SQLite executemany in large transactions, PostgreSQL COPY).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import resource
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text, update

from bench._common import (
    Figure,
    Stopwatch,
    at_least,
    at_most,
    cpu_seconds,
    info,
    libpq_url,
    postgres_backends,
    postgres_base_url,
    print_figures,
    scratch_postgres,
    warn_if_busy,
    write_result,
)
from gate_core import (
    Actor,
    AuditService,
    AuthMethod,
    Checkpoint,
    CheckpointSigner,
    DatasetRef,
    Directory,
    Event,
    GateRequest,
    Policy,
    RunContext,
    SqlStore,
    evaluate,
    verify_chain,
)
from gate_core._audit import GENESIS_HASH, STATUS_AFTER, AuditDraft, AuditEntry, chain, read_checkpoints
from gate_core._gatekeeper import _evaluation_record, _request_record
from gate_core._ids import new_gate_id
from gate_core._merkle import NODE_LEVEL, Frontier, leaf_hash
from gate_core._models import SYSTEM_ACTOR, canonical_json
from gate_core._store._schema import audit_head, audit_log
from gate_core.testing import ManualClock, example_directory, example_policy

NAME = "audit_verify"
TARGET_SECONDS_PER_MILLION = 10.0
TARGET_ENTRIES_PER_S = 1_000_000 / TARGET_SECONDS_PER_MILLION
FULL_ENTRIES = 1_000_000
QUICK_ENTRIES = 50_000
GATEKEEPER_CHECKPOINT_EVERY = 256  # Gatekeeper's default, so the checkpoint count is what production has
START = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)

AUDIT_COLUMNS = ("seq", "at", "event", "actor", "gate_id", "body", "prev_hash", "hash")
CHECKPOINT_COLUMNS = ("size", "head_hash", "at", "key_id", "signature", "root")
NODE_COLUMNS = ("level", "idx", "hash")
GATE_COLUMNS = (
    "id",
    "status",
    "action",
    "target",
    "environment",
    "requester",
    "submitted_by",
    "binding_hash",
    "policy_hash",
    "rule",
    "required_approvals",
    "request",
    "context",
    "created_at",
    "expires_at",
    "decided_by",
    "run_key",
)
DECISION_COLUMNS = (
    "gate_id",
    "principal_id",
    "person_key",
    "display_name",
    "verdict",
    "comment",
    "at",
    "via",
    "break_glass",
)


# ------------------------------------------------------------------ realistic drafts


@dataclass(frozen=True, slots=True)
class Scenario:
    """One kind of request, evaluated once by the real policy so payloads carry real text."""

    record: dict[str, Any]
    binding_hash: str
    evaluated: dict[str, Any]
    expiry: timedelta
    submitter: Actor
    approvers: tuple[Actor, ...]


def _actor(directory: Directory, principal_id: str, via: AuthMethod) -> Actor:
    return Actor(principal_id=principal_id, via=via, email=directory.get(principal_id).email)


def _requests(count: int) -> Iterator[GateRequest]:
    """Varied pii exports and prod redeploys, some from Airflow runs, some with secret-named params."""
    for i in range(count):
        run = RunContext(
            orchestrator="airflow",
            pipeline=f"customer_exports_{i % 7}",
            run_id=f"scheduled__2025-01-{1 + i % 28:02d}T02:00:00+00:00",
            task_id="export_to_partner",
            url=f"https://airflow.example.com/dags/customer_exports_{i % 7}/grid",
        )
        if i % 4 == 3:
            yield GateRequest(
                action="redeploy",
                target=f"models/churn-{i % 5}",
                environment="prod",
                requester="alice",
                parameters={"version": f"2.{i % 9}.{i % 13}", "api_token": "s3cr3t-never-logged"},
                run=run,
                reason="retrained on the December snapshot; AUC +0.8pt on holdout",
            )
        else:
            yield GateRequest(
                action="export",
                target=f"s3://exports/partner-{i % 11}/customers-{i:04d}.csv",
                datasets=(
                    DatasetRef.parse("warehouse/customers#pii"),
                    DatasetRef.parse(f"warehouse/orders_{i % 3}#finance"),
                ),
                parameters={"format": "csv", "columns": ["id", "email", "country", "ltv"], "rows": 1000 + i},
                requester="alice",
                run=run if i % 2 else RunContext(),
                reason="quarterly report for the partner success team",
            )


def build_scenarios(policy: Policy, directory: Directory, count: int = 32) -> list[Scenario]:
    alice = _actor(directory, "alice", AuthMethod.LOCAL_OS_USER)
    bot = _actor(directory, "etl-bot", AuthMethod.API_TOKEN)
    scenarios = []
    for i, request in enumerate(_requests(count)):
        decision = evaluate(request, directory.get(request.requester), policy)
        approvers = ("bob", "dave") if decision.required_approvals == 2 else ("bob" if i % 2 else "carol",)
        scenarios.append(
            Scenario(
                record=_request_record(request),
                binding_hash=request.binding_hash(),
                evaluated=_evaluation_record(decision, request.binding_hash()),
                expiry=decision.expiry,
                submitter=bot if request.run.orchestrator == "airflow" else alice,
                approvers=tuple(_actor(directory, p, AuthMethod.SLACK) for p in approvers),
            )
        )
    return scenarios


def gate_lifecycle(index: int, scenario: Scenario, at: datetime) -> list[AuditDraft]:
    """The entries one gate leaves behind: request, evaluation, decisions, outcome, consumption.

    Every 10th gate is rejected, every 7th sees a refused self-approval first — the same events
    and payload keys the Gatekeeper writes on those paths.
    """
    gate_id = new_gate_id(int(at.timestamp() * 1000))
    required = scenario.evaluated["required_approvals"]
    drafts = [
        AuditDraft(
            Event.GATE_REQUESTED,
            at,
            scenario.submitter,
            gate_id,
            {"request": scenario.record, "binding_hash": scenario.binding_hash},
        ),
        AuditDraft(
            Event.POLICY_EVALUATED,
            at,
            SYSTEM_ACTOR,
            gate_id,
            scenario.evaluated | {"expires_at": (at + scenario.expiry).isoformat()},
        ),
    ]
    decided = at + timedelta(minutes=3)
    if index % 7 == 0:
        drafts.append(
            AuditDraft(
                Event.DECISION_REFUSED,
                decided,
                scenario.submitter,
                gate_id,
                {
                    "verdict": "approve",
                    "reason": "self_approval",
                    "message": "alice requested this gate and may not approve it",
                },
            )
        )
    if index % 10 == 0:
        rejecter = scenario.approvers[0]
        drafts += [
            _decision(rejecter, gate_id, decided, "reject", "not without a DPA", 0, required, scenario),
            AuditDraft(Event.GATE_REJECTED, decided, rejecter, gate_id, {"by": [rejecter.principal_id]}),
        ]
        return drafts
    for n, approver in enumerate(scenario.approvers, start=1):
        drafts.append(
            _decision(approver, gate_id, decided, "approve", "ok, DPA on file", n, required, scenario)
        )
    by = [a.principal_id for a in scenario.approvers]
    consumed = decided + timedelta(minutes=1)
    drafts += [
        AuditDraft(Event.GATE_APPROVED, decided, scenario.approvers[-1], gate_id, {"by": by}),
        AuditDraft(
            Event.GATE_CONSUMED,
            consumed,
            scenario.submitter,
            gate_id,
            {"try_number": 1, "binding_hash": scenario.binding_hash},
        ),
    ]
    return drafts


def _decision(
    actor: Actor,
    gate_id: str,
    at: datetime,
    verdict: str,
    comment: str,
    approvals: int,
    required: int,
    scenario: Scenario,
) -> AuditDraft:
    payload = {
        "verdict": verdict,
        "comment": comment,
        "break_glass": False,
        "approvals": approvals,
        "required": required,
        "binding_hash": scenario.binding_hash,
    }
    return AuditDraft(Event.DECISION_RECORDED, at, actor, gate_id, payload)


def audit_drafts(total: int, scenarios: Sequence[Scenario]) -> Iterator[AuditDraft]:
    """``total`` drafts: gate after gate, 47 s apart, the last gate cut off wherever ``total`` falls."""
    produced = 0
    index = 0
    while produced < total:
        at = START + timedelta(seconds=47 * index)
        for draft in gate_lifecycle(index, scenarios[index % len(scenarios)], at):
            if produced == total:
                return
            yield draft
            produced += 1
        index += 1


def chunked(items: Iterable[AuditDraft], size: int) -> Iterator[list[AuditDraft]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


# ------------------------------------------------------------------ bulk loading


class Sink(Protocol):
    """A backend being filled; ``store`` is the real SqlStore the verification reads through."""

    label: str
    store: SqlStore

    def write(self, entries: Sequence[AuditEntry]) -> None: ...

    def write_checkpoints(self, marks: Sequence[Checkpoint]) -> None: ...

    def write_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None: ...

    def write_state(
        self, gate_rows: Sequence[tuple[Any, ...]], decision_rows: Sequence[tuple[Any, ...]]
    ) -> None: ...

    def finish(self) -> None: ...


class SqliteSink:
    label = "SQLite"

    def __init__(self, path: Path) -> None:
        self.store = SqlStore.open(f"sqlite:///{path}")
        self.path = path
        self._conn = self.store.engine.raw_connection()
        # The column type's own processor, so stored timestamps are byte-identical to ORM writes.
        processor = audit_log.c.at.type.bind_processor(self.store.engine.dialect)
        self._at: Callable[[Any], Any] = processor or (lambda v: v)

    def _insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        # The store's connect hook puts pysqlite in autocommit mode; one explicit transaction per
        # chunk keeps it to one fsync per chunk instead of one per row.
        placeholders = ", ".join("?" * len(columns))
        cursor = self._conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)
        cursor.execute("COMMIT")
        cursor.close()

    def write(self, entries: Sequence[AuditEntry]) -> None:
        at = self._at
        self._insert(
            "gh_audit_log",
            AUDIT_COLUMNS,
            [(e.seq, at(e.at), e.event, e.actor, e.gate_id, e.body, e.prev_hash, e.hash) for e in entries],
        )

    def write_checkpoints(self, marks: Sequence[Checkpoint]) -> None:
        at = self._at
        rows = [(m.size, m.head_hash, at(m.at), m.key_id, m.signature, m.root) for m in marks]
        self._insert("gh_audit_checkpoints", CHECKPOINT_COLUMNS, rows)

    def write_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        if nodes:
            self._insert("gh_audit_tree", NODE_COLUMNS, nodes)

    def write_state(
        self, gate_rows: Sequence[tuple[Any, ...]], decision_rows: Sequence[tuple[Any, ...]]
    ) -> None:
        at = self._at
        self._insert("gh_gates", GATE_COLUMNS, [(*g[:13], at(g[13]), at(g[14]), *g[15:]) for g in gate_rows])
        self._insert("gh_decisions", DECISION_COLUMNS, [(*d[:6], at(d[6]), *d[7:]) for d in decision_rows])

    def finish(self) -> None:
        # Loading in huge transactions leaves the whole log in the WAL; a store that took one
        # small transaction per gate would long since have checkpointed it into the main file.
        self._conn.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()

    def size_bytes(self) -> int:
        return self.path.stat().st_size


class PostgresSink:
    label = "PostgreSQL"

    def __init__(self, url: str) -> None:
        self.store = SqlStore.open(url)
        self._conn = psycopg.connect(libpq_url(url))

    def _copy(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        with (
            self._conn.cursor() as cursor,
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        self._conn.commit()

    def write(self, entries: Sequence[AuditEntry]) -> None:
        self._copy(
            "gh_audit_log",
            AUDIT_COLUMNS,
            ((e.seq, e.at, e.event, e.actor, e.gate_id, e.body, e.prev_hash, e.hash) for e in entries),
        )

    def write_checkpoints(self, marks: Sequence[Checkpoint]) -> None:
        rows = [(m.size, m.head_hash, m.at, m.key_id, m.signature, m.root) for m in marks]
        self._copy("gh_audit_checkpoints", CHECKPOINT_COLUMNS, rows)

    def write_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        if nodes:
            self._copy("gh_audit_tree", NODE_COLUMNS, nodes)

    def write_state(
        self, gate_rows: Sequence[tuple[Any, ...]], decision_rows: Sequence[tuple[Any, ...]]
    ) -> None:
        self._copy("gh_gates", GATE_COLUMNS, gate_rows)
        self._copy("gh_decisions", DECISION_COLUMNS, decision_rows)

    def finish(self) -> None:
        # A long-lived database has been through autovacuum; without this the first read of
        # freshly copied rows also pays for setting hint bits, which production never sees.
        self._conn.autocommit = True
        for table in ("gh_audit_log", "gh_audit_checkpoints", "gh_audit_tree", "gh_gates", "gh_decisions"):
            self._conn.execute(f"VACUUM ANALYZE {table}")
        self._conn.close()

    def size_bytes(self) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(text("SELECT pg_total_relation_size('gh_audit_log')")).scalar_one())


@dataclass(slots=True)
class BuildStats:
    entries: int = 0
    head_hash: str = GENESIS_HASH
    checkpoints: int = 0
    body_bytes: int = 0
    gates: int = 0
    decisions: int = 0
    chain_seconds: float = 0.0
    load_seconds: dict[str, float] = field(default_factory=dict)


LISTED_TERMS = ("approver_groups", "break_glass_groups", "requirements", "identified_by")  # in context


class GateStates:
    """The gh_gates and gh_decisions rows a Gatekeeper would have left beside these entries, so
    that verify's state check has a database that agrees with the log to check."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.created: dict[str, datetime] = {}
        self.run_keys: dict[str, str | None] = {}
        self.bindings: dict[str, str] = {}
        self.evaluated: dict[str, dict[str, Any]] = {}  # rule, quorum, groups and expiry, as logged
        self.decisions: list[tuple[Any, ...]] = []

    def see(self, entries: Sequence[AuditEntry]) -> None:
        for e in entries:
            if e.gate_id is None:
                continue
            if e.event in STATUS_AFTER:
                self.status[e.gate_id] = STATUS_AFTER[e.event]
                self.created.setdefault(e.gate_id, e.at)
                if e.event == Event.GATE_REQUESTED:  # the run key and binding the store writes with the gate
                    payload = json.loads(e.body)["payload"]
                    self.run_keys[e.gate_id] = RunContext.model_validate(payload["request"]["run"]).key()
                    self.bindings[e.gate_id] = payload["binding_hash"]
            elif e.event == Event.POLICY_EVALUATED:
                self.evaluated[e.gate_id] = json.loads(e.body)["payload"]
            elif e.event == Event.DECISION_RECORDED and e.gate_id in self.status:
                body = json.loads(e.body)
                who = body["actor"]["principal_id"]
                verdict = body["payload"]["verdict"]
                self.decisions.append((e.gate_id, who, who, who, verdict, "", e.at, "slack", False))

    def gate_rows(self) -> list[tuple[Any, ...]]:
        """One row per gate, with the terms its log entries record (verify compares them)."""
        rows = []
        for gate_id, status in self.status.items():
            evaluated = self.evaluated.get(gate_id, {})
            context = canonical_json({k: evaluated.get(k, []) for k in LISTED_TERMS})
            expires_at = evaluated.get("expires_at")
            rows.append(
                (
                    gate_id,
                    status,
                    "export",
                    "s3://exports/x.csv",
                    "prod",
                    "alice",
                    "alice",
                    self.bindings.get(gate_id, "0" * 64),
                    "0" * 64,
                    evaluated.get("rule", "pii-exports"),
                    evaluated.get("required_approvals", 1),
                    "{}",
                    context,
                    self.created[gate_id],
                    datetime.fromisoformat(expires_at)
                    if expires_at
                    else self.created[gate_id] + timedelta(days=1),
                    "[]",
                    self.run_keys.get(gate_id),
                )
            )
        return rows


def build_log(
    sinks: Sequence[Sink],
    signer: CheckpointSigner,
    total: int,
    checkpoint_every: int,
    chunk_size: int,
    witness_file: Path,
) -> BuildStats:
    """Chain ``total`` drafts once and load every chunk into every sink, with the Merkle nodes and
    signed checkpoints (v2: with roots) the signer would have written, and the gates' state."""
    stats = BuildStats(load_seconds={s.label: 0.0 for s in sinks})
    scenarios = build_scenarios(example_policy(), example_directory())
    tree = Frontier()
    states = GateStates()
    for drafts in chunked(audit_drafts(total, scenarios), chunk_size):
        with Stopwatch() as chaining:
            entries = chain(stats.entries, stats.head_hash, drafts)
            nodes: list[tuple[int, int, bytes]] = []
            marks = []
            for e in entries:
                completed = tree.append(leaf_hash(e.body.encode()))
                nodes += [n for n in completed if n[0] >= NODE_LEVEL]
                if checkpoint_every and e.seq % checkpoint_every == 0 and e.seq != total:
                    marks.append(signer.sign(e.seq, e.hash, e.at, tree.root()))
            states.see(entries)
        stats.chain_seconds += chaining.seconds
        for sink in sinks:
            with Stopwatch() as loading:
                sink.write(entries)
                sink.write_nodes(nodes)
                if marks:
                    sink.write_checkpoints(marks)
            stats.load_seconds[sink.label] += loading.seconds
        stats.entries = entries[-1].seq
        stats.head_hash = entries[-1].hash
        stats.checkpoints += len(marks)
        with witness_file.open("a", encoding="utf-8") as out:  # as the signer appends each one
            out.writelines(m.to_json() + "\n" for m in marks)
        stats.body_bytes += sum(len(e.body.encode()) for e in entries)
    final = signer.sign(stats.entries, stats.head_hash, datetime.now(UTC), tree.root())
    with witness_file.open("a", encoding="utf-8") as out:
        out.write(final.to_json() + "\n")
    gate_rows = states.gate_rows()
    stats.gates, stats.decisions = len(gate_rows), len(states.decisions)
    for sink in sinks:
        with Stopwatch() as loading:
            sink.write_state(gate_rows, states.decisions)
            sink.finish()
            _set_head(sink.store, stats.entries, stats.head_hash)
            sink.store.add_checkpoint(final)  # the one real, through-the-store checkpoint write
        stats.load_seconds[sink.label] += loading.seconds
    stats.checkpoints += 1
    return stats


def _set_head(store: SqlStore, seq: int, head_hash: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=head_hash))


# ------------------------------------------------------------------ verification


@dataclass(frozen=True, slots=True)
class VerifyTimes:
    end_to_end: float  # AuditService.verify: chain, Merkle root, stored tree, state
    end_to_end_cpu: float  # this process only
    rehash_cpu: float  # the second process that re-checks the chain hashes (gate_core._hash_worker)
    server_cpu: float | None  # the PostgreSQL backends' share, when they run on this machine
    chain_only: float  # verify_chain(rows, checkpoints, key): no state, no stored tree
    fetch_rows: float
    fetch_checkpoints: float
    verify_in_memory: float


def time_verification(
    store: SqlStore, signer: CheckpointSigner, stats: BuildStats, witness_file: Path
) -> VerifyTimes:
    """The headline end-to-end run — what `gatehouse audit verify` does — then its parts timed apart."""
    # CPU seconds next to wall-clock ones: on a machine busy with other work the wall clock
    # overstates the cost, while client + server CPU is what verification needs on an idle one.
    backends = postgres_backends(store)
    server_before = cpu_seconds(backends)
    audit = AuditService(store, ManualClock(), signer=signer)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Stopwatch() as end_to_end:
        report = audit.verify(read_checkpoints(witness_file))  # the CLI passes the witness file's too
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rehash_cpu = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    server_after = cpu_seconds(backends)
    server = None if server_before is None or server_after is None else server_after - server_before
    _check(report.ok, report.summary())
    _check(report.entries == stats.entries, f"verified {report.entries} entries, built {stats.entries}")
    _check(report.checkpoints_checked == stats.checkpoints, "not every checkpoint was checked")
    print(f"    {report.summary()}")
    with Stopwatch() as chain_only:
        _check(verify_chain(store.audit_rows(), store.checkpoints(), signer.public_key).ok, "chain only")

    # Drain without keeping rows: fetching into a list would time the garbage collector
    # rescanning a million live tuples, which the streaming verification never pays.
    with Stopwatch() as fetch_rows:
        deque(store.audit_rows(), maxlen=0)
    with Stopwatch() as fetch_marks:
        marks = store.checkpoints()
    rows = list(store.audit_rows())
    gc.collect()
    gc.freeze()  # same reason: keep the held rows out of every collection during the timed run
    try:
        with Stopwatch() as in_memory:
            again = verify_chain(rows, marks, signer.public_key)
    finally:
        gc.unfreeze()
    _check(again.ok, again.summary())
    return VerifyTimes(
        end_to_end.seconds,
        end_to_end.cpu_seconds,
        rehash_cpu,
        server,
        chain_only.seconds,
        fetch_rows.seconds,
        fetch_marks.seconds,
        in_memory.seconds,
    )


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"benchmark invalid: {message}")


def profile_verification(store: SqlStore, signer: CheckpointSigner, label: str, witness_file: Path) -> str:
    audit = AuditService(store, ManualClock(), signer=signer)
    profiler = cProfile.Profile()
    profiler.enable()
    audit.verify(read_checkpoints(witness_file))
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
    return f"--- cProfile of AuditService.verify on {label} (sorted by own time) ---\n{out.getvalue()}"


def backend_figures(
    label: str, entries: int, times: VerifyTimes, load_s: float, db_bytes: int
) -> list[Figure]:
    target_s = TARGET_SECONDS_PER_MILLION * entries / 1_000_000
    server = []
    if times.server_cpu is not None:
        server.append(info(f"{label}: verify end to end, CPU of the server backend", times.server_cpu, "s"))
    return [
        at_most(
            f"{label}: verify {entries:,} entries end to end (chain, Merkle root, stored tree, state)",
            times.end_to_end,
            "s",
            target_s,
        ),
        at_least(
            f"{label}: verification rate", entries / times.end_to_end, "entries/s", TARGET_ENTRIES_PER_S
        ),
        info(f"{label}: verify end to end, CPU of this process", times.end_to_end_cpu, "s"),
        info(f"{label}: verify end to end, CPU of the process re-checking the hashes", times.rehash_cpu, "s"),
        *server,
        info(
            f"{label}: verify_chain only (chain, Merkle root; no state, no stored tree)",
            times.chain_only,
            "s",
        ),
        info(f"{label}: fetch only: drain store.audit_rows()", times.fetch_rows, "s"),
        info(f"{label}: fetch checkpoints via store.checkpoints()", times.fetch_checkpoints, "s"),
        info(f"{label}: verify_chain on rows already in memory", times.verify_in_memory, "s"),
        info(f"{label}: bulk load (insert + checkpoints + finish)", load_s, "s"),
        info(f"{label}: audit log size on disk", db_bytes / 2**20, "MiB"),
    ]


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_verify", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ENTRIES:,} entries (CI)")
    parser.add_argument("--entries", type=int, help=f"log size (default {FULL_ENTRIES:,})")
    parser.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--checkpoint-every", type=int, default=GATEKEEPER_CHECKPOINT_EVERY)
    parser.add_argument("--chunk", type=int, default=50_000, help="entries per load transaction")
    parser.add_argument("--profile", action="store_true", help="add a cProfile pass per backend")
    args = parser.parse_args(argv)
    if args.entries is None:
        args.entries = QUICK_ENTRIES if args.quick else FULL_ENTRIES
    return args


def run(args: argparse.Namespace, tmp: Path, postgres_url: str | None) -> None:
    signer = CheckpointSigner(Ed25519PrivateKey.generate())
    sinks: list[SqliteSink | PostgresSink] = []
    if args.sqlite:
        sinks.append(SqliteSink(tmp / "audit.db"))
    if postgres_url is not None:
        sinks.append(PostgresSink(postgres_url))
    if not sinks:
        raise SystemExit("nothing to do: both --no-sqlite and --no-postgres given")

    print(f"building an audit log of {args.entries:,} entries in {', '.join(s.label for s in sinks)} …")
    witness_file = tmp / "audit-checkpoints.jsonl"
    stats = build_log(sinks, signer, args.entries, args.checkpoint_every, args.chunk, witness_file)
    print(f"  chained in {stats.chain_seconds:.1f} s; {stats.checkpoints:,} signed checkpoints")

    figures = [
        info("chain() + sign checkpoints, in memory", stats.chain_seconds, "s"),
        info("average entry body", stats.body_bytes / stats.entries, "bytes"),
        info("signed checkpoints in the log", stats.checkpoints, "count"),
        info("gates and decisions beside the log (state check)", stats.gates + stats.decisions, "rows"),
    ]
    profiles = []
    for sink in sinks:
        print(f"  verifying on {sink.label} …")
        times = time_verification(sink.store, signer, stats, witness_file)
        figures += backend_figures(
            sink.label, stats.entries, times, stats.load_seconds[sink.label], sink.size_bytes()
        )
        if args.profile:
            profiles.append(profile_verification(sink.store, signer, sink.label, witness_file))
        sink.store.close()

    print_figures(f"audit verification, {args.entries:,} entries", figures)
    for text_block in profiles:
        print("\n" + text_block)
    params = {
        "entries": args.entries,
        "checkpoint_every": args.checkpoint_every,
        "quick": args.quick,
        "backends": [s.label for s in sinks],
        "load_chunk": args.chunk,
    }
    print(f"\nresults written to {write_result(NAME, figures, params)}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    warn_if_busy()
    with tempfile.TemporaryDirectory(prefix="gh_bench_") as tmp:
        if args.postgres:
            with scratch_postgres(postgres_base_url()) as url:
                run(args, Path(tmp), url)
        else:
            run(args, Path(tmp), None)


if __name__ == "__main__":
    main()
