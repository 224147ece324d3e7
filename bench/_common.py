"""Shared benchmark plumbing: timing, percentiles, machine facts, result files, scratch databases."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from gate_core import SqlStore

RESULTS_DIR = Path(__file__).resolve().parent / "results"
POSTGRES_URL_ENV = "GATEHOUSE_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

TargetKind = Literal["at_most", "at_least"]

# Captured when a benchmark starts: a machine already busy with other work makes every figure
# pessimistic, and the report should be able to say so.
LOAD_AT_START = os.getloadavg()


# ------------------------------------------------------------------ timing


class Stopwatch:
    """Wall-clock and this process's CPU seconds of a ``with`` block, readable once it ends.

    CPU seconds survive a machine busy with other work, where wall-clock figures do not.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self._start = 0.0
        self._cpu_start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
        self.cpu_seconds = time.process_time() - self._cpu_start


def percentile(samples: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default method), without needing numpy."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# ------------------------------------------------------------------ figures


@dataclass(frozen=True, slots=True)
class Figure:
    figure: str
    value: float
    unit: str
    target: float | None = None
    target_kind: TargetKind | None = None

    @property
    def meets_target(self) -> bool | None:
        if self.target is None:
            return None
        if self.target_kind == "at_most":
            return self.value <= self.target
        return self.value >= self.target

    def as_json(self) -> dict[str, Any]:
        # Round for readability only; sub-microsecond digits of a wall-clock figure are noise.
        return asdict(self) | {"value": round(self.value, 6), "meets_target": self.meets_target}

    def line(self) -> str:
        text = f"  {self.figure:<52} {_human(self.value):>12} {self.unit}"
        if self.target is not None:
            sign = "≤" if self.target_kind == "at_most" else "≥"
            mark = "MET" if self.meets_target else "MISSED"
            text += f"   (target {sign} {_human(self.target)} {self.unit}: {mark})"
        return text


def info(figure: str, value: float, unit: str) -> Figure:
    return Figure(figure, value, unit)


def at_most(figure: str, value: float, unit: str, target: float) -> Figure:
    return Figure(figure, value, unit, target, "at_most")


def at_least(figure: str, value: float, unit: str, target: float) -> Figure:
    return Figure(figure, value, unit, target, "at_least")


def _human(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def print_figures(title: str, figures: Sequence[Figure]) -> None:
    print(f"\n{title}")
    for fig in figures:
        print(fig.line())


# ------------------------------------------------------------------ results


def lineage_source_digest() -> str:
    """Which lineage code was measured: the package changes, and a figure belongs to one version."""
    import lineage  # only the lineage benchmarks pay for importing it

    digest = hashlib.sha256()
    for path in sorted(Path(lineage.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in LOAD_AT_START],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def warn_if_busy() -> None:
    cores = os.cpu_count() or 1
    if LOAD_AT_START[0] > cores * 0.5:
        print(
            f"note: load average {LOAD_AT_START[0]:.1f} on {cores} cores before starting — "
            "other work is competing for the CPU, so these figures are pessimistic"
        )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_result(
    name: str, figures: Sequence[Figure], params: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``bench/results/<name>.json`` for the report generator, and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    document = {
        "name": name,
        "machine": machine_info(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": dict(params),
        "figures": [f.as_json() for f in figures],
        **(extra or {}),
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ PostgreSQL


def collapsed_stacks(path: Path) -> Iterator[tuple[str, int]]:
    """``(stack, samples)`` from a py-spy ``--format raw`` file (collapsed stacks: frames joined
    by ``;``, then a space and the count); lines that are not samples are skipped."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            yield stack, int(count)


def postgres_backends(store: SqlStore) -> list[int]:
    """Process ids of the server backends serving this store's pool (serial use: usually one)."""
    if store.dialect != "postgresql":
        return []
    with store.engine.connect() as conn:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        return [int(pid) for pid in conn.exec_driver_sql(query).scalars()]


def cpu_seconds(pids: Sequence[int]) -> float | None:
    """User + system CPU of local processes from /proc; None when any is unreadable (remote server)."""
    if not pids:
        return None
    total = 0.0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def postgres_base_url() -> str:
    return os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)


def libpq_url(url: str) -> str:
    """The URL psycopg itself accepts (no SQLAlchemy ``+driver`` suffix)."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


@contextmanager
def scratch_postgres(base_url: str) -> Iterator[str]:
    """Create a throwaway database next to ``base_url``'s, yield its URL, and drop it afterwards.

    The database is dropped even when the benchmark fails, so reruns never see stale rows.
    """
    name = f"gh_bench_{secrets.token_hex(4)}"
    admin_url = libpq_url(base_url)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            # FORCE: a crashed worker may still hold a connection; the scratch db must go regardless.
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
