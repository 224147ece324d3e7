"""Transactions on the shared engine: the gate core's error vocabulary, retries on contention.

The engine is the gate store's own (``SqlStore.open(url).engine`` or the running Gatekeeper's),
so SQLite gets WAL, the busy timeout and ``BEGIN IMMEDIATE``, and PostgreSQL the same pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from gate_core import StoreError, StoreUnavailable

T = TypeVar("T")
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig or exc).strip().splitlines()[0]


def _is_retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES or bool(exc.connection_invalidated)


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction. IntegrityError and retryable errors pass through for the caller."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except IntegrityError:
            raise
        except DBAPIError as exc:
            if _is_retryable(exc):
                raise
            if isinstance(exc, OperationalError):
                raise StoreUnavailable(f"database unavailable: {_first_line(exc)}") from exc
            raise StoreError(f"database error: {_first_line(exc)}") from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as connection:
                yield connection
        except DBAPIError as exc:
            raise StoreUnavailable(f"database unavailable: {_first_line(exc)}") from exc

    def retrying(self, work: Callable[[], T], attempts: int = 5) -> T:
        """Run ``work`` (one whole transaction) again when the database aborted it for contention
        or its pooled connection had died: it was rolled back, so repeating it is safe."""
        for attempt in range(attempts):
            try:
                return work()
            except DBAPIError as exc:
                if isinstance(exc, IntegrityError) or not _is_retryable(exc):
                    raise
                if attempt == attempts - 1:
                    raise StoreUnavailable(
                        f"database kept aborting the transaction: {_first_line(exc)}"
                    ) from exc
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")
