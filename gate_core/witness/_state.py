"""The witness's memory: for each log origin, the latest checkpoint it cosigned.

SQLite in the witness's own home (another machine or account than the log's), written with
``synchronous=FULL`` so an answered cosignature survives a crash. The check of the old size and the
update happen in one ``BEGIN IMMEDIATE`` transaction: two concurrent submissions can never roll the
stored size back (tlog-witness's race). Refused submissions whose log signature was valid are kept
too: they may be the evidence of a log that rewrote its history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gate_core._merkle import EMPTY_ROOT

_SCHEMA = """
CREATE TABLE IF NOT EXISTS latest (
    origin     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    at     TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    body   TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Latest:
    size: int
    root: bytes
    note: str


NOTHING_YET = Latest(0, EMPTY_ROOT, "")


class WitnessState:
    def __init__(self, path: Path) -> None:
        self.path = path
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @contextmanager
    def update(self, origin: str) -> Iterator[tuple[Latest, list[Latest]]]:
        """Hold the write lock while the caller checks the stored checkpoint; whatever it appends
        to the yielded list becomes the new latest, committed (and fsynced) before this returns."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT size, root, note FROM latest WHERE origin = ?", (origin,)).fetchone()
            current = Latest(int(row[0]), bytes(row[1]), str(row[2])) if row else NOTHING_YET
            new: list[Latest] = []
            yield current, new
            if new:
                conn.execute(
                    "INSERT INTO latest (origin, size, root, note, updated_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, "
                    "note = excluded.note, updated_at = excluded.updated_at",
                    (origin, new[-1].size, new[-1].root, new[-1].note, datetime.now(UTC).isoformat()),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def refused(self, origin: str, status: int, reason: str, body: str) -> None:
        conn = self._connect()
        try:
            conn.execute(
                "INSERT INTO refused (origin, at, status, reason, body) VALUES (?, ?, ?, ?, ?)",
                (origin, datetime.now(UTC).isoformat(), status, reason, body),
            )
        finally:
            conn.close()

    def latest(self) -> dict[str, Latest]:
        conn = self._connect()
        try:
            rows = conn.execute("SELECT origin, size, root, note FROM latest ORDER BY origin").fetchall()
        finally:
            conn.close()
        return {str(r[0]): Latest(int(r[1]), bytes(r[2]), str(r[3])) for r in rows}

    def refusals(self) -> list[tuple[str, int, str]]:
        conn = self._connect()
        try:
            rows = conn.execute("SELECT origin, status, reason FROM refused ORDER BY id").fetchall()
        finally:
            conn.close()
        return [(str(r[0]), int(r[1]), str(r[2])) for r in rows]
