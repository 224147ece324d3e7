"""The audit log's hash chain, re-checked by a second process so a large verify uses two cores.

Verifying a log is mostly hashing: each entry's chain hash, ``SHA-256(prev_hash ‖ "\\n" ‖ body)``,
its RFC 9162 leaf and the tree's nodes — three SHA-256 per entry, none of which releases the GIL
for bodies this small. The chain hashes need nothing but the rows, so for a large log the store
starts this module as a separate interpreter that reads the rows over its own read-only
connection and checks every stored hash, while the verifying process checks the links, the
columns, the Merkle tree and the state. ``verify_chain`` still names the first bad entry of either.

It is started by path with ``python -I`` and imports nothing from gate_core (the package takes
~0.8 s to import; this starts in ~30 ms). The request arrives on stdin as one JSON object — a
PostgreSQL DSN may carry a password, so never on the command line — and the answer leaves on
stdout as one JSON line:

    {"dialect": "sqlite" | "postgresql", "database": "<file path or libpq DSN>", "from_seq": 1}
    → {"checked": n, "last_seq": s, "bad_seq": k | null, "bad_prev": "<prev_hash of k>" | null}
    → {"error": "<why the rows could not be read>"}

Both processes read the same append-only rows; entries appended meanwhile are seen by one and not
the other, which the caller settles by hashing any tail this process did not reach itself.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_SQL = "SELECT seq, body, prev_hash, hash FROM gh_audit_log WHERE seq >= {} ORDER BY seq"
_BATCH = 20_000


def entry_hash(prev_hash: str, body: str) -> str:
    """The chain hash of an entry: the one definition the writer and both verifiers use."""
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def first_mismatch(rows: Iterable[tuple[int, str, str, str]]) -> dict[str, Any]:
    """Hash every row ``(seq, body, prev_hash, hash)``; the answer names the first whose stored
    hash is not the hash of its own content (links and order are the caller's to check)."""
    checked, last_seq = 0, 0
    for seq, body, prev_hash, digest in rows:
        if entry_hash(prev_hash, body) != digest:
            return {"checked": checked, "last_seq": seq, "bad_seq": seq, "bad_prev": prev_hash}
        checked += 1
        last_seq = seq
    return {"checked": checked, "last_seq": last_seq, "bad_seq": None, "bad_prev": None}


def _sqlite_rows(path: str, from_seq: int) -> Iterator[tuple[int, str, str, str]]:
    import sqlite3

    # Read-only by URI: this process can never write, even to a file it could open read-write.
    connection = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        cursor = connection.execute(_SQL.format("?"), (from_seq,))
        while batch := cursor.fetchmany(_BATCH):
            yield from batch
    finally:
        connection.close()


def _postgres_rows(dsn: str, from_seq: int) -> Iterator[tuple[int, str, str, str]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=False) as connection:
        connection.read_only = True
        with connection.cursor(name="gh_audit_rehash") as cursor:
            cursor.itersize = _BATCH
            cursor.execute(_SQL.format("%s"), (from_seq,))
            yield from cursor


def answer(request: dict[str, Any]) -> dict[str, Any]:
    dialect, database, from_seq = request["dialect"], request["database"], int(request["from_seq"])
    if dialect == "sqlite":
        rows = _sqlite_rows(database, from_seq)
    elif dialect == "postgresql":
        rows = _postgres_rows(database, from_seq)
    else:
        return {"error": f"no reader for a {dialect!r} database"}
    return first_mismatch(rows)


class Rehash:
    """This module running in its own interpreter over one database; ``answer()`` waits for it.

    Started before the verifying process begins its own scan, so the two run side by side. Raises
    OSError when no process can be started; the caller then hashes in process."""

    def __init__(self, request: dict[str, Any]) -> None:
        self._process = subprocess.Popen(  # this interpreter, this file, no shell
            [sys.executable, "-I", str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._process.stdin is not None
        with self._process.stdin:  # one small JSON object: well under a pipe's buffer
            self._process.stdin.write(json.dumps(request).encode())
        self._answer: dict[str, Any] | None = None

    def answer(self) -> dict[str, Any]:
        """The worker's answer, or ``{"error": …}`` if it died or said something else."""
        if self._answer is None:
            assert self._process.stdout is not None
            assert self._process.stderr is not None
            out = self._process.stdout.read()
            err = self._process.stderr.read()
            code = self._process.wait()
            try:
                answer = json.loads(out)
                valid = isinstance(answer, dict) and ("error" in answer or "last_seq" in answer)
            except ValueError:
                valid = False
            if not valid:
                last = (err.decode(errors="replace").strip().splitlines() or [f"exit status {code}"])[-1]
                answer = {"error": f"the re-hashing process failed: {last}"}
            self._answer = answer
        return self._answer

    def close(self) -> None:
        """Stop the worker if nobody waited for it (the scan stopped early)."""
        if self._answer is None and self._process.poll() is None:
            self._process.kill()
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()
        self._process.wait()


def main() -> int:
    try:
        result = answer(json.loads(sys.stdin.read()))
    except Exception as exc:  # any failure is an answer: the caller then hashes in its own process
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
