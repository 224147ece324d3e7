"""Lineage ingest and governance queries on PostgreSQL (targets: ≥ 20,000 access events/s recorded
in batches; "who accessed X in the last 30 days" p95 ≤ 50 ms over 10,000,000 events).

Everything runs against a synthetic but realistic estate: 300 datasets in six layers (source
tables → staging → core → marts → reports → S3 exports), schemas of 4-10 typed columns classified
by the lineage catalog's own detectors (so pii/email/phone… tags are what production would get),
and 40 pipelines on Airflow, Prefect, Dagster or a laptop, whose tasks read 1-4 datasets and
write (or export) one. Pipelines run at rates spread 1,000:1, so some datasets are hot and most
are cold; pii exports carry the id of a real approved gate.

  (a) ingest: events built as AccessEvent objects (construction timed apart), recorded through
      ``LineageStore.record_many`` in batches of 100, 1,000 and 5,000 into an empty scratch
      database; the dataset edges the store derives must equal the estate's;
  (b) queries: the lineage tables of a second scratch database are filled with PostgreSQL COPY
      (events, their tag rows, and the edges those events imply) in steps — 10k, 100k, 1M, 10M
      events spread over a year — each step followed by ANALYZE and by the store's real query
      methods: ``accessed(dataset, since=30 days ago)`` over random hot and cold datasets,
      ``graph(dataset, direction="upstream", depth=5)`` and ``exports("pii", since=…)``;
  (c) ingest again, into the tables holding the full event count (steady state).

    python -m bench.lineage_ingest_query                     # up to 10M events (see below)
    python -m bench.lineage_ingest_query --load-budget 900   # 10M on a machine busy with other work
    python -m bench.lineage_ingest_query --quick             # 10k and 100k events, small ingest runs

The bulk load generates rows in Python and streams them with COPY over two connections at once:
ids are a counter (so the primary key grows at its right edge, as it does live, where ids are
time-ordered), and each step's events are in time order (so recent events share heap pages, as
they do when recorded live). Secondary indexes are dropped for a step and rebuilt from their own
definitions (``pg_indexes``) afterwards, two at a time — the usual bulk-load practice; the load
rate reported includes the rebuild and ANALYZE. The load is bounded: a step that would overrun
``--load-budget`` seconds of loading in all (default 300), or the free disk, is scaled down, and
the result says so (``notes``); every figure names the event count it was measured at.
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import random
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

import lineage
from bench._common import (
    Figure,
    Stopwatch,
    at_least,
    at_most,
    cpu_seconds,
    info,
    libpq_url,
    lineage_source_digest,
    percentile,
    postgres_base_url,
    print_figures,
    scratch_postgres,
    warn_if_busy,
    write_result,
)
from gate_core import DatasetRef, Gatekeeper, GateRequest, GateStatus, RunContext, SqlStore
from gate_core.testing import actor, example_directory, example_policy
from lineage import AccessEvent, Catalog, ColumnInfo, LineageStore, Operation

NAME = "lineage_ingest_query"
TARGET_INGEST_PER_S = 20_000.0  # batched, PostgreSQL
TARGET_QUERY_P95_MS = 50.0  # "who accessed X in the last 30 days", 10M events
WINDOW = timedelta(days=365)  # the history the bulk-loaded events are spread over
SINCE = timedelta(days=30)  # the governance question's window
GRAPH_DEPTH = 5
SEED = 20261121

EVENTS_TABLE = "gh_lineage_events"
TAGS_TABLE = "gh_lineage_event_tags"
EDGES_TABLE = "gh_lineage_edges"
# COPY column order: what changes per event first, then what is fixed per (task, dataset) step.
VARYING_COLUMNS = (
    "id",
    "at",
    "row_count",
    "bytes",
    "fingerprint",
    "run_id",
    "try_number",
    "run_url",
    "gate_id",
)
FIXED_COLUMNS = (
    "dataset",
    "namespace",
    "name",
    "dataset_tags",
    "operation",
    "columns",
    "orchestrator",
    "pipeline",
    "task_id",
    "actor",
    "submitted_by",
)
TAG_COLUMNS = ("event_id", "at", "tag", "operation")
NULL = "\\N"  # COPY text format's NULL

# ------------------------------------------------------------------ the synthetic estate

PII_ENTITIES = ("customers", "employees", "leads", "patients", "tickets", "users")
PLAIN_ENTITIES = ("orders", "payments", "products", "shipments", "invoices", "campaigns", "sessions", "stock")
PII_COLUMNS = (
    ("email", "varchar(320)"),
    ("full_name", "text"),
    ("phone", "varchar(32)"),
    ("street_address", "text"),
    ("zip_code", "varchar(10)"),
    ("date_of_birth", "date"),
    ("ip_address", "inet"),
)
PLAIN_COLUMNS = (
    ("order_id", "bigint"),
    ("amount", "numeric(12,2)"),
    ("currency", "char(3)"),
    ("status", "varchar(16)"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("sku", "varchar(40)"),
    ("quantity", "integer"),
    ("score", "double precision"),
    ("segment", "text"),
    ("is_active", "boolean"),
    ("country", "char(2)"),
)
# namespace, name pattern, how many datasets: each layer is built from the one before it.
LAYERS = (
    ("postgres://crm-db.internal:5432", "public.{}", 60),
    ("warehouse", "staging.{}", 60),
    ("warehouse", "core.{}", 60),
    ("warehouse", "marts.{}", 50),
    ("warehouse", "reports.{}", 40),
    ("s3://exports", "{}.csv", 30),
)
PIPELINES = 40
ORCHESTRATORS = (
    ("airflow", "svc-airflow", "https://airflow.internal/dags/{pipeline}/grid?dag_run_id={run_id}"),
    ("prefect", "svc-prefect", "https://prefect.internal/runs/flow-run/{run_id}"),
    ("dagster", "svc-dagster", "https://dagster.internal/runs/{run_id}"),
)
LOCAL_ACTORS = ("alice", "carol", "dave")
TASK_SPACING_S = 300  # tasks of one run start five minutes apart
OUTPUT_OFFSET_S = 120  # a task writes two minutes after it starts reading


@dataclass(frozen=True, slots=True)
class Dataset:
    ref: DatasetRef  # classified: the dataset's tags include every column tag
    columns: tuple[ColumnInfo, ...]
    layer: int
    rows: int  # typical row count, for plausible row_count/bytes figures

    @property
    def qualified(self) -> str:
        return self.ref.qualified_name


@dataclass(frozen=True, slots=True)
class Task:
    task_id: str
    reads: tuple[Dataset, ...]
    output: Dataset
    operation: Operation  # WRITE, or EXPORT for the last layer


@dataclass(frozen=True, slots=True)
class Step:
    """One access event a run makes: which dataset, how, when after the run starts."""

    task: Task
    dataset: Dataset
    operation: Operation
    offset_s: float

    @property
    def gated(self) -> bool:
        """A pii export runs under an approval."""
        return self.operation is Operation.EXPORT and "pii" in self.dataset.ref.tags


@dataclass(frozen=True, slots=True)
class Pipeline:
    name: str
    orchestrator: str
    actor: str
    url_pattern: str | None
    tasks: tuple[Task, ...]
    weight: float  # share of all runs
    steps: tuple[Step, ...] = field(default=())

    def run_context(self, run_id: str, task_id: str, try_number: int = 1) -> RunContext:
        url = self.url_pattern.format(pipeline=self.name, run_id=run_id) if self.url_pattern else None
        return RunContext(
            orchestrator=self.orchestrator,
            pipeline=self.name,
            run_id=run_id,
            task_id=task_id,
            try_number=try_number,
            url=url,
        )


@dataclass(frozen=True, slots=True)
class Estate:
    datasets: tuple[Dataset, ...]
    pipelines: tuple[Pipeline, ...]
    hot: tuple[Dataset, ...]  # the 10% of datasets with the most events
    cold: tuple[Dataset, ...]  # the half with the fewest (but some)
    leaves: tuple[Dataset, ...]  # reports and exports: the roots of upstream graph queries

    def edges(self, pipelines: Sequence[Pipeline] | None = None) -> set[tuple[str, str]]:
        """The (upstream, downstream) pairs the store must derive once these pipelines have run."""
        return {
            (read.qualified, task.output.qualified)
            for pipeline in (self.pipelines if pipelines is None else pipelines)
            for task in pipeline.tasks
            for read in task.reads
        }


def _schema(rng: random.Random, pii: bool) -> list[tuple[str, str]]:
    columns = [("id", "bigint")]
    if pii:
        columns += rng.sample(PII_COLUMNS, rng.randint(2, 4))
    columns += rng.sample(PLAIN_COLUMNS, rng.randint(2, 5))
    return columns


def _dropped(column: ColumnInfo, rng: random.Random) -> bool:
    return "pii" in column.tags and rng.random() < 0.5


def _dataset(namespace: str, name: str, columns: Sequence[tuple[str, str]], layer: int, rows: int) -> Dataset:
    # The catalog's built-in name detectors tag the columns, exactly as record_access would.
    found = lineage.classify(
        DatasetRef(namespace=namespace, name=name),
        [ColumnInfo(name=n, type=t) for n, t in columns],
        catalog=Catalog(),
    )
    return Dataset(found.dataset, found.columns, layer, rows)


def build_estate(seed: int = SEED) -> Estate:
    rng = random.Random(seed)
    layers: list[list[Dataset]] = []
    tasks: list[Task] = []
    for layer, (namespace, pattern, count) in enumerate(LAYERS):
        built: list[Dataset] = []
        for index in range(count):
            rows = int(10 ** rng.uniform(2, 7))
            if layer == 0:
                pii = rng.random() < 0.3
                entity = rng.choice(PII_ENTITIES if pii else PLAIN_ENTITIES)
                name = pattern.format(f"{entity}_{index}")
                built.append(_dataset(namespace, name, _schema(rng, pii), layer, rows))
                continue
            reads = rng.sample(layers[layer - 1], rng.randint(1, 3))
            if layer >= 2 and rng.random() < 0.3:
                reads.append(rng.choice(layers[layer - 2]))
            # The output keeps a sample of what it read: pii flows downstream, though aggregation
            # and masking drop about half of the pii columns at each hop.
            pool = sorted(
                {
                    (c.name, c.type)
                    for d in reads
                    for c in d.columns
                    if c.name != "id" and not _dropped(c, rng)
                }
            )
            columns = [("id", "bigint"), *rng.sample(pool, min(len(pool), rng.randint(3, 9)))]
            entity = reads[0].ref.name.rsplit(".", 1)[-1].rsplit("_", 1)[0]
            output = _dataset(namespace, pattern.format(f"{entity}_{index}"), columns, layer, rows)
            built.append(output)
            operation = Operation.EXPORT if layer == len(LAYERS) - 1 else Operation.WRITE
            task_id = f"build_{output.ref.name.replace('.', '_').replace('/', '_')}"[:100]
            tasks.append(Task(task_id, tuple(reads), output, operation))
        layers.append(built)

    rng.shuffle(tasks)
    per = math.ceil(len(tasks) / PIPELINES)
    weights = [10 ** (-3 * i / (PIPELINES - 1)) for i in range(PIPELINES)]  # 1,000:1, log-uniform
    rng.shuffle(weights)
    total = sum(weights)
    pipelines = []
    for index in range(PIPELINES):
        own = sorted(tasks[index * per : (index + 1) * per], key=lambda t: (t.output.layer, t.task_id))
        if index % 10 == 9:  # a few are run by hand from a laptop
            orchestrator, who, url = "local", LOCAL_ACTORS[index % len(LOCAL_ACTORS)], None
        else:
            orchestrator, who, url = ORCHESTRATORS[index % len(ORCHESTRATORS)]
        steps = []
        for position, task in enumerate(own):
            start = position * TASK_SPACING_S
            steps += [Step(task, read, Operation.READ, start + i) for i, read in enumerate(task.reads)]
            steps.append(Step(task, task.output, task.operation, start + OUTPUT_OFFSET_S))
        pipelines.append(
            Pipeline(
                f"{orchestrator}_pipeline_{index:02d}",
                orchestrator,
                who,
                url,
                tuple(own),
                weights[index] / total,
                tuple(steps),
            )
        )

    datasets = tuple(d for layer_sets in layers for d in layer_sets)
    rate: dict[str, float] = {d.qualified: 0.0 for d in datasets}
    for pipeline in pipelines:
        for step in pipeline.steps:
            rate[step.dataset.qualified] += pipeline.weight
    ranked = sorted((d for d in datasets if rate[d.qualified] > 0), key=lambda d: -rate[d.qualified])
    hot = tuple(ranked[: len(ranked) // 10])
    cold = tuple(ranked[len(ranked) // 2 :])
    leaves = tuple(d for d in datasets if d.layer >= len(LAYERS) - 2)
    return Estate(datasets, tuple(pipelines), hot, cold, leaves)


def _run_id(pipeline: Pipeline, sequence: int, rng: random.Random) -> str:
    if pipeline.orchestrator == "airflow":
        return f"scheduled__{sequence:012d}"
    if pipeline.orchestrator == "local":
        return f"local-{rng.getrandbits(80):020x}"
    return f"{rng.getrandbits(128):032x}"


# ------------------------------------------------------------------ real gates


def approved_gates(url: str, count: int) -> list[str]:
    """Approved pii-export gates in the gate store that shares the database, as in production:
    the lineage queries join them to report the approval each export ran under."""
    gatekeeper = Gatekeeper(SqlStore.open(url), example_directory(), example_policy())
    request = GateRequest(
        action="export",
        target="s3://exports/",
        datasets=(DatasetRef.parse("warehouse/customers#pii"),),
        requester="alice",
        reason="scheduled export",
    )
    ids = []
    for _ in range(count):
        gate = gatekeeper.open(request, submitted_by=actor("alice"))
        if gatekeeper.approve(gate.id, actor=actor("bob")).status is not GateStatus.APPROVED:
            raise SystemExit("benchmark invalid: a setup gate was not approved")
        ids.append(gate.id)
    store = gatekeeper.store
    assert isinstance(store, SqlStore)
    store.engine.dispose()
    return ids


# ------------------------------------------------------------------ (a) ingest through the API


def live_events(
    estate: Estate, count: int, start: datetime, gate_ids: Sequence[str], rng: random.Random
) -> list[AccessEvent]:
    """Whole pipeline runs, one after the other from ``start``, until ``count`` events."""
    weights = [p.weight for p in estate.pipelines]
    found: list[AccessEvent] = []
    sequence = 0
    while len(found) < count:
        pipeline = rng.choices(estate.pipelines, weights)[0]
        run_id = _run_id(pipeline, sequence, rng)
        gate_id = rng.choice(gate_ids)
        runs = {t.task_id: pipeline.run_context(run_id, t.task_id) for t in pipeline.tasks}
        began = start + timedelta(seconds=sequence)
        for step in pipeline.steps:
            rows = int(step.dataset.rows * rng.uniform(0.8, 1.2))
            found.append(
                AccessEvent(
                    at=began + timedelta(seconds=step.offset_s),
                    dataset=step.dataset.ref,
                    operation=step.operation,
                    columns=step.dataset.columns,
                    row_count=rows,
                    bytes=rows * 8 * len(step.dataset.columns),
                    fingerprint=f"sha256:{rng.getrandbits(256):064x}" if rng.random() < 0.1 else None,
                    run=runs[step.task.task_id],
                    actor=pipeline.actor,
                    gate_id=gate_id if step.gated else None,
                )
            )
        sequence += 1
    return found[:count]


@dataclass(frozen=True, slots=True)
class IngestRun:
    batch: int
    events: int
    wall_s: float  # inside record_many only
    batch_s: list[float]
    client_cpu_s: float
    server_cpu_s: float | None


def backend_pids(store: LineageStore) -> list[int]:
    with store.engine.connect() as conn:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        return [int(pid) for pid in conn.exec_driver_sql(query).scalars()]


def ingest(store: LineageStore, events: Sequence[AccessEvent], batch: int) -> IngestRun:
    store.record_many(events[:batch])  # warm-up: pool connection, statement caches
    rest = events[batch:]
    pids = backend_pids(store)
    server_before = cpu_seconds(pids)
    samples = []
    with Stopwatch() as watch:
        for offset in range(0, len(rest), batch):
            chunk = rest[offset : offset + batch]
            begin = time.perf_counter()
            recorded = store.record_many(chunk)
            samples.append(time.perf_counter() - begin)
            if recorded != len(chunk):
                raise SystemExit(f"benchmark invalid: record_many recorded {recorded} of {len(chunk)}")
    server_after = cpu_seconds(pids)
    server = None if server_before is None or server_after is None else server_after - server_before
    return IngestRun(batch, len(rest), sum(samples), samples, watch.cpu_seconds, server)


def ingest_figures(label: str, run: IngestRun, target: float | None) -> list[Figure]:
    rate = run.events / run.wall_s
    name = f"{label}, batches of {run.batch:,}: events/s"
    figures = [at_least(name, rate, "events/s", target) if target else info(name, rate, "events/s")]
    figures += [
        info(
            f"{label}, batches of {run.batch:,}: batch latency p50", percentile(run.batch_s, 50) * 1000, "ms"
        ),
        info(
            f"{label}, batches of {run.batch:,}: batch latency p99", percentile(run.batch_s, 99) * 1000, "ms"
        ),
        info(
            f"{label}, batches of {run.batch:,}: client CPU per event",
            run.client_cpu_s / run.events * 1e6,
            "µs",
        ),
    ]
    if run.server_cpu_s is not None:
        cpu = run.client_cpu_s + run.server_cpu_s
        figures += [
            info(
                f"{label}, batches of {run.batch:,}: server CPU per event",
                run.server_cpu_s / run.events * 1e6,
                "µs",
            ),
            # What one client and one backend would sustain with a core each and nothing else running.
            info(f"{label}, batches of {run.batch:,}: events per CPU-second", run.events / cpu, "events/s"),
        ]
    return figures


def derived_edges(url: str) -> set[tuple[str, str]]:
    with psycopg.connect(libpq_url(url)) as conn:
        return {(u, d) for u, d in conn.execute(f"SELECT upstream, downstream FROM {EDGES_TABLE}")}


def run_ingest(args: argparse.Namespace, estate: Estate) -> tuple[list[Figure], dict[str, Any]]:
    figures: list[Figure] = []
    runs: list[IngestRun] = []
    rng = random.Random(SEED + 1)
    with scratch_postgres(postgres_base_url()) as url:
        gate_ids = approved_gates(url, 20)
        store = LineageStore.open(url)
        try:
            total = sum(n + b for b, n in zip(args.batches, args.ingest_events, strict=True))
            start = datetime.now(UTC) - timedelta(days=1)
            with Stopwatch() as building:
                events = live_events(estate, total, start, gate_ids, rng)
            figures.append(
                info("AccessEvent construction (validated, per event)", building.seconds / total * 1e6, "µs")
            )
            offset = 0
            for batch, count in zip(args.batches, args.ingest_events, strict=True):
                print(f"ingest: {count:,} events through record_many in batches of {batch:,} …")
                run = ingest(store, events[offset : offset + batch + count], batch)
                runs.append(run)
                offset += batch + count
                target = TARGET_INGEST_PER_S if batch == args.target_batch else None
                figures += ingest_figures("ingest, empty tables", run, target)
            if store.count() != total:
                raise SystemExit(f"benchmark invalid: {store.count()} events stored, {total} recorded")
            ran = {e.run.pipeline for e in events}
            expected = estate.edges([p for p in estate.pipelines if p.name in ran])
            found = derived_edges(url)
            if found != expected:
                raise SystemExit(
                    f"benchmark invalid: the store derived {len(found)} edges, the estate implies "
                    f"{len(expected)} ({len(found ^ expected)} differ)"
                )
            figures.append(info("dataset edges derived by record_many (= the estate's)", len(found), "edges"))
        finally:
            store.close()
    return figures, {"ingest_batch_latency_s": {str(r.batch): r.batch_s for r in runs}}


# ------------------------------------------------------------------ (b) bulk load with COPY


@dataclass(frozen=True, slots=True)
class StepText:
    """A step's fixed COPY text, built once: ``fixed`` for its event rows, ``tags`` for its tag rows."""

    fixed: str
    tags: tuple[str, ...]
    gated: bool
    rows: int
    row_bytes: int


def _copy_text(value: str) -> str:
    # The estate's names and JSON never hold COPY's special characters; keep it that way.
    if value != NULL and any(ch in value for ch in "\\\t\n\r"):
        raise ValueError(f"value needs COPY escaping: {value!r}")
    return value


def step_text(pipeline: Pipeline, step: Step) -> StepText:
    ds = step.dataset
    # The same JSON the store writes (lineage._store._event_values): sorted tags, default separators.
    columns = json.dumps([{"name": c.name, "type": c.type, "tags": sorted(c.tags)} for c in ds.columns])
    fixed = (
        ds.qualified,
        ds.ref.namespace,
        ds.ref.name,
        json.dumps(sorted(ds.ref.tags)),
        step.operation.value,
        columns,
        pipeline.orchestrator,
        pipeline.name,
        step.task.task_id,
        pipeline.actor,
        NULL,
    )
    # One tag row per tag of the event (AccessEvent.tags: the dataset's and every column's).
    every = ds.ref.tags.union(*(c.tags for c in ds.columns))
    tags = tuple(f"\t{tag}\t{step.operation.value}\n" for tag in sorted(every))
    return StepText("\t".join(_copy_text(v) for v in fixed), tags, step.gated, ds.rows, 8 * len(ds.columns))


Chunk = tuple[bytes, bytes, int, int]  # COPY text of events, of their tag rows; how many of each
COPY_WRITERS = 2  # one backend per core: COPY parses and inserts on one core per connection


def copy_in_parallel(url: str, chunks: Iterator[Chunk], writers: int = COPY_WRITERS) -> tuple[int, int]:
    """COPY the chunks over ``writers`` connections at once, each chunk its own transaction, while
    this thread generates the next ones: one connection would leave a core idle, and the client
    and the server would take turns. Returns (events, tag rows) written."""
    work: queue.Queue[Chunk | None] = queue.Queue(maxsize=writers)
    failed: list[BaseException] = []
    stop = threading.Event()
    written = [0, 0]
    lock = threading.Lock()
    event_sql = f"COPY {EVENTS_TABLE} ({', '.join(VARYING_COLUMNS + FIXED_COLUMNS)}) FROM STDIN"
    tag_sql = f"COPY {TAGS_TABLE} ({', '.join(TAG_COLUMNS)}) FROM STDIN"

    def write() -> None:
        try:
            with psycopg.connect(libpq_url(url)) as conn:
                while not stop.is_set():
                    try:
                        chunk = work.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    if chunk is None:
                        return
                    event_text, tag_text, events, tags = chunk
                    with conn.cursor() as cursor:
                        with cursor.copy(event_sql) as copy:
                            copy.write(event_text)
                        with cursor.copy(tag_sql) as copy:
                            copy.write(tag_text)
                    conn.commit()
                    with lock:
                        written[0] += events
                        written[1] += tags
        except BaseException as exc:  # handed to the generating thread, which raises it
            failed.append(exc)
            stop.set()

    def hand_over(item: Chunk | None) -> None:
        while True:
            if stop.is_set():
                raise RuntimeError("a COPY writer failed") from failed[0]
            try:
                work.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    threads = [threading.Thread(target=write, name=f"copy-{n}", daemon=True) for n in range(writers)]
    for thread in threads:
        thread.start()
    try:
        for chunk in chunks:
            hand_over(chunk)
        for _ in threads:
            hand_over(None)
    except BaseException:
        stop.set()  # the writers end after their current chunk
        raise
    finally:
        for thread in threads:
            thread.join()
    if failed:
        raise RuntimeError("a COPY writer failed") from failed[0]
    return written[0], written[1]


def rebuild_indexes(url: str, definitions: Sequence[str], parallel: int = COPY_WRITERS) -> None:
    """Run the CREATE INDEX statements ``parallel`` at a time, each on its own connection."""

    def build(definition: str) -> None:
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            # Session-only: the sort stays in memory instead of spilling to disk.
            conn.execute("SET maintenance_work_mem = '512MB'")
            conn.execute(definition)

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="index") as pool:
        for done in [pool.submit(build, d) for d in definitions]:
            done.result()  # raises the first failure


@dataclass(frozen=True, slots=True)
class LoadStep:
    added: int
    tag_rows: int
    total: int
    copy_s: float
    index_s: float  # dropping and rebuilding the secondary indexes
    analyze_s: float
    table_bytes: int  # events, tags and edges with their indexes, after the step

    @property
    def seconds(self) -> float:
        return self.copy_s + self.index_s + self.analyze_s


@dataclass
class EdgeSpan:
    first: float
    last: float


class BulkLoader:
    """Streams generated events into the lineage tables with COPY, step by step."""

    def __init__(self, url: str, estate: Estate, now: datetime, gate_ids: Sequence[str]) -> None:
        self.url = url
        self.conn = psycopg.connect(libpq_url(url))
        self.estate = estate
        self.now = now.timestamp()
        self.gate_ids = list(gate_ids)
        self.loaded = 0
        self.next_id = 0
        self.runs = 0
        self.rng = np.random.default_rng(SEED + 2)
        self.pyrng = random.Random(SEED + 3)
        self.texts = [[step_text(p, s) for s in p.steps] for p in estate.pipelines]
        # Global step numbering: one flat list, so a chunk can index its steps with numpy.
        self.flat = [t for texts in self.texts for t in texts]
        firsts = np.cumsum([0] + [len(t) for t in self.texts])
        self.step_ids = [np.arange(firsts[i], firsts[i + 1]) for i in range(len(self.texts))]
        self.offsets = [np.array([s.offset_s for s in p.steps]) for p in estate.pipelines]
        self.sizes = np.array([len(p.steps) for p in estate.pipelines])
        self.weights = np.array([p.weight for p in estate.pipelines])
        self.spans: dict[tuple[str, str], EdgeSpan] = {}
        self._check_columns()

    def close(self) -> None:
        self.conn.close()

    def _check_columns(self) -> None:
        """The lineage schema is still being written: fail clearly if it no longer matches."""
        query = "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
        for table, mine in ((EVENTS_TABLE, VARYING_COLUMNS + FIXED_COLUMNS), (TAGS_TABLE, TAG_COLUMNS)):
            theirs = {r[0] for r in self.conn.execute(query, (table,))}
            if theirs != set(mine):
                raise SystemExit(f"benchmark out of date: {table} has columns {sorted(theirs)}")
        self.conn.rollback()

    # ------------------------------------------------------------ indexes

    def secondary_indexes(self) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = ANY(%s) "
            "AND i.indexname NOT IN (SELECT conname FROM pg_constraint WHERE contype = 'p') "
            "ORDER BY i.indexname",
            ([EVENTS_TABLE, TAGS_TABLE],),
        ).fetchall()
        return [(str(n), str(d)) for n, d in rows]

    # ------------------------------------------------------------ one step

    def load(self, events: int) -> LoadStep:
        """Add about ``events`` events (whole runs) spread over the last year, then rebuild the
        indexes and ANALYZE. Returns the step's timings."""
        indexes = self.secondary_indexes()
        with Stopwatch() as dropping:
            for index_name, _ in indexes:
                self.conn.execute(f'DROP INDEX "{index_name}"')
            self.conn.commit()
        with Stopwatch() as copying:
            added, tags = copy_in_parallel(self.url, self._chunks(events))
            self._write_edges()
        with Stopwatch() as indexing:
            rebuild_indexes(self.url, [definition for _, definition in indexes])
        with Stopwatch() as analyzing:
            self.conn.execute(f"ANALYZE {EVENTS_TABLE}, {TAGS_TABLE}, {EDGES_TABLE}")
            self.conn.commit()
        self.loaded += added
        return LoadStep(
            added,
            tags,
            self.loaded,
            copying.seconds,
            dropping.seconds + indexing.seconds,
            analyzing.seconds,
            self.table_bytes(),
        )

    def table_bytes(self) -> int:
        row = self.conn.execute(
            "SELECT sum(pg_total_relation_size(c)) FROM unnest(%s::regclass[]) AS c",
            ([EVENTS_TABLE, TAGS_TABLE, EDGES_TABLE],),
        ).fetchone()
        self.conn.rollback()
        return int(row[0]) if row else 0

    def _chunks(self, events: int, chunk_events: int = 100_000) -> Iterator[Chunk]:
        """COPY text for whole runs, ``chunk_events`` events at a time, in time order."""
        mean = float(np.dot(self.weights, self.sizes))
        planned = int(events / mean * 1.1) + 10
        pipes = self.rng.choice(len(self.weights), size=planned, p=self.weights)
        counts = self.sizes[pipes]
        keep = int(np.searchsorted(np.cumsum(counts), events)) + 1  # whole runs, ≥ ``events``
        pipes, counts = pipes[:keep], counts[:keep]
        longest = float(max(o.max() for o in self.offsets))
        starts = np.sort(self.rng.uniform(self.now - WINDOW.total_seconds(), self.now - longest, keep))
        self._remember_spans(pipes, starts)
        run_chunk = max(1, int(chunk_events / mean))
        for first in range(0, keep, run_chunk):
            yield self._chunk(pipes[first : first + run_chunk], starts[first : first + run_chunk])

    def _chunk(self, pipes: np.ndarray, starts: np.ndarray) -> Chunk:
        counts = self.sizes[pipes]
        n = int(counts.sum())
        steps = np.concatenate([self.step_ids[p] for p in pipes])
        seconds = np.repeat(starts, counts) + np.concatenate([self.offsets[p] for p in pipes])
        stamps = np.datetime_as_string((seconds * 1e6).astype("int64").astype("datetime64[us]"), unit="us")
        base_rows = np.array([self.flat[s].rows for s in steps.tolist()], dtype=np.float64)
        rows = (base_rows * self.rng.uniform(0.8, 1.2, n)).astype(np.int64)
        widths = np.array([self.flat[s].row_bytes for s in steps.tolist()], dtype=np.int64)
        sizes = rows * widths
        fingerprinted = self.rng.random(n) < 0.1
        run_of = np.repeat(np.arange(len(pipes)), counts)
        pyrng = self.pyrng
        run_text = []
        gate_of = []
        for p in pipes.tolist():
            pipeline = self.estate.pipelines[p]
            run_id = _run_id(pipeline, self.runs, pyrng)
            self.runs += 1
            url = (
                pipeline.url_pattern.format(pipeline=pipeline.name, run_id=run_id)
                if pipeline.url_pattern
                else NULL
            )
            retried = pyrng.random() < 0.03
            run_text.append(f"{run_id}\t{2 if retried else 1}\t{url}")
            gate_of.append(pyrng.choice(self.gate_ids))
        event_lines: list[str] = []
        tag_lines: list[str] = []
        first_id = self.next_id
        flat = self.flat
        for i, (s, stamp, r, b, fp, run) in enumerate(
            zip(
                steps.tolist(),
                stamps.tolist(),
                rows.tolist(),
                sizes.tolist(),
                fingerprinted.tolist(),
                run_of.tolist(),
                strict=True,
            )
        ):
            text = flat[s]
            event_id = f"e{first_id + i:026d}"
            at = f"{stamp}+00"
            digest = f"sha256:{pyrng.getrandbits(256):064x}" if fp else NULL
            gate = gate_of[run] if text.gated else NULL
            event_lines.append(
                f"{event_id}\t{at}\t{r}\t{b}\t{digest}\t{run_text[run]}\t{gate}\t{text.fixed}\n"
            )
            for suffix in text.tags:
                tag_lines.append(f"{event_id}\t{at}{suffix}")
        self.next_id += n
        return "".join(event_lines).encode(), "".join(tag_lines).encode(), n, len(tag_lines)

    def _remember_spans(self, pipes: np.ndarray, starts: np.ndarray) -> None:
        """First and last time each edge is seen: a task's output time, at its runs' extremes —
        what link_runs computes (max of the task's read and write times per run)."""
        for index, pipeline in enumerate(self.estate.pipelines):
            mine = starts[pipes == index]
            if not len(mine):
                continue
            lo, hi = float(mine.min()), float(mine.max())
            for position, task in enumerate(pipeline.tasks):
                at = position * TASK_SPACING_S + OUTPUT_OFFSET_S
                for read in task.reads:
                    span = self.spans.get((read.qualified, task.output.qualified))
                    if span is None:
                        self.spans[(read.qualified, task.output.qualified)] = EdgeSpan(lo + at, hi + at)
                    else:
                        span.first, span.last = min(span.first, lo + at), max(span.last, hi + at)

    def _write_edges(self) -> None:
        rows = [
            (up, down, datetime.fromtimestamp(s.first, UTC), datetime.fromtimestamp(s.last, UTC))
            for (up, down), s in sorted(self.spans.items())
        ]
        with self.conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {EDGES_TABLE} (upstream, downstream, first_seen_at, last_seen_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (upstream, downstream) DO UPDATE SET "
                f"first_seen_at = LEAST({EDGES_TABLE}.first_seen_at, EXCLUDED.first_seen_at), "
                f"last_seen_at = GREATEST({EDGES_TABLE}.last_seen_at, EXCLUDED.last_seen_at)",
                rows,
            )
        self.conn.commit()


# ------------------------------------------------------------------ queries


@dataclass
class Samples:
    seconds: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    found: list[int] = field(default_factory=list)  # rows returned, or graph nodes

    def p(self, pct: float) -> float:
        return percentile(self.seconds, pct) * 1000


QueryPlan = list[tuple[str, Dataset | None]]


def query_plan(estate: Estate, args: argparse.Namespace, rng: random.Random) -> QueryPlan:
    half = args.accessed // 2
    plan: QueryPlan = [("hot", d) for d in rng.choices(estate.hot, k=half)]
    plan += [("cold", d) for d in rng.choices(estate.cold, k=args.accessed - half)]
    plan += [("hot100", d) for d in rng.choices(estate.hot, k=args.limited)]
    plan += [("graph", d) for d in rng.choices(estate.leaves, k=args.graphs)]
    plan += [("exports", None)] * args.exports
    rng.shuffle(plan)  # interleaved, so no kind of query gets a cache warmed by its own kind only
    return plan


def ask(store: LineageStore, kind: str, dataset: Dataset | None, since: datetime) -> tuple[int, int]:
    """One governance question through the store's own method: (rows or nodes, deepest hop)."""
    if kind == "graph":
        assert dataset is not None
        found = store.graph(dataset.qualified, direction="upstream", depth=GRAPH_DEPTH)
        return len(found.nodes), max(n.depth for n in found.nodes)
    if kind == "exports":
        return len(store.exports("pii", since=since).rows), 0
    assert dataset is not None
    if kind == "hot100":  # the same question with a page of 100 rows instead of the default 1,000
        return len(store.accessed(dataset.qualified, since=since, limit=100).rows), 0
    return len(store.accessed(dataset.qualified, since=since).rows), 0


def measure_queries(
    store: LineageStore, plan: QueryPlan, since: datetime, warmup: int
) -> tuple[dict[str, Samples], int]:
    for kind, dataset in plan[:warmup]:
        ask(store, kind, dataset, since)
    samples: dict[str, Samples] = {}
    deepest = 0
    for kind, dataset in plan:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        found, depth = ask(store, kind, dataset, since)
        wall1, cpu1 = time.perf_counter(), time.process_time()
        entry = samples.setdefault(kind, Samples())
        entry.seconds.append(wall1 - wall0)
        entry.cpu_s.append(cpu1 - cpu0)
        entry.found.append(found)
        deepest = max(deepest, depth)
    accessed = samples.setdefault("accessed", Samples())
    for kind in ("hot", "cold"):
        accessed.seconds += samples[kind].seconds
        accessed.cpu_s += samples[kind].cpu_s
        accessed.found += samples[kind].found
    return samples, deepest


def check_run_query(loader: BulkLoader, store: LineageStore) -> None:
    """The bulk-loaded rows read back through the store like recorded ones: one run, whole."""
    row = loader.conn.execute(
        f"SELECT run_id, orchestrator FROM {EVENTS_TABLE} WHERE id = %s", (f"e{loader.next_id // 2:026d}",)
    ).fetchone()
    assert row is not None
    count = loader.conn.execute(
        f"SELECT count(*) FROM {EVENTS_TABLE} WHERE run_id = %s AND orchestrator = %s", row
    ).fetchone()
    loader.conn.rollback()
    rows = store.run(row[0], orchestrator=row[1]).rows
    if not count or len(rows) != count[0] or not rows:
        raise SystemExit(f"benchmark invalid: run {row[0]} has {count} events, store.run() gave {len(rows)}")


# ------------------------------------------------------------------ sizes, disk and time


def free_disk_bytes(conn: psycopg.Connection[Any]) -> int:
    """Free space where PostgreSQL keeps its data (the root filesystem when that is unreadable)."""
    row = conn.execute("SHOW data_directory").fetchone()
    conn.rollback()
    for path in ([str(row[0])] if row else []) + ["/"]:
        try:
            return shutil.disk_usage(path).free
        except OSError:
            continue
    return 0


def fitted(
    want: int, seconds_per_event: float | None, left_s: float, bytes_per_event: float | None, free: int
) -> int:
    """How many events the next step may add: ``want``, or fewer when the time budget or the
    disk (tables + index rebuild + WAL: about twice the tables' size, with 5 GB kept free)
    would not hold them. Rounded down to two significant digits."""
    allowed = float(want)
    if seconds_per_event:
        allowed = min(allowed, left_s / (seconds_per_event * 1.2))  # rebuilds grow a little faster than n
    if bytes_per_event:
        allowed = min(allowed, (free - 5e9) / (bytes_per_event * 2))
    if allowed >= want:
        return want
    if allowed <= 0:
        return 0
    scale = 10 ** max(0, int(math.log10(allowed)) - 1)
    return int(allowed // scale * scale)


def run_queries(args: argparse.Namespace, estate: Estate) -> tuple[list[Figure], dict[str, Any]]:
    figures: list[Figure] = []
    series: dict[str, list[float]] = {
        k: [] for k in ("events", "p50_ms", "p95_ms", "p99_ms", "hot_p95_ms", "cold_p95_ms")
    }
    steps: list[dict[str, Any]] = []
    notes: list[str] = []
    rng = random.Random(SEED + 4)
    with scratch_postgres(postgres_base_url()) as url:
        gate_ids = approved_gates(url, 20)
        store = LineageStore.open(url)
        now = datetime.now(UTC)
        since = now - SINCE
        loader: BulkLoader | None = None
        try:
            loader = BulkLoader(url, estate, now, gate_ids)
            free = free_disk_bytes(loader.conn)
            print(f"queries: {free / 1e9:.0f} GB free for PostgreSQL's data")
            spent = 0.0  # seconds loading so far; query time between steps does not count
            last: LoadStep | None = None
            samples: dict[str, Samples] = {}
            deepest = 0
            for target in args.sizes:
                want = target - loader.loaded
                per_event = last.seconds / last.added if last else None
                per_byte = last.table_bytes / last.total if last else None
                add = fitted(
                    want,
                    per_event,
                    args.load_budget - spent,
                    per_byte,
                    free - (last.table_bytes if last else 0),
                )
                if add < want:
                    notes.append(
                        f"scaled down: the step to {target:,} events added {add:,} instead of {want:,} "
                        f"(load budget {args.load_budget:g} s, {free / 1e9:.0f} GB free)"
                    )
                    print(f"  {notes[-1]}")
                if add <= 0:
                    break
                print(f"queries: loading {add:,} events with COPY (to {loader.loaded + add:,}) …")
                last = loader.load(add)
                spent += last.seconds
                print(
                    f"  +{last.added:,} events, +{last.tag_rows:,} tag rows: COPY {last.copy_s:.1f} s, "
                    f"indexes {last.index_s:.1f} s, ANALYZE {last.analyze_s:.1f} s "
                    f"({last.added / last.seconds:,.0f} events/s); tables {last.table_bytes / 1e9:.2f} GB"
                )
                steps.append(
                    {
                        "events_added": last.added,
                        "tag_rows_added": last.tag_rows,
                        "events_total": last.total,
                        "copy_s": round(last.copy_s, 3),
                        "index_rebuild_s": round(last.index_s, 3),
                        "analyze_s": round(last.analyze_s, 3),
                        "table_bytes": last.table_bytes,
                    }
                )
                samples, deepest = measure_queries(store, query_plan(estate, args, rng), since, args.warmup)
                acc = samples["accessed"]
                print(
                    f"  who accessed X (30 days) at {loader.loaded:,} events: p50 {acc.p(50):.1f} ms, "
                    f"p95 {acc.p(95):.1f} ms, p99 {acc.p(99):.1f} ms"
                )
                series["events"].append(loader.loaded)
                for key, value in (
                    ("p50_ms", acc.p(50)),
                    ("p95_ms", acc.p(95)),
                    ("p99_ms", acc.p(99)),
                    ("hot_p95_ms", samples["hot"].p(95)),
                    ("cold_p95_ms", samples["cold"].p(95)),
                ):
                    series[key].append(round(value, 3))
            if last is None:
                raise SystemExit("benchmark invalid: no events could be loaded")
            check_run_query(loader, store)
            if store.count() != loader.loaded:
                raise SystemExit(
                    f"benchmark invalid: store.count() {store.count()} != {loader.loaded} loaded"
                )
            figures += query_figures(loader, steps, samples, deepest)

            if args.ingest:
                count = args.steady_events
                print(f"ingest: {count:,} events through record_many into {loader.loaded:,} stored …")
                events = live_events(
                    estate, count + args.target_batch, now, gate_ids, random.Random(SEED + 5)
                )
                steady = ingest(store, events, args.target_batch)
                figures += ingest_figures(f"ingest, {loader.loaded:,} events stored", steady, None)
        finally:
            if loader is not None:
                loader.close()
            store.close()
    labels = {
        "hot": "who accessed X, 30 days (hot X)",
        "hot100": "who accessed X, 30 days (hot X, limit=100)",
        "cold": "who accessed X, 30 days (cold X)",
        "graph": f"upstream graph, depth {GRAPH_DEPTH}",
        "exports": "exports of pii, 30 days",
    }
    extra = {
        "query_vs_events": series,
        "load_steps": steps,
        "notes": notes,
        "samples_s": {f"{labels[k]}, {loader.loaded:,} events": samples[k].seconds for k in labels},
    }
    return figures, extra


def query_figures(
    loader: BulkLoader, steps: list[dict[str, Any]], samples: dict[str, Samples], deepest: int
) -> list[Figure]:
    n = f"{round(loader.loaded / 1e6, 1):g}M" if loader.loaded >= 1_000_000 else f"{loader.loaded:,}"
    load_s = sum(s["copy_s"] + s["index_rebuild_s"] + s["analyze_s"] for s in steps)
    copy_s = sum(s["copy_s"] for s in steps)
    figures = [
        info("bulk load: events stored", loader.loaded, "events"),
        info("bulk load: events/s (COPY + index rebuild + ANALYZE)", loader.loaded / load_s, "events/s"),
        info("bulk load: events/s (COPY of events and tag rows alone)", loader.loaded / copy_s, "events/s"),
        info("bulk load: lineage tables and indexes on disk", steps[-1]["table_bytes"] / 1e9, "GB"),
        info("bulk load: bytes on disk per event", steps[-1]["table_bytes"] / loader.loaded, "bytes"),
    ]
    who = f"who accessed X, 30 days, {n} events"
    kinds = (
        ("accessed", f"{who}, hot and cold X", True),
        ("hot", f"{who}, hot X", True),
        ("cold", f"{who}, cold X", False),
        ("hot100", f"{who}, hot X, limit=100", False),
        ("graph", f"upstream graph, depth {GRAPH_DEPTH}, {n} events", True),
        ("exports", f"exports of pii, 30 days, {n} events", False),
    )
    for kind, label, targeted in kinds:
        got = samples[kind]
        p95 = f"{label}: p95"
        figures += [
            at_most(p95, got.p(95), "ms", TARGET_QUERY_P95_MS) if targeted else info(p95, got.p(95), "ms"),
            info(f"{label}: p50", got.p(50), "ms"),
            info(f"{label}: p99", got.p(99), "ms"),
            info(f"{label}: client CPU per query (mean)", float(np.mean(got.cpu_s)) * 1000, "ms"),
            info(
                f"{label}: {'datasets' if kind == 'graph' else 'rows'} returned (mean)",
                float(np.mean(got.found)),
                "nodes" if kind == "graph" else "rows",
            ),
        ]
    figures.append(info(f"upstream graph, depth {GRAPH_DEPTH}: deepest hop reached", deepest, "hops"))
    return figures


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lineage_ingest_query", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="short CI run: 10k and 100k events")
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], help="event counts to query at"
    )
    parser.add_argument(
        "--load-budget", type=float, help="seconds the bulk load may take in all (default 300; quick 60)"
    )
    parser.add_argument("--no-ingest", dest="ingest", action="store_false", help="skip the API ingest runs")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000, 10_000_000]
    if args.load_budget is None:
        args.load_budget = 60.0 if args.quick else 300.0
    args.batches = (100, 1_000, 5_000)
    args.target_batch = 1_000
    args.ingest_events = (2_000, 10_000, 10_000) if args.quick else (20_000, 100_000, 100_000)
    args.steady_events = 10_000 if args.quick else 50_000
    args.accessed = 200
    args.limited = 20 if args.quick else 50
    args.graphs = 20 if args.quick else 50
    args.exports = 10 if args.quick else 20
    args.warmup = 20
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    warn_if_busy()
    started = time.monotonic()
    estate = build_estate()
    figures: list[Figure] = []
    extra: dict[str, Any] = {}
    if args.ingest:
        found, ingest_extra = run_ingest(args, estate)
        figures += found
        extra["samples_s"] = {}
        batch_samples = ingest_extra["ingest_batch_latency_s"]
    found, query_extra = run_queries(args, estate)
    figures += found
    extra |= query_extra
    if args.ingest:
        extra["samples_s"][f"record_many, batch of {args.target_batch:,}"] = batch_samples[
            str(args.target_batch)
        ]
    print_figures("lineage ingest and governance queries (PostgreSQL)", figures)
    for note in extra["notes"]:
        print(f"note: {note}")
    params = {
        "quick": args.quick,
        "sizes": args.sizes,
        "load_budget_s": args.load_budget,
        "ingest_batches": list(args.batches),
        "ingest_events": list(args.ingest_events),
        "steady_ingest_events": args.steady_events,
        "accessed_queries_per_size": args.accessed,
        "accessed_limit_100_queries_per_size": args.limited,
        "graph_queries_per_size": args.graphs,
        "export_queries_per_size": args.exports,
        "warmup_queries": args.warmup,
        "window_days": WINDOW.days,
        "since_days": SINCE.days,
        "estate": {
            "datasets": len(estate.datasets),
            "pipelines": len(estate.pipelines),
            "hot_datasets": len(estate.hot),
            "cold_datasets": len(estate.cold),
            "pii_datasets": sum("pii" in d.ref.tags for d in estate.datasets),
        },
        "lineage_source_sha256": lineage_source_digest(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(f"\nresults written to {write_result(NAME, figures, params, extra)}")


if __name__ == "__main__":
    main()
