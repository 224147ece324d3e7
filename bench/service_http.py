"""The gate service over real sockets: decisions/s through HTTP, and decision → long-poll wake-up.

Everything runs on loopback, as real `gatehouse serve` processes set up with the real CLI
(`gatehouse init --example`, `gatehouse token create`), and everything is bounded in count and time:

  1. PostgreSQL (a scratch database, dropped afterwards), 2 servers. Load-generator processes
     (asyncio on uvloop; C lanes each, every lane its own HTTP/1.1 keep-alive connection spoken
     by hand, as wrk does — see ``Lane`` — lanes alternating between the servers) open N pii-export gates for
     alice with the etl-bot token, then approve every one as bob. Every response must be 200
     with the expected status; afterwards the audit log must verify (GET /v1/audit/verify) and
     exactly N gates must be APPROVED. The servers' group-commit batches are read back from
     PostgreSQL (decision rows one transaction inserted share its xmin).
  2. Decision → long-poll waiter latency: a waiter parked on GET /v1/gates/{id}/wait on server A;
     the decision posted (a) to A itself, (b) to server B (wake-up via LISTEN/NOTIFY).
  3. The same waiter latency on SQLite with one server (the embedded default).

The load generators share the machine's cores with the servers and PostgreSQL — and so does
anything else running — so the decision run also reports the CPU each side used, the whole
machine's busy CPU, and the decisions/s that the measured CPU cost per decision would allow with
the cores to ourselves (an estimate, valid while the run is CPU-bound).

    python -m bench.service_http            # 5,000 gates, 2 procs × 32 in flight, 200 wake samples
    python -m bench.service_http --quick    # CI-sized: 400 gates, 30 wake samples
    python -m bench.service_http --profile /tmp/prof   # also py-spy the servers during the decisions
    python -m bench.service_http --count-statements    # also SQL statements per decision (servers
                                                       # run as bench._counting_serve: a listener
                                                       # on the engine, so a little more server CPU)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal, NoReturn, TypeVar

import httpx
import psycopg

from bench._common import (
    Figure,
    at_least,
    at_most,
    collapsed_stacks,
    info,
    libpq_url,
    percentile,
    postgres_base_url,
    print_figures,
    scratch_postgres,
    warn_if_busy,
    write_result,
)

NAME = "service_http"
TARGET_DECISIONS_PER_S = 1_000.0  # through the API, 2 servers on PostgreSQL
TARGET_WAKE_P50_MS = 20.0  # decision sent → waiter's response received
TARGET_WAKE_P99_MS = 100.0

SERVER_START_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL
BARRIER_TIMEOUT_S = 120.0
CLI_TIMEOUT_S = 120.0
WAIT_TIMEOUT_S = 30  # the waiter's long-poll timeout; a sample that hits it is an error
PARK_TIMEOUT_S = 5.0
# uvicorn closes a keep-alive connection idle for 5 s (its default; `gatehouse serve` keeps it).
# A client that reuses a connection at that moment gets a ReadError, so clients here let idle
# connections go sooner, as any long-lived client of the service should.
CLIENT_KEEPALIVE_S = 3.0
WAKE_WARMUP = 5  # samples run and discarded before measuring (connections, caches)
SERVE_COMMAND = [sys.executable, "-m", "gate_core.cli", "serve"]  # a variable, for experiments

OPEN_BODY = json.dumps(
    {
        "action": "export",
        "target": "s3://exports/customers.csv",
        "datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["pii"]}],
        "requester": "alice",
        "reason": "quarterly report",
    }
).encode()
APPROVE_BODY = b'{"decision":"approve"}'
JSON_HEADERS = {"Content-Type": "application/json"}

T = TypeVar("T")


class Lane:
    """One keep-alive HTTP/1.1 connection to one server, spoken by hand as wrk and h2load do:
    each request's bytes formatted from a template, each response read by its Content-Length.

    The load generator shares the 2 cores with what it measures, so its own cost per request is
    part of every figure: httpx spent ~0.75-0.85 ms of CPU per request here (pool bookkeeping,
    header objects, response models), this ~0.1 ms — the servers still parse real HTTP/1.1."""

    def __init__(self, base_url: str, token: str) -> None:
        url = httpx.URL(base_url)
        self.base_url = base_url
        self._host, self._port = url.host, url.port or 80
        self._head = (
            "POST {} HTTP/1.1\r\nHost: " + f"{self._host}:{self._port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Content-Length: {}\r\n\r\n"
        )
        self._get = (
            "GET {} HTTP/1.1\r\nHost: "
            + f"{self._host}:{self._port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        return self._reader, self._writer

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self._send(self._get.format(path).encode())

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self._send(self._head.format(path, len(body)).encode() + body)

    async def _send(self, request: bytes) -> tuple[int, bytes]:
        reader, writer = await self._connection()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, close = None, False
        for line in head.lower().split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line[15:])
            elif line.startswith(b"connection:") and b"close" in line:
                close = True
            elif line.startswith(b"transfer-encoding:"):
                raise OSError(f"unexpected {line.decode()!r}: this client reads Content-Length bodies only")
        if length is None:
            raise OSError(f"HTTP {status} without a Content-Length")
        body = await reader.readexactly(length)
        if close:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


# ------------------------------------------------------------------ event loops

_STARTED = time.monotonic()


def say(message: str) -> None:
    """A progress line, stamped with seconds since the benchmark started."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", flush=True)


def run_async(coro: Awaitable[T]) -> T:
    """Run a coroutine on uvloop when it is installed (it is, with uvicorn[standard]), else asyncio."""

    async def main() -> T:
        return await coro

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


# ------------------------------------------------------------------ processes


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a local process (from /proc), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def stop_popen(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)


def stop_mp(proc: mp.process.BaseProcess, grace_s: float = STOP_GRACE_S) -> None:
    """The same for a multiprocessing child (one that never started is left alone)."""
    if proc.pid is None:
        return
    if proc.is_alive():
        proc.terminate()
        proc.join(timeout=grace_s)
        if proc.is_alive():
            proc.kill()
    proc.join(timeout=grace_s)


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds every finally: servers, workers and the scratch db go


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ home, tokens, servers


@dataclass(frozen=True, slots=True)
class Home:
    """A GATEHOUSE_HOME made by the CLI, the environment that selects it, and API tokens."""

    path: Path
    env: dict[str, str]
    tokens: dict[str, str]  # "bot" (etl-bot, request), "bob" and "carol" (decide)
    database_url: str | None  # None: the embedded SQLite default


def gatehouse_cli(env: dict[str, str], *args: str) -> str:
    """Run the real `gatehouse` CLI as a subprocess; its stdout, or SystemExit with its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "gate_core.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"gatehouse {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def prepare_home(path: Path, database_url: str | None) -> Home:
    """`gatehouse init --example`, then a request-scoped token for etl-bot (created by frank, of
    gatehouse-admins) and decide-scoped tokens for bob and carol, each created by its owner —
    chosen with --as, which the example home (a sandbox) allows; the token is stdout's last line."""
    env = {**os.environ, "GATEHOUSE_HOME": str(path)}
    env.pop("GATEHOUSE_DATABASE_URL", None)
    if database_url is not None:
        env["GATEHOUSE_DATABASE_URL"] = database_url
    gatehouse_cli(env, "init", "--example")
    wanted = {
        "bot": ("etl-bot", "request", "frank"),
        "bob": ("bob", "decide", "bob"),
        "carol": ("carol", "decide", "carol"),
    }
    with ThreadPoolExecutor(len(wanted)) as pool:  # three CLI start-ups at once, not one after another
        outputs = {
            who: pool.submit(
                gatehouse_cli, env, "--as", issuer, "token", "create", "--principal", pid, "--scope", scope
            )
            for who, (pid, scope, issuer) in wanted.items()
        }
        tokens = {who: out.result().strip().splitlines()[-1] for who, out in outputs.items()}
    return Home(path, env, tokens, database_url)


@dataclass
class Server:
    """One `gatehouse serve` subprocess."""

    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path
    statements: Path | None = None  # bench._counting_serve's counts file, when counting

    def statement_counts(self) -> Counter[str]:
        """SQL statements this server's store has sent so far, by kind (published twice a second)."""
        if self.statements is None or not self.statements.exists():
            return Counter()
        return Counter(json.loads(self.statements.read_text(encoding="utf-8")))

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_servers(
    home: Home, count: int, stack: contextlib.ExitStack, *, count_statements: bool = False
) -> list[Server]:
    """Start ``count`` servers at once, each stopped (SIGTERM, then SIGKILL) when ``stack`` closes,
    and wait until every one answers /healthz. With ``count_statements`` each runs as
    bench._counting_serve (the same app, counting its store's SQL statements into a file)."""
    servers = []
    for index in range(count):
        port = free_port()
        name = "AB"[index] if count <= 2 else str(index)
        log = home.path.parent / f"serve-{name}-{port}.log"
        command = [*SERVE_COMMAND, "--port", str(port), "--log-level", "warning"]
        env = home.env
        counts = None
        if count_statements:
            counts = home.path.parent / f"statements-{name}.json"
            command = [sys.executable, "-m", "bench._counting_serve", "--port", str(port)]
            env = {**home.env, "GATEHOUSE_BENCH_COUNTS": str(counts)}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench only; it stops the servers in order
            )
        server = Server(name, f"http://127.0.0.1:{port}", proc, log, counts)
        stack.callback(stop_popen, proc)
        servers.append(server)
    for server in servers:
        wait_healthy(server)
    return servers


def wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"server {server.name} exited at start:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(
        f"server {server.name} not healthy after {SERVER_START_TIMEOUT_S:g}s:\n{server.log_tail()}"
    )


# ------------------------------------------------------------------ CPU accounting


class CpuMeter:
    """CPU seconds of the servers and of this database's PostgreSQL backends (local /proc)."""

    def __init__(self, servers: Sequence[Server], database_url: str | None) -> None:
        self.server_pids = [s.pid for s in servers]
        self._conn = psycopg.connect(libpq_url(database_url), autocommit=True) if database_url else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def backend_pids(self) -> list[int]:
        if self._conn is None:
            return []
        rows = self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return [int(row[0]) for row in rows]

    def sample(self) -> CpuSample:
        """Every counter, now."""

        def read(pids: Sequence[int]) -> dict[int, float]:
            return {pid: cpu for pid in pids if (cpu := process_cpu_s(pid)) is not None}

        return CpuSample(
            read(self.server_pids), read(self.backend_pids()), machine_busy_s(), self.sessions_opened()
        )

    def sessions_opened(self) -> int:
        """Connections ever made to this database (pg_stat_database.sessions, PostgreSQL 14+)."""
        if self._conn is None:
            return 0
        row = self._conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        return int(row[0]) if row is not None and row[0] is not None else 0


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds so far: per server process, per PostgreSQL backend, and the whole machine."""

    servers: dict[int, float]
    backends: dict[int, float]
    machine_busy: float
    sessions: int

    def used_since(self, before: CpuSample) -> tuple[float, float, float, int]:
        """(servers, backends, machine) CPU seconds and PostgreSQL connections opened since
        ``before``. A backend that appeared in between counts from zero; one that came and went
        in between is not counted at all (hence the connections figure)."""

        def delta(was: dict[int, float], now: dict[int, float]) -> float:
            return sum(cpu - was.get(pid, 0.0) for pid, cpu in now.items())

        return (
            delta(before.servers, self.servers),
            delta(before.backends, self.backends),
            self.machine_busy - before.machine_busy,
            self.sessions - before.sessions,
        )


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent not idle (all processes, anyone's), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is in user)
    return busy / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def profiling(servers: Sequence[Server], directory: Path | None, label: str) -> Iterator[None]:
    """py-spy every server (collapsed stacks, one file per server) while the block runs."""
    if directory is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("--profile needs py-spy: uv pip install py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    spies = [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(s.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--nonblocking",
                "--gil",  # only the thread holding the GIL: where the server's Python CPU goes
                "--output",
                str(directory / f"{label}-server-{s.name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for s in servers
    ]
    time.sleep(1.0)  # let py-spy attach before the load starts
    try:
        yield
    finally:
        for spy_proc in spies:
            if spy_proc.poll() is None:
                spy_proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for spy_proc in spies:
            try:
                spy_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy_proc.kill()
                spy_proc.wait()


# Where a server's GIL-holding samples go, first match wins: (label, any of these frames).
PROFILE_BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("decide_many: the group-commit transaction", ("Gatekeeper.decide_many",)),
    ("token authentication (worker thread)", ("Authenticator.identify",)),
    ("sweeper (expiry, reminders, checkpoints)", ("_sweep_once",)),
    ("PostgreSQL LISTEN thread", ("PgChangeListener.run",)),
    ("long-poll waiters", ("_wait ", "wait_one", "wait_many")),
    ("worker threads: taking work off the queue", ("WorkerThread.run",)),
    ("event loop: handing work to threads", ("run_in_threadpool", "run_sync_in_worker_thread")),
    ("event loop: response validation + JSON", ("serialize_response",)),
    (
        "event loop: HTTP, middleware, routing, params",
        ("run_asgi", "RequestResponseCycle", "HttpToolsProtocol"),
    ),
    ("event loop: other", ("Runner.run",)),
)


def profile_summary(path: Path) -> str:
    """Share of a server's GIL-holding samples (py-spy collapsed stacks) per part of the request
    path: where its Python CPU went."""
    if not path.exists():
        return f"  {path.name}: missing (py-spy could not attach? it needs ptrace permission)"
    buckets: Counter[str] = Counter()
    total = 0
    for stack, count in collapsed_stacks(path):
        total += count
        label = next(
            (lb for lb, marks in PROFILE_BUCKETS if any(m in stack for m in marks)),
            "other (truncated stacks)",
        )
        buckets[label] += count
    lines = [f"  {path.name}: {total} samples holding the GIL"]
    lines += [f"    {n / max(total, 1) * 100:5.1f}%  {label}" for label, n in buckets.most_common()]
    return "\n".join(lines)


# ------------------------------------------------------------------ load generator processes


@dataclass(frozen=True, slots=True)
class LoadJob:
    """One load-generator process's share: open ``count`` gates, or approve ``gate_ids``."""

    index: int
    kind: Literal["open", "decide"]
    servers: tuple[str, ...]
    token: str
    concurrency: int
    deadline_s: float
    count: int = 0
    gate_ids: tuple[str, ...] = ()


@dataclass(slots=True)
class LoadOutcome:
    """What one load-generator process measured, from the start barrier to its last answer."""

    index: int
    started: float = 0.0  # time.monotonic(): one system-wide clock, comparable across processes
    finished: float = 0.0
    cpu_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    gate_ids: list[str] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(message)


def load_worker(job: LoadJob, barrier: Any, results: Any) -> None:
    """Process entry point: warm up, wait at the barrier, drive the job, report a LoadOutcome
    (or a traceback string)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    try:
        results.put(run_async(_drive(job, barrier)))
    except BaseException:
        barrier.abort()  # free the others instead of leaving them waiting for a dead worker
        results.put(traceback.format_exc())


async def _drive(job: LoadJob, barrier: Any) -> LoadOutcome:
    """``job.concurrency`` lanes, each its own keep-alive connection (``Lane``) pinned to one
    server (lanes alternate between servers), pulling the next gate from a shared queue."""
    outcome = LoadOutcome(job.index)
    lanes = [Lane(job.servers[(job.index + n) % len(job.servers)], job.token) for n in range(job.concurrency)]
    try:
        # Open every lane's connection, through the auth path, before the clock starts.
        for status, body in await asyncio.gather(*(lane.get("/v1/me") for lane in lanes)):
            if status != 200:
                raise RuntimeError(f"GET /v1/me: HTTP {status}: {body[:300]!r}")
        barrier.wait(timeout=BARRIER_TIMEOUT_S)  # blocks the loop on purpose: nothing else is running
        n = job.count if job.kind == "open" else len(job.gate_ids)
        todo = iter(range(n))
        expect = "PENDING" if job.kind == "open" else "APPROVED"

        async def drive(lane: Lane) -> None:
            for i in todo:  # lanes share the iterator: C requests in flight until it runs dry
                if job.kind == "open":
                    url, body = "/v1/gates", OPEN_BODY
                else:
                    url, body = f"/v1/gates/{job.gate_ids[i]}/decisions", APPROVE_BODY
                begin = time.perf_counter()
                try:
                    status, answer = await lane.post(url, body)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    outcome.fail(f"{lane.base_url}{url}: {type(exc).__name__}: {exc!r}")
                    await lane.close()
                    continue
                outcome.latencies.append(time.perf_counter() - begin)
                if status != 200:
                    outcome.fail(f"{lane.base_url}{url}: HTTP {status}: {answer[:300]!r}")
                    continue
                gate = json.loads(answer)
                if gate.get("status") != expect:
                    outcome.fail(f"{lane.base_url}{url}: status {gate.get('status')!r}, expected {expect}")
                elif job.kind == "open":
                    outcome.gate_ids.append(gate["id"])

        cpu0 = time.process_time()
        outcome.started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.gather(*(drive(lane) for lane in lanes)), job.deadline_s)
        except TimeoutError:
            outcome.fail(
                f"gave up after {job.deadline_s:g}s with {n - len(outcome.latencies)} requests unanswered"
            )
        outcome.finished = time.monotonic()
        outcome.cpu_s = time.process_time() - cpu0
    finally:
        for lane in lanes:
            await lane.close()
    return outcome


@dataclass(frozen=True, slots=True)
class LoadRun:
    """A whole load phase: every process's outcome, wall time, and the CPU each side used."""

    outcomes: list[LoadOutcome]
    wall_s: float
    server_cpu_s: float
    postgres_cpu_s: float
    machine_cpu_s: float  # every process on the machine, ours or not
    pg_connections: int  # PostgreSQL sessions opened during the run

    @property
    def latencies(self) -> list[float]:
        return [x for o in self.outcomes for x in o.latencies]

    @property
    def answered(self) -> int:
        return len(self.latencies)

    @property
    def errors(self) -> int:
        return sum(o.errors for o in self.outcomes)

    @property
    def error_samples(self) -> list[str]:
        return [s for o in self.outcomes for s in o.error_samples][:5]

    @property
    def client_cpu_s(self) -> float:
        return sum(o.cpu_s for o in self.outcomes)

    @property
    def gate_ids(self) -> list[str]:
        return [g for o in self.outcomes for g in o.gate_ids]


def run_load(jobs: Sequence[LoadJob], meter: CpuMeter) -> LoadRun:
    """Run the jobs in spawned processes that start together (the parent is the last barrier
    party, so the CPU sample is taken as the load starts); every child is stopped on the way out."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(jobs) + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=load_worker, args=(job, barrier, results), name=f"gatehouse-load-{job.index}")
        for job in jobs
    ]
    deadline = time.monotonic() + BARRIER_TIMEOUT_S + max(job.deadline_s for job in jobs) + 30
    try:
        for proc in procs:
            proc.start()
        try:
            barrier.wait(timeout=BARRIER_TIMEOUT_S)
        except threading.BrokenBarrierError:
            raise SystemExit("a load generator failed before starting:\n" + _first_failure(results)) from None
        before = meter.sample()
        outcomes: list[LoadOutcome] = []
        while len(outcomes) < len(procs):
            try:
                got = results.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() > deadline or not any(p.is_alive() for p in procs):
                    raise SystemExit("load generators stopped answering") from None
                continue
            if isinstance(got, str):
                raise SystemExit("a load generator failed:\n" + got)
            outcomes.append(got)
        after = meter.sample()
    finally:
        for proc in procs:
            stop_mp(proc)
    wall = max(o.finished for o in outcomes) - min(o.started for o in outcomes)
    return LoadRun(
        sorted(outcomes, key=lambda o: o.index),
        wall,
        *after.used_since(before),
    )


def _first_failure(results: Any) -> str:
    with contextlib.suppress(queue.Empty):
        while True:
            got = results.get(timeout=2)
            if isinstance(got, str):
                return got
    return "(no traceback)"


def split_jobs(
    kind: Literal["open", "decide"],
    servers: Sequence[Server],
    token: str,
    workers: int,
    concurrency: int,
    gate_ids: Sequence[str] = (),
    count: int = 0,
) -> list[LoadJob]:
    """Share the work between ``workers`` processes; their lanes alternate between the servers."""
    total = count if kind == "open" else len(gate_ids)
    deadline = 60.0 + total / 20  # bounded even if the service crawls at 20 requests/s
    bases = tuple(s.base_url for s in servers)
    return [
        LoadJob(
            index=w,
            kind=kind,
            servers=bases,
            token=token,
            concurrency=concurrency,
            deadline_s=deadline,
            count=total // workers + (1 if w < total % workers else 0),
            gate_ids=tuple(gate_ids[w::workers]),
        )
        for w in range(workers)
    ]


# ------------------------------------------------------------------ (1) decisions/s


def throughput(
    servers: Sequence[Server], home: Home, args: argparse.Namespace, problems: list[str]
) -> tuple[list[Figure], dict[str, Any]]:
    """Open N gates, approve them all through both servers, then verify the audit log and counts."""
    meter = CpuMeter(servers, home.database_url)
    try:
        say(f"  opening {args.gates:,} gates: {args.workers} procs × {args.concurrency} in flight …")
        opened = run_load(
            split_jobs("open", servers, home.tokens["bot"], args.workers, args.concurrency, count=args.gates),
            meter,
        )
        gate_ids = opened.gate_ids
        names = "/".join(s.name for s in servers)
        say(f"  approving {len(gate_ids):,} gates as bob, alternating servers {names} …")
        statements_before = count_statements(servers)
        with profiling(servers, args.profile, "decide"):
            decided = run_load(
                split_jobs("decide", servers, home.tokens["bob"], args.workers, args.concurrency, gate_ids),
                meter,
            )
        statements = count_statements(servers) - statements_before
        profiles = {}
        if args.profile is not None:
            for server in servers:
                profiles[server.name] = profile_summary(args.profile / f"decide-server-{server.name}.txt")
                print(profiles[server.name])
    finally:
        meter.close()
    for phase, run in (("open", opened), ("decide", decided)):
        if run.errors:
            problems.append(f"{run.errors} failed {phase} requests, e.g. {run.error_samples}")

    say("  verifying: audit log, gate statuses, group-commit batches …")
    verify = audit_verify(servers[0], home)
    if not verify.get("ok"):
        problems.append(f"audit log does not verify after the decision run: {verify}")
    statuses = gate_statuses(home)
    if statuses.get("APPROVED", 0) != args.gates or sum(statuses.values()) != args.gates:
        problems.append(f"expected exactly {args.gates} gates, all APPROVED; found {statuses}")
    batches = decision_batches(home)

    cores = os.cpu_count() or 1
    n = decided.answered or 1
    c = f"{args.workers} procs × {args.concurrency} in flight"
    pg = f"PG {len(servers)} servers"
    figures = [  # labels name the replicas: the README row is the default 2
        info(f"{pg}: opens/s over HTTP ({c})", opened.answered / opened.wall_s, "ops/s"),
        info(f"{pg}: open latency p50", ms_percentile(opened.latencies, 50), "ms"),
        at_least(
            f"{pg}: decisions/s over HTTP ({c})",
            decided.answered / decided.wall_s,
            "decisions/s",
            TARGET_DECISIONS_PER_S,
        ),
        info(f"{pg}: decision latency p50", ms_percentile(decided.latencies, 50), "ms"),
        info(f"{pg}: decision latency p99", ms_percentile(decided.latencies, 99), "ms"),
        at_most(f"{pg}: failed requests (open + decide)", opened.errors + decided.errors, "requests", 0),
        info("PG decide run: load generators' CPU", decided.client_cpu_s / decided.wall_s, "cores"),
        info(f"PG decide run: {len(servers)} servers' CPU", decided.server_cpu_s / decided.wall_s, "cores"),
        info("PG decide run: PostgreSQL backends' CPU", decided.postgres_cpu_s / decided.wall_s, "cores"),
        info("PG decide run: client CPU per decision", decided.client_cpu_s / n * 1000, "ms"),
        info("PG decide run: server CPU per decision", decided.server_cpu_s / n * 1000, "ms"),
        info("PG decide run: PostgreSQL CPU per decision", decided.postgres_cpu_s / n * 1000, "ms"),
        info("PG decide run: PostgreSQL connections opened", decided.pg_connections, "connections"),
        info(
            "PG decide run: whole machine's CPU busy (anyone's)",
            decided.machine_cpu_s / decided.wall_s,
            "cores",
        ),
        # What the measured CPU cost per decision would allow with the machine to ourselves: an
        # estimate, valid while the run is CPU-bound (PostgreSQL's fsync is ~0.1 ms here).
        info(
            f"PG decide run: CPU-bound ceiling, servers + PG alone on {cores} cores",
            cores / max((decided.server_cpu_s + decided.postgres_cpu_s) / n, 1e-9),
            "decisions/s",
        ),
        info(
            f"PG decide run: CPU-bound ceiling, with the load generators, {cores} cores",
            cores / max((decided.client_cpu_s + decided.server_cpu_s + decided.postgres_cpu_s) / n, 1e-9),
            "decisions/s",
        ),
    ]
    if args.count_statements:
        figures.append(
            info(
                "PG decide run: SQL statements per decision (servers' stores)",
                statements.total() / n,
                "statements",
            )
        )
    if batches:
        figures += [
            info("PG decide run: group-commit transactions", len(batches), "tx"),
            info("PG decide run: decisions per transaction (mean)", sum(batches) / len(batches), "decisions"),
            info("PG decide run: decisions per transaction (max)", max(batches), "decisions"),
        ]
    extra = {
        "open": _run_json(opened),
        "decide": _run_json(decided),
        "cores": cores,
        "audit_verify": verify,
        "gate_statuses": statuses,
        "batch_sizes": dict(sorted(Counter(batches).items())),
        "server_profiles": profiles,
        "statements_per_decision": {kind: round(c / n, 3) for kind, c in statements.most_common()},
    }
    return figures, extra


def count_statements(servers: Sequence[Server]) -> Counter[str]:
    """Every server's statements so far; waits out one publication (0.5 s) so that the count
    includes every statement sent before the call. Around the decide run this also counts the
    load generators' warm-up (one GET /v1/me per lane, answered from the token cache mostly)."""
    if all(server.statements is None for server in servers):
        return Counter()
    time.sleep(1.2)
    total: Counter[str] = Counter()
    for server in servers:
        total += server.statement_counts()
    return total


def ms_percentile(seconds: Sequence[float], pct: float) -> float:
    """A percentile in milliseconds; NaN when nothing was answered (the run is then invalid anyway)."""
    return percentile(seconds, pct) * 1000 if seconds else float("nan")


def _run_json(run: LoadRun) -> dict[str, Any]:
    return {
        "answered": run.answered,
        "errors": run.errors,
        "error_samples": run.error_samples,
        "wall_s": round(run.wall_s, 3),
        "client_cpu_s": round(run.client_cpu_s, 3),
        "server_cpu_s": round(run.server_cpu_s, 3),
        "postgres_cpu_s": round(run.postgres_cpu_s, 3),
        "machine_cpu_s": round(run.machine_cpu_s, 3),
        "postgres_connections_opened": run.pg_connections,
        "per_process": [
            {
                "answered": len(o.latencies),
                "errors": o.errors,
                "cpu_s": round(o.cpu_s, 3),
                "wall_s": round(o.finished - o.started, 3),
            }
            for o in run.outcomes
        ],
    }


def audit_verify(server: Server, home: Home) -> dict[str, Any]:
    response = httpx.get(
        f"{server.base_url}/v1/audit/verify",
        headers={"Authorization": f"Bearer {home.tokens['carol']}"},
        timeout=120,
    )
    if response.status_code != 200:
        return {"ok": False, "http_status": response.status_code, "body": response.text[:300]}
    result: dict[str, Any] = response.json()
    return result


def gate_statuses(home: Home) -> dict[str, int]:
    """Gates per status, straight from the database."""
    assert home.database_url is not None
    with psycopg.connect(libpq_url(home.database_url)) as conn:
        rows = conn.execute("SELECT status, count(*) FROM gh_gates GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}


def decision_batches(home: Home) -> list[int]:
    """Decisions per committing transaction: rows one transaction inserted share its xmin."""
    assert home.database_url is not None
    with psycopg.connect(libpq_url(home.database_url)) as conn:
        rows = conn.execute("SELECT count(*) FROM gh_decisions GROUP BY xmin::text::bigint").fetchall()
    return [int(row[0]) for row in rows]


# ------------------------------------------------------------------ (2, 3) wake-up latency


@dataclass(frozen=True, slots=True)
class WakeSample:
    decision_rtt_s: float  # decision sent → decision response received
    sent_to_return_s: float  # decision sent → waiter's response received
    ack_to_return_s: float  # decision response received → waiter's response received (may be < 0)


def _client(token: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4, keepalive_expiry=CLIENT_KEEPALIVE_S)
    return httpx.AsyncClient(
        headers={"Authorization": f"Bearer {token}", **JSON_HEADERS},
        timeout=WAIT_TIMEOUT_S + 15,
        limits=limits,
    )


async def wake_latency(
    waiter_at: Server, decide_at: Server, home: Home, samples: int, settle_s: float, problems: list[str]
) -> list[WakeSample]:
    """For each sample: open a gate, park a long-poll waiter on ``waiter_at`` (its own keep-alive
    connection), confirm it is parked (/healthz waiting_gates, then ``settle_s``), approve on
    ``decide_at`` and time both responses."""
    measured: list[WakeSample] = []
    async with (
        _client(home.tokens["bot"]) as opener,
        _client(home.tokens["bot"]) as waiter,
        _client(home.tokens["bob"]) as decider,
    ):

        async def wait_for(gate_id: str) -> tuple[float, httpx.Response]:
            response = await waiter.get(
                f"{waiter_at.base_url}/v1/gates/{gate_id}/wait", params={"timeout": WAIT_TIMEOUT_S}
            )
            return time.perf_counter(), response

        for k in range(WAKE_WARMUP + samples):
            opened = await opener.post(f"{waiter_at.base_url}/v1/gates", content=OPEN_BODY)
            opened.raise_for_status()
            gate_id = opened.json()["id"]
            parked = asyncio.create_task(wait_for(gate_id))
            await until_parked(opener, waiter_at, parked)
            await asyncio.sleep(settle_s)  # past its first read of the gate: really waiting
            t0 = time.perf_counter()
            decision = await decider.post(
                f"{decide_at.base_url}/v1/gates/{gate_id}/decisions", content=APPROVE_BODY
            )
            t_ack = time.perf_counter()
            t1, answer = await asyncio.wait_for(parked, WAIT_TIMEOUT_S + 10)
            ok = (
                decision.status_code == 200
                and decision.json()["status"] == "APPROVED"
                and answer.status_code == 200
                and answer.json()["status"] == "APPROVED"
            )
            if not ok:
                problems.append(
                    f"wake sample {gate_id} ({waiter_at.name}←{decide_at.name}): "
                    f"decision {decision.status_code} {decision.text[:200]}; "
                    f"waiter {answer.status_code} {answer.text[:200]}"
                )
            elif k >= WAKE_WARMUP:
                measured.append(WakeSample(t_ack - t0, t1 - t0, t1 - t_ack))
    return measured


async def until_parked(http: httpx.AsyncClient, server: Server, parked: asyncio.Task[Any]) -> None:
    """Poll the server's /healthz until it reports a gate with a waiter (ours: nothing else waits)."""
    deadline = time.monotonic() + PARK_TIMEOUT_S
    while time.monotonic() < deadline:
        if parked.done():
            return  # answered already (an error): the caller reports it
        health = await http.get(f"{server.base_url}/healthz")
        if health.status_code == 200 and health.json().get("waiting_gates", 0) >= 1:
            return
        await asyncio.sleep(0.002)
    raise SystemExit(f"the waiter on server {server.name} did not park within {PARK_TIMEOUT_S:g}s")


def wake_figures(label: str, samples: Sequence[WakeSample]) -> list[Figure]:
    if not samples:
        return []
    sent = [s.sent_to_return_s * 1000 for s in samples]
    ack = [s.ack_to_return_s * 1000 for s in samples]
    rtt = [s.decision_rtt_s * 1000 for s in samples]
    return [
        at_most(
            f"{label}: decision sent → waiter returned p50", percentile(sent, 50), "ms", TARGET_WAKE_P50_MS
        ),
        at_most(
            f"{label}: decision sent → waiter returned p99", percentile(sent, 99), "ms", TARGET_WAKE_P99_MS
        ),
        info(f"{label}: decision request round trip p50", percentile(rtt, 50), "ms"),
        info(f"{label}: decision request round trip p99", percentile(rtt, 99), "ms"),
        info(f"{label}: decision acknowledged → waiter returned p50", percentile(ack, 50), "ms"),
        info(f"{label}: decision acknowledged → waiter returned p99", percentile(ack, 99), "ms"),
        info(
            f"{label}: waiter returned before the decision's ack",
            sum(a < 0 for a in ack) / len(ack) * 100,
            "%",
        ),
    ]


def wake_json(samples: Sequence[WakeSample]) -> dict[str, Any]:
    def summary(values: list[float]) -> dict[str, float]:
        return {
            p: round(percentile(values, q), 3)
            for p, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
        }

    return {
        "samples": len(samples),
        "sent_to_return_ms": summary([s.sent_to_return_s * 1000 for s in samples]),
        "decision_rtt_ms": summary([s.decision_rtt_s * 1000 for s in samples]),
        "ack_to_return_ms": summary([s.ack_to_return_s * 1000 for s in samples]),
    }


# ------------------------------------------------------------------ per backend


def run_postgres(
    home: Home, args: argparse.Namespace, problems: list[str]
) -> tuple[list[Figure], dict[str, Any]]:
    """Sections 1 and 2: two servers on the scratch PostgreSQL database ``home`` points at."""
    with contextlib.ExitStack() as stack:
        say(f"PostgreSQL: starting {args.servers} servers …")
        servers = start_servers(home, args.servers, stack, count_statements=args.count_statements)
        a, b = servers[:2]
        figures, extra = throughput(servers, home, args, problems)
        wake: dict[str, Any] = {}
        for label, decide_at in (("PG same server (A←A)", a), ("PG across replicas (A←B, NOTIFY)", b)):
            say(f"  {label}: {args.samples} wake-up samples …")
            samples = run_async(
                wake_latency(a, decide_at, home, args.samples, args.settle_ms / 1000, problems)
            )
            figures += wake_figures(label, samples)
            wake[label] = wake_json(samples)
        final = audit_verify(a, home)
        if not final.get("ok"):
            problems.append(f"audit log does not verify at the end: {final}")
        figures.append(
            info("PG: audit entries verified at the end", float(final.get("entries", 0)), "entries")
        )
        extra |= {"wake": wake, "audit_verify_final": final}
        say("PostgreSQL: stopping the servers …")
    return figures, extra


def run_sqlite(
    home: Home, args: argparse.Namespace, problems: list[str]
) -> tuple[list[Figure], dict[str, Any]]:
    """Section 3: the embedded default, one server, waiter and decision on it."""
    with contextlib.ExitStack() as stack:
        say("SQLite: starting 1 server …")
        (server,) = start_servers(home, 1, stack)
        label = "SQLite 1 server (A←A)"
        say(f"  {label}: {args.samples} wake-up samples …")
        samples = run_async(wake_latency(server, server, home, args.samples, args.settle_ms / 1000, problems))
        final = audit_verify(server, home)
        if not final.get("ok"):
            problems.append(f"SQLite audit log does not verify: {final}")
    return wake_figures(label, samples), {"wake": {label: wake_json(samples)}, "audit_verify_final": final}


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.service_http", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run: 400 gates, 30 wake-ups")
    parser.add_argument(
        "--gates", type=int, help="gates opened then approved over HTTP (default 5,000; quick 400)"
    )
    parser.add_argument("--servers", type=int, default=2, help="gatehouse serve replicas on PostgreSQL (≥ 2)")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight per load generator")
    parser.add_argument("--samples", type=int, help="wake-up samples per setting (default 200; quick 30)")
    parser.add_argument(
        "--settle-ms",
        type=float,
        default=20.0,
        help="pause after the waiter shows in /healthz before deciding",
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy the servers during the decision run into this dir"
    )
    parser.add_argument(
        "--count-statements",
        action="store_true",
        help="count the servers' SQL statements during the decisions (bench._counting_serve)",
    )
    parser.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    if args.gates is None:
        args.gates = 400 if args.quick else 5_000
    if args.samples is None:
        args.samples = 30 if args.quick else 200
    if args.servers < 2:
        parser.error("need --servers ≥ 2: the wake-up samples decide on a second replica")
    if args.gates < args.workers or args.workers < 1 or args.concurrency < 1 or args.samples < 1:
        parser.error("need --workers ≥ 1, --concurrency ≥ 1, --samples ≥ 1 and --gates ≥ --workers")
    return args


def _backends(args: argparse.Namespace) -> list[str]:
    return [name for name, on in (("PostgreSQL", args.postgres), ("SQLite", args.sqlite)) if on]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    warn_if_busy()
    started = time.monotonic()
    figures: list[Figure] = []
    extra: dict[str, Any] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gh_bench_http_") as tmp, contextlib.ExitStack() as scratch:
        root = Path(tmp)
        url = scratch.enter_context(scratch_postgres(postgres_base_url())) if args.postgres else None
        # Both homes at once: `gatehouse init` and `token create` are CLI start-ups, nothing measured.
        say("gatehouse init --example and token create (" + ", ".join(_backends(args)) + ") …")
        with ThreadPoolExecutor(2) as pool:
            pg_home = pool.submit(prepare_home, root / "pg" / "home", url) if url is not None else None
            sqlite_home = pool.submit(prepare_home, root / "sqlite" / "home", None) if args.sqlite else None
            homes = (
                pg_home.result() if pg_home is not None else None,
                sqlite_home.result() if sqlite_home is not None else None,
            )
        if homes[0] is not None:
            pg_figures, extra["postgres"] = run_postgres(homes[0], args, problems)
            figures += pg_figures
        if homes[1] is not None:
            sqlite_figures, extra["sqlite"] = run_sqlite(homes[1], args, problems)
            figures += sqlite_figures
    if not figures:
        raise SystemExit("nothing to do: both --no-postgres and --no-sqlite given")

    print_figures("gate service over HTTP (loopback)", figures)
    params = {
        "quick": args.quick,
        "gates": args.gates,
        "load_processes": args.workers,
        "in_flight_per_process": args.concurrency,
        "servers_postgres": args.servers,
        "wake_samples_per_setting": args.samples,
        "wake_warmup_samples": WAKE_WARMUP,
        "settle_ms": args.settle_ms,
        "client": "decisions: Lane, one hand-spoken HTTP/1.1 keep-alive connection per request in flight; "
        f"wake-ups: httpx {httpx.__version__} AsyncClient",
        "client_keepalive_expiry_s": CLIENT_KEEPALIVE_S,
        "request": "pii export for alice opened by etl-bot, approved by bob (1 approval)",
        "total_seconds": round(time.monotonic() - started, 1),
    }
    extra["problems"] = problems
    print(f"\nresults written to {write_result(NAME, figures, params, extra)}  [{params['total_seconds']} s]")
    if problems:
        raise SystemExit("benchmark invalid:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # every finally has run by now: servers, generators, scratch database
        raise SystemExit(
            "interrupted: servers and load generators stopped, scratch database dropped"
        ) from None
