"""THE property: whatever a DataFrame holds, none of it reaches Gatehouse.

Hypothesis builds DataFrames of unique sentinel strings and numbers (string, integer, float,
categorical and object columns, named like real pii columns so the detectors fire), and tracks
them through every path — ``track_dataframe`` with and without a fingerprint, ``record_access``,
the REST ingest (HttpSink), the store, every query as JSON/CSV/table from the library, the REST
API and the CLI, a retention purge and the gate audit log's export — then searches for every
sentinel, as text and as packed binary, in: the SQLite database file and its WAL, a dump of every
PostgreSQL table, all log output at DEBUG (SQLAlchemy's statement log included), every query
output, and every surface of the legs registered in ``tests.lineage.contents.EXTRA_LEGS``.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lineage
from gate_core import Actor, AuthMethod, RunContext, SqlStore
from lineage import HttpSink, LineageStore
from lineage._format import render_graph, render_rows
from tests.lineage.contents import EXTRA_LEGS, Sentinels, leaks
from tests.service.conftest import Service

NAMES = ["email", "full_name", "amount", "notes", "ip_address", "score", "dob", "city", "flag", "card_number"]
KINDS = ["str", "int", "float", "category", "object"]
# Numbers whose 8 bytes are varied: 2**44 packs to mostly zeros, which any database file holds,
# and would be "found" without having leaked. These can only be found if they were stored.
DISTINCT_INTS = st.integers(10**12, 10**15).filter(lambda n: len(set(struct.pack(">q", n))) >= 6)


@st.composite
def frames(draw: st.DrawFn) -> tuple[pd.DataFrame, Sentinels]:
    rows = draw(st.integers(1, 12))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=5))
    sentinels = Sentinels()
    data: dict[str, object] = {}
    for index, kind in enumerate(kinds):
        name = f"{draw(st.sampled_from(NAMES))}_{index}" if index else draw(st.sampled_from(NAMES))
        uuids = draw(st.lists(st.uuids(), min_size=rows, max_size=rows, unique=True))
        ints = draw(st.lists(DISTINCT_INTS, min_size=rows, max_size=rows, unique=True))
        texts = [f"SENTINEL-{u.hex}" for u in uuids]
        if kind == "object":  # text and numbers mixed in one column
            mixed: list[object] = [texts[i] if i % 2 else ints[i] for i in range(rows)]
            sentinels.strings.update(texts[1::2])
            sentinels.ints.update(ints[::2])
            data[name] = pd.Series(mixed, dtype=object)
        elif kind in ("str", "category"):
            sentinels.strings.update(texts)
            data[name] = pd.Categorical(texts) if kind == "category" else texts
        elif kind == "int":
            data[name] = ints
            sentinels.ints.update(ints)
        else:
            floats = [n + 0.123456789 for n in ints]
            data[name] = floats
            sentinels.floats.update(floats)
    return pd.DataFrame(data), sentinels


def _dump_postgres(url: str) -> bytes:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        out = bytearray()
        with conn.cursor() as cursor:
            for table in tables:
                with cursor.copy(f'COPY (SELECT * FROM "{table}") TO STDOUT') as copy:
                    for chunk in copy:
                        out += chunk
    assert tables, "no tables dumped"
    return bytes(out)


def _database_bytes(url: str) -> list[tuple[str, bytes]]:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        files = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
        assert path in files
        return [(f"sqlite file {p.name}", p.read_bytes()) for p in files]
    return [("postgresql tables", _dump_postgres(url))]


def _queries(
    store: LineageStore, service: Service, datasets: set[str], runs: set[str]
) -> list[tuple[str, bytes]]:
    results: list[tuple[str, bytes]] = []
    with service.client("carol") as client:
        for dataset in sorted(datasets):
            for fmt in ("json", "csv", "table"):
                results.append(
                    (f"accessed {dataset} {fmt}", render_rows(store.accessed(dataset), fmt).encode())
                )  # type: ignore[arg-type]
                results.append(
                    (f"graph {dataset} {fmt}", render_graph(store.graph(dataset, depth=5), fmt).encode())
                )  # type: ignore[arg-type]
            results.append(
                (
                    f"REST accessed {dataset}",
                    client.get("/v1/lineage/accessed", params={"dataset": dataset}).content,
                )
            )
            results.append(
                (
                    f"REST graph {dataset}",
                    client.get("/v1/lineage/graph", params={"dataset": dataset}).content,
                )
            )
        for run_id in sorted(runs):
            results.append((f"run {run_id}", render_rows(store.run(run_id), "csv").encode()))
            results.append((f"REST run {run_id}", client.get(f"/v1/lineage/runs/{run_id}").content))
        for tag in ("pii", "email", "name"):
            results.append((f"exports {tag}", render_rows(store.exports(tag), "table").encode()))
            results.append(
                (f"REST exports {tag}", client.get("/v1/lineage/exports", params={"tag": tag}).content)
            )
    return results


@pytest.mark.slow
def test_no_cell_value_reaches_any_surface(
    service: Service, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # statements AND their parameters
    assert isinstance(service.gatekeeper.store, SqlStore)
    store = LineageStore.for_gate_store(service.gatekeeper.store)
    legs = [make(tmp_path / f"leg{i}") for i, make in enumerate(EXTRA_LEGS)]
    http = HttpSink(service.base_url, service.tokens["bot"])
    lineage.configure(store=store, sinks=[leg.sink for leg in legs], actor="alice")
    every = Sentinels()
    datasets: set[str] = set()
    runs: set[str] = set()
    counter = iter(range(10**6))

    @settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        frame=frames(),
        fingerprint=st.booleans(),
        operation=st.sampled_from(["read", "write", "export", "delete"]),
        table=st.integers(0, 4),
    )
    def track(frame: tuple[pd.DataFrame, Sentinels], fingerprint: bool, operation: str, table: int) -> None:
        df, sentinels = frame
        n = next(counter)
        run = RunContext(
            orchestrator="airflow", pipeline="never_contents", run_id=f"run-{n % 7}", task_id="t"
        )
        runs.add(run.run_id)
        source, target = f"warehouse/source_{table}", f"s3://exports/out_{n % 3}.csv"
        datasets.update((source, target))
        with lineage.context(run=run, gate_id=f"g{n:026d}"):
            lineage.track_dataframe(df, dataset=source, operation="read", fingerprint=fingerprint)
            event = lineage.track_dataframe(
                df, dataset=target, operation=operation, fingerprint=not fingerprint
            )
            lineage.record_access(
                target, "export", columns=event.columns, row_count=len(df), bytes=event.bytes
            )
            with lineage.context(store=http):  # the REST ingest path, as a pipeline with a token sends it
                lineage.track_dataframe(df, dataset=source, operation="read", fingerprint=True)
        every.strings |= sentinels.strings
        every.ints |= sentinels.ints
        every.floats |= sentinels.floats
        # the needle encoding finds real content (a positive control for the search itself)
        assert leaks(sentinels.needles(), [("control", df.to_csv().encode())])

    track()
    http.close()
    needles = every.needles()
    assert len(every.strings) > 20 and every.ints and every.floats

    # retention (audited) then the audit log export, and every query from the CLI too
    store.purge(
        before=pd.Timestamp("2000-01-01", tz="UTC").to_pydatetime(),
        gatekeeper=service.gatekeeper,
        actor=Actor(principal_id="carol", via=AuthMethod.LOCAL_OS_USER),
        retention="9999d",
    )
    env = {
        **os.environ,
        "GATEHOUSE_HOME": str(service.settings.home),
        "GATEHOUSE_DATABASE_URL": database_url,
        "USER": "carol",
    }
    cli = [sys.executable, "-m", "gate_core.cli"]
    commands = [
        ["audit", "export"],
        ["audit", "export", "--format", "csv"],
        *[["lineage", "accessed", d, "--format", "json"] for d in sorted(datasets)[:3]],
        ["lineage", "exports", "--tag", "pii", "--format", "csv"],
        ["lineage", "run", "run-0"],
        ["lineage", "graph", sorted(datasets)[0], "--format", "json"],
    ]
    outputs = []
    stdouts = []
    for command in commands:
        proc = subprocess.run([*cli, *command], capture_output=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outputs.append((" ".join(command), proc.stdout + proc.stderr))
        stdouts.append(proc.stdout)
    assert b"lineage.retention_purged" in outputs[0][1]

    surfaces = [
        *_database_bytes(database_url),
        *_queries(store, service, datasets, runs),
        *outputs,
        ("logs", "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records).encode()),
        *[surface for leg in legs for surface in leg.surfaces()],
    ]
    assert any("sqlalchemy.engine" in r.name for r in caplog.records), "statement logging was not captured"
    assert leaks(needles, surfaces) == []
    # and what is there is the metadata: names, types, counts, hashes
    stored = list(store.iter_events())
    assert stored and all(e.columns for e in stored)
    assert any(e.fingerprint for e in stored) and any("pii" in e.tags for e in stored)
    assert json.loads(stdouts[2])["rows"]  # stderr may carry the sandbox banner (issue 14)
