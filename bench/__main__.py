"""Run every benchmark and write the report: `python -m bench [--quick] [--only NAME ...]`.

Each benchmark runs as its own process (a failure is reported, the rest still run), writes
bench/results/<name>.json, and then bench/report.py turns the results into docs/benchmarks.md,
PNG plots in docs/bench/, and the table in the README. Every figure comes from the run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from bench import report
from bench._common import RESULTS_DIR


@dataclass(frozen=True)
class Benchmark:
    name: str
    args: tuple[str, ...] = ()
    timeout_s: int = 600
    label: str = ""  # result copied to results/<label>.json (several runs of one script)

    @property
    def result_name(self) -> str:
        return self.label or self.name


SCALE = (10, 100, 1_000, 10_000)
SUITE: tuple[Benchmark, ...] = (
    Benchmark("audit_verify"),
    Benchmark("audit_proof", timeout_s=2400),  # builds a 10M-entry log on both backends first
    Benchmark("gate_throughput"),
    Benchmark("service_http"),
    Benchmark("lineage_capture"),
    Benchmark("lineage_ingest_query", timeout_s=900),
    Benchmark("openlineage_receiver", timeout_s=900),
    Benchmark("airflow_real_stack", timeout_s=1200),  # a whole Airflow deployment starts first
    Benchmark("airflow_resume", timeout_s=900),
    # Statement and request counts are exact per cycle, so one whole poll cycle (25 s) suffices for
    # the small sizes; 10,000 gates, the headline, gets two. Keeps `python -m bench` under 20 min.
    *(
        Benchmark(
            "airflow_triggerer_scale",
            ("--gates", str(n), "--cycles", "2" if n >= 10_000 else "1", "--decisions", "100"),
            label=f"airflow_triggerer_scale@{n}",
        )
        for n in SCALE
    ),
    Benchmark("prefect_resume", timeout_s=900),
    Benchmark("dagster_resume"),
)


def run(benchmark: Benchmark, quick: bool) -> tuple[bool, float]:
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        f"bench.{benchmark.name}",
        *benchmark.args,
        *(["--quick"] if quick else []),
    ]
    print(f"\n=== {benchmark.result_name}: {' '.join(command[1:])}", flush=True)
    try:
        ok = subprocess.run(command, timeout=benchmark.timeout_s, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        print(f"=== {benchmark.result_name}: stopped after {benchmark.timeout_s} s", flush=True)
        ok = False
    if ok and benchmark.label:
        shutil.copyfile(RESULTS_DIR / f"{benchmark.name}.json", RESULTS_DIR / f"{benchmark.label}.json")
    return ok, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small CI-sized runs")
    parser.add_argument("--only", nargs="*", default=None, help="run just these (by result name)")
    parser.add_argument(
        "--report-only", action="store_true", help="re-render the report from existing results"
    )
    args = parser.parse_args()
    outcomes: dict[str, tuple[bool, float]] = {}
    if not args.report_only:
        for benchmark in SUITE:
            if args.only and benchmark.result_name not in args.only and benchmark.name not in args.only:
                continue
            outcomes[benchmark.result_name] = run(benchmark, args.quick)
    paths = report.write_all()
    print("\n=== summary")
    for name, (ok, seconds) in outcomes.items():
        print(f"  {'ok    ' if ok else 'FAILED'} {name:<34} {seconds:7.1f} s")
    for path in paths:
        print(f"  wrote {path}")
    if not all(ok for ok, _ in outcomes.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
