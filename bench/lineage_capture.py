"""Lineage DataFrame capture (target: schema, rows and bytes of a 10,000,000-row frame in ≤ 1 ms),
and the cost of the opt-in content fingerprint as a share of writing the same frame to Parquet.

The frame mixes what pipelines carry: int64 and int32, float64 and float32, text as Python
objects (``object`` dtype) and as pandas' string dtype, and timezone-aware and naive datetimes;
its column names are ones the catalog's detectors tag (``email``, ``full_name``).

  (a) capture: ``lineage.track_dataframe(df, dataset=…, operation="read")`` — describe the frame,
      classify its columns, build and validate the event — delivered to a sink that does nothing,
      so the figure is the capture alone (recording is bench/lineage_ingest_query.py's subject);
      also on 1,000- and 1,000,000-row frames, to show the cost does not grow with rows;
  (b) fingerprint: ``track_dataframe(…, fingerprint=True)`` against ``df.to_parquet(path)``
      (pyarrow, snappy, to a temporary file), whole frame and column by column.

    python -m bench.lineage_capture            # 10,000,000 rows
    python -m bench.lineage_capture --quick    # 1,000,000 rows
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import lineage
from bench._common import (
    Figure,
    at_most,
    info,
    lineage_source_digest,
    percentile,
    print_figures,
    warn_if_busy,
    write_result,
)
from gate_core import RunContext
from lineage import AccessEvent, Catalog

NAME = "lineage_capture"
TARGET_CAPTURE_MS = 1.0
DATASET = "warehouse/core.orders"
SEED = 20261121


class NullSink:
    """A LineageSink that keeps nothing: what remains of track_dataframe is the capture itself."""

    def __init__(self) -> None:
        self.received = 0

    def record_many(self, events: Sequence[AccessEvent], /) -> int:
        self.received += len(events)
        return len(events)


def build_frame(rows: int) -> pd.DataFrame:
    """``rows`` rows of a plausible orders table; text from 100,000 distinct values, as real
    columns repeat, so the frame fits in memory at 10M rows."""
    rng = np.random.default_rng(SEED)
    emails = np.array([f"customer{i}@example.com" for i in range(100_000)], dtype=object)
    names = np.array([f"Customer Number {i}" for i in range(100_000)], dtype=object)
    start = np.datetime64("2026-01-01T00:00:00", "ns").astype(np.int64)
    created = start + rng.integers(0, 300 * 86_400, rows, dtype=np.int64) * 1_000_000_000
    return pd.DataFrame(
        {
            "order_id": np.arange(rows, dtype=np.int64),
            "quantity": rng.integers(1, 50, rows, dtype=np.int32),
            "amount": rng.gamma(2.0, 40.0, rows),
            "discount": rng.random(rows, dtype=np.float32),
            # pandas 3 would infer its string dtype from an object array: ask for object explicitly.
            "email": pd.Series(emails[rng.integers(0, len(emails), rows)], dtype=object),
            "full_name": pd.array(names[rng.integers(0, len(names), rows)], dtype="str"),
            "created_at": pd.to_datetime(created, utc=True),
            "shipped_at": pd.to_datetime(created + 86_400_000_000_000).as_unit("us"),
        }
    )


# ------------------------------------------------------------------ timing


@dataclass(frozen=True, slots=True)
class Timed:
    wall_s: list[float]
    cpu_s: list[float]

    def median_wall(self) -> float:
        return statistics.median(self.wall_s)

    def median_cpu(self) -> float:
        return statistics.median(self.cpu_s)


def timed(work: Callable[[], object], repeats: int, warmup: int = 0) -> Timed:
    for _ in range(warmup):
        work()
    walls, cpus = [], []
    for _ in range(repeats):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        work()
        wall1, cpu1 = time.perf_counter(), time.process_time()
        walls.append(wall1 - wall0)
        cpus.append(cpu1 - cpu0)
    return Timed(walls, cpus)


def capture(df: pd.DataFrame, *, fingerprint: bool = False) -> AccessEvent:
    return lineage.track_dataframe(df, dataset=DATASET, operation="read", fingerprint=fingerprint)


def pandas_metadata(df: pd.DataFrame) -> tuple[object, int, int]:
    """The pandas calls the capture is documented to make (dtypes, len, shallow memory_usage):
    the floor under any capture implementation."""
    return df.dtypes, len(df), int(df.memory_usage(index=True, deep=False).sum())


def rows_label(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows >= 1_000_000 else f"{rows:,}"


# ------------------------------------------------------------------ (a) capture


def measure_capture(frames: dict[int, pd.DataFrame], repeats: int) -> tuple[list[Figure], dict[str, Any]]:
    figures: list[Figure] = []
    series: dict[str, list[float]] = {"rows": [], "p50_ms": [], "p95_ms": []}
    samples: dict[str, list[float]] = {}
    largest = max(frames)
    for rows, df in sorted(frames.items()):
        event = capture(df)
        if event.row_count != rows or not event.columns or "pii" not in event.dataset.tags:
            raise SystemExit(f"benchmark invalid: captured {event.row_count} rows, tags {event.dataset.tags}")
        run = timed(functools.partial(capture, df), repeats, warmup=20)
        series["rows"].append(rows)
        series["p50_ms"].append(round(percentile(run.wall_s, 50) * 1000, 4))
        series["p95_ms"].append(round(percentile(run.wall_s, 95) * 1000, 4))
        label = f"track_dataframe, {rows_label(rows)} rows"
        samples[f"{label}, no fingerprint"] = run.wall_s
        if rows != largest:
            figures.append(info(f"{label}: capture p50", percentile(run.wall_s, 50) * 1000, "ms"))
            continue
        floor = timed(functools.partial(pandas_metadata, df), repeats, warmup=20)
        figures += [
            at_most(f"{label}: capture p50", percentile(run.wall_s, 50) * 1000, "ms", TARGET_CAPTURE_MS),
            info(f"{label}: capture p95", percentile(run.wall_s, 95) * 1000, "ms"),
            info(f"{label}: capture p99", percentile(run.wall_s, 99) * 1000, "ms"),
            info(f"{label}: capture CPU per call (mean)", statistics.fmean(run.cpu_s) * 1000, "ms"),
            info(f"{label}: of which pandas metadata calls (p50)", percentile(floor.wall_s, 50) * 1000, "ms"),
            info(f"{label}: bytes reported (shallow)", float(capture(df).bytes or 0) / 1e6, "MB"),
        ]
    return figures, {"capture_vs_rows": series, "samples_s": samples}


# ------------------------------------------------------------------ (b) fingerprint against Parquet


def measure_fingerprint(
    df: pd.DataFrame, repeats: int, by_column: bool
) -> tuple[list[Figure], dict[str, Any]]:
    label = f"{rows_label(len(df))} rows × {len(df.columns)} columns"
    digests: set[str | None] = set()

    def fingerprinted() -> None:
        digests.add(capture(df, fingerprint=True).fingerprint)

    print(f"fingerprint: {repeats} × track_dataframe(fingerprint=True) on {label} …")
    fingerprint = timed(fingerprinted, repeats)
    if len(digests) != 1 or None in digests:
        raise SystemExit(f"benchmark invalid: the fingerprint is not stable across runs: {digests}")
    with tempfile.TemporaryDirectory(prefix="gh_bench_") as tmp:
        path = Path(tmp) / "frame.parquet"
        print(f"fingerprint: {repeats} × df.to_parquet on {label} …")
        parquet = timed(lambda: df.to_parquet(path), repeats)
        parquet_mb = path.stat().st_size / 1e6
    wall_ratio = fingerprint.median_wall() / parquet.median_wall() * 100
    cpu_ratio = fingerprint.median_cpu() / parquet.median_cpu() * 100
    figures = [
        info(f"fingerprint, {label}: track_dataframe(fingerprint=True)", fingerprint.median_wall(), "s"),
        info(f"fingerprint, {label}: df.to_parquet (snappy)", parquet.median_wall(), "s"),
        info(f"fingerprint, {label}: Parquet file written", parquet_mb, "MB"),
        info(f"fingerprint ratio to df.to_parquet, {label} (wall)", wall_ratio, "%"),
        info(f"fingerprint ratio to df.to_parquet, {label} (CPU seconds)", cpu_ratio, "%"),
        info(f"fingerprint, {label}: throughput", len(df) / fingerprint.median_wall() / 1e6, "M rows/s"),
    ]
    extra: dict[str, Any] = {
        "fingerprint_s": {"wall": fingerprint.wall_s, "cpu": fingerprint.cpu_s},
        "to_parquet_s": {"wall": parquet.wall_s, "cpu": parquet.cpu_s},
    }
    if by_column:
        figures += fingerprint_by_column(df, extra)
    return figures, extra


def fingerprint_by_column(df: pd.DataFrame, extra: dict[str, Any]) -> list[Figure]:
    """Which dtypes the fingerprint's cost comes from: each column alone (with the index, which
    the whole-frame hash includes once), and the index alone. Best of a few runs: one run each on
    a busy machine is mostly noise."""
    label = f"fingerprint, {rows_label(len(df))} rows"
    print("fingerprint: the index alone …")
    index_s = min(timed(functools.partial(capture, df[[]], fingerprint=True), 3).wall_s)
    figures = [info(f"{label}: the index alone ({df.index.dtype})", index_s, "s")]
    per_column: dict[str, dict[str, Any]] = {
        "(index)": {"dtype": str(df.index.dtype), "fingerprint_s": index_s}
    }
    for column in df.columns:
        single = df[[column]]
        dtype = str(df[column].dtype)
        print(f"fingerprint: column {column} ({dtype}) …")
        fp = min(timed(functools.partial(capture, single, fingerprint=True), 2).wall_s)
        with tempfile.TemporaryDirectory(prefix="gh_bench_") as tmp:
            pq = min(timed(functools.partial(single.to_parquet, Path(tmp) / "column.parquet"), 2).wall_s)
        per_column[str(column)] = {"dtype": dtype, "fingerprint_s": fp, "to_parquet_s": pq}
        figures.append(info(f"{label}: column {column} ({dtype}) with the index", fp, "s"))
    extra["fingerprint_by_column"] = per_column
    return figures


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lineage_capture", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="short CI run: a 1,000,000-row frame")
    parser.add_argument("--rows", type=int, help="rows of the largest frame (default 10,000,000)")
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = 1_000_000 if args.quick else 10_000_000
    args.capture_repeats = 300 if args.quick else 1_000
    args.fingerprint_repeats = 3
    args.by_column = not args.quick
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    warn_if_busy()
    started = time.monotonic()
    print(f"capture: building a {args.rows:,}-row frame …")
    df = build_frame(args.rows)
    frames = {1_000: df.head(1_000).copy(), args.rows: df}
    if args.rows > 1_000_000:
        frames[1_000_000] = df.head(1_000_000).copy()
    sink = NullSink()
    # The scope a pipeline step would have; the empty catalog keeps $GATEHOUSE_HOME out of it.
    lineage.configure(
        sinks=[sink],
        run=RunContext(
            orchestrator="bench", pipeline="lineage_capture", run_id="bench-run", task_id="capture"
        ),
        actor="bench",
        catalog=Catalog(),
    )
    try:
        print(f"capture: track_dataframe × {args.capture_repeats:,} per frame …")
        figures, extra = measure_capture(frames, args.capture_repeats)
        found, fingerprint_extra = measure_fingerprint(df, args.fingerprint_repeats, args.by_column)
        figures += found
        extra |= fingerprint_extra
    finally:
        lineage.reset()
    print_figures("lineage DataFrame capture", figures)
    params = {
        "quick": args.quick,
        "rows": args.rows,
        "columns": {str(c): str(t) for c, t in df.dtypes.items()},
        "frame_memory_mb": round(df.memory_usage(index=True, deep=False).sum() / 1e6, 1),
        "capture_repeats": args.capture_repeats,
        "fingerprint_repeats": args.fingerprint_repeats,
        "events_delivered_to_null_sink": sink.received,
        "pandas": pd.__version__,
        "lineage_source_sha256": lineage_source_digest(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(f"\nresults written to {write_result(NAME, figures, params, extra)}")


if __name__ == "__main__":
    main()
