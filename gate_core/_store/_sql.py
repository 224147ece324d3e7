"""SqlStore: the GateStore port on SQLAlchemy 2 Core, for SQLite (embedded) and PostgreSQL.

Concurrency: every write is one transaction. PostgreSQL locks the gate row (``FOR UPDATE``) and,
last and briefly, the audit head row, so two replicas deciding one gate serialise on the gate and
all writers serialise only for the few statements that extend the chain. SQLite takes its single
write lock up front (``BEGIN IMMEDIATE``) and waits up to ``busy_timeout`` for it.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import TextClause

from gate_core._audit import AuditDraft, AuditEntry, Checkpoint, StoredState, Terms, chain, terms_json
from gate_core._cosign import StoredCosignature
from gate_core._errors import (
    GatehouseError,
    GateNotFound,
    InvalidInput,
    StoreError,
    StoreUnavailable,
    UnreadableRecord,
)
from gate_core._hash_worker import Rehash
from gate_core._hashing import sha256_hex
from gate_core._models import (
    ApprovalRequirement,
    Decision,
    Gate,
    GateRequest,
    GateStatus,
    Involved,
    LastReview,
    canonical_json,
)
from gate_core._passkeys import Passkey
from gate_core._ports import GateFilter, GateState, Mutation, NotificationRef, StoreFigures
from gate_core._store import _migrate
from gate_core._store._schema import (
    api_tokens,
    audit_checkpoints,
    audit_cosignatures,
    audit_head,
    audit_log,
    audit_tree,
    config_versions,
    decisions,
    gate_datasets,
    gates,
    notifications,
    passkeys,
)
from gate_core._tokens import ApiToken
from gate_core.identity import canonical_identity
from gate_core.sql import json_rows

_IDS_PER_QUERY = 10_000
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected
_INSUFFICIENT_PRIVILEGE = "42501"  # also "must be owner of table"
CHANGE_CHANNEL = "gatehouse_gate_changed"  # PostgreSQL NOTIFY channel: payload is the gate id
READ_ONLY = "gatehouse_read_only"  # execution option: this connection only reads

log = logging.getLogger("gatehouse.store")


def normalise_url(url: str) -> str:
    """Accept the URLs people paste (``postgresql://``, ``postgres://``) and use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_store_engine(url: str, *, timeout_s: float = 30.0) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        engine = create_engine(
            url,
            connect_args={"timeout": timeout_s, "check_same_thread": False},
            poolclass=StaticPool if memory else None,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            # Hand transaction control to SQLAlchemy's "begin" event below (pysqlite's own BEGIN
            # is deferred, which lets two writers deadlock on lock upgrade).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Connection) -> None:
            # Writers take the lock up front; readers take a WAL snapshot and never wait for it.
            read_only = connection.get_execution_options().get(READ_ONLY, False)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    # No pool pre-ping (a round trip per transaction): a transaction that meets a dead pooled
    # connection is retried whole instead (see _is_retryable).
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        connect_args={"connect_timeout": max(1, int(timeout_s))},
    )


def _is_retryable(exc: DBAPIError) -> bool:
    """Aborted by contention, or the pooled connection had died (server restart): the whole
    transaction was rolled back, so running it again is safe."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate in _RETRYABLE_SQLSTATES or bool(exc.connection_invalidated)


def _unavailable(exc: DBAPIError | psycopg.Error | sqlite3.Error) -> StoreUnavailable:
    """SQLAlchemy's wrapped error, or a raw cursor's own driver error (audit_rows, stored_state)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return StoreUnavailable(f"database unavailable: {first_line}")


# verify's state check reads each gate's terms (gate_core._audit.Terms). PostgreSQL extracts the
# ones kept in the context JSON itself, in C, rather than sending ~150,000 whole contexts to be
# parsed here (its JSON takes a duplicated key's last value, as json.loads does). A context or
# an expiry the database cannot read (NaN in the JSON, 'infinity') fails that statement: then,
# and always on SQLite (whose json_extract takes a duplicated key's first value), the raw columns
# are read and decoded here as the gate store decodes them (json.loads, UtcDateTime).
_PG_TERMS = (
    "SELECT id, status, run_key, binding_hash, rule, required_approvals, expires_at, "
    "(c -> 'approver_groups')::text, c ->> 'signature', (c -> 'break_glass_groups')::text, "
    "(c -> 'requirements')::text, (c -> 'identified_by')::text "
    "FROM (SELECT *, context::json AS c FROM gh_gates) AS g"
)
_RAW_TERMS = (
    "SELECT id, status, run_key, binding_hash, rule, required_approvals, CAST(expires_at AS TEXT), "
    "context FROM gh_gates"
)


def _stored_time(value: Any) -> datetime | None:
    """A stored expiry as the gate store reads it (``UtcDateTime``: naive means UTC, an offset is
    converted), or None when it cannot be read (the state check then names the gate)."""
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else value
        if not isinstance(at, datetime):
            return None
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _decoded_terms(binding: str, rule: str, quorum: int, expires: Any, context: Any) -> Terms:
    """A gate's terms from its raw columns, decoded as ``_gate_from_row`` decodes them."""
    try:
        found = orjson.loads(context)
    except orjson.JSONDecodeError:
        try:  # what only the standard library reads (NaN, lone surrogates): the store uses it
            found = json.loads(context)
        except (TypeError, ValueError):
            found = None
    found = found if isinstance(found, dict) else {}
    return Terms(
        binding,
        rule,
        quorum,
        _stored_time(expires),
        terms_json(found.get("approver_groups")),
        str(found.get("signature", "")),
        terms_json(found.get("break_glass_groups")),
        terms_json(found.get("requirements", [])),  # gates opened before requirements have none
        terms_json(found.get("identified_by", [])),
    )


class SqlStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.appended = 0  # audit entries this store has appended (the core's checkpoint cadence)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, timeout_s: float = 30.0) -> SqlStore:
        engine = create_store_engine(url, timeout_s=timeout_s)
        store = cls(engine)
        if migrate:
            try:
                _migrate.MIGRATIONS.upgrade(engine)
            except OperationalError as exc:
                raise _unavailable(exc) from exc
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != _INSUFFICIENT_PRIVILEGE:
                    raise
                engine.dispose()
                raise StoreError(
                    f"the database schema needs upgrading to {_migrate.HEAD}, and this role may not "
                    "change it (a service role only reads and appends): run `gatehouse db upgrade` with "
                    "the owner's database URL, then `gatehouse db grant-service-role ROLE` again "
                    f"({str(exc.orig).strip().splitlines()[0]})"
                ) from exc
        return store

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ transactions

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except IntegrityError:
            raise
        except OperationalError as exc:
            if _is_retryable(exc):
                raise
            raise _unavailable(exc) from exc
        except DBAPIError as exc:
            if _is_retryable(exc):
                raise
            raise StoreError(f"database error: {str(exc.orig).strip().splitlines()[0]}") from exc

    def _retrying(self, work: Callable[[], Any], attempts: int = 5) -> Any:
        for attempt in range(attempts):
            try:
                return work()
            except DBAPIError as exc:
                if not _is_retryable(exc) or attempt == attempts - 1:
                    if exc.connection_invalidated:
                        raise _unavailable(exc) from exc
                    if _is_retryable(exc):
                        raise StoreUnavailable("database kept aborting the transaction (contention)") from exc
                    raise
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
                yield connection
        except DBAPIError as exc:
            raise _unavailable(exc) from exc

    # ------------------------------------------------------------ gates

    def create_gate(self, gate: Gate, events: Sequence[AuditDraft]) -> tuple[Gate, bool]:
        raw_key = gate.request.idempotency_key
        key = None if raw_key is None else scoped_idempotency_key(gate.submitted_by, raw_key)

        def work() -> tuple[Gate, bool]:
            with self._begin() as conn:
                if key is not None:
                    existing = self._gate_by_key(conn, key)
                    if existing is not None:
                        return existing, False
                new = gate.model_copy(update={"last_review": self._last_review(conn, gate.request)})
                conn.execute(insert(gates), _gate_row(new))
                if not new.status.is_open:
                    self._announce(conn, [new.id])
                if gate.request.datasets:
                    names = {d.qualified_name for d in gate.request.datasets}
                    conn.execute(
                        insert(gate_datasets), [{"gate_id": gate.id, "qualified_name": n} for n in names]
                    )
                self._append(conn, events)
                return new, True

        try:
            result: tuple[Gate, bool] = self._retrying(work)
        except IntegrityError:
            # Another process inserted the same idempotency key between our check and insert.
            if key is None:
                raise
            with self._read() as conn:
                existing = self._gate_by_key(conn, key)
            if existing is None:
                raise
            return existing, False
        return result

    def mutate(self, gate_id: str, change: Callable[[Gate], Mutation]) -> Gate:
        [result] = self.mutate_many([(gate_id, change)])
        if isinstance(result, GatehouseError):
            raise result
        return result

    def mutate_many(
        self, changes: Sequence[tuple[str, Callable[[Gate], Mutation]]]
    ) -> list[Gate | GatehouseError]:
        """Apply many changes in ONE transaction (group commit): gates locked in id order (so
        concurrent batches cannot deadlock), each change judged against the gate as the earlier
        changes in the batch left it, then one multi-row write of decisions, gate updates and
        audit entries — one lock of the chain head and one commit for the whole batch.

        A change that raises a GatehouseError writes nothing and its error is returned in its
        place; a Mutation's ``raise_after`` is written (audited) and then returned in its place."""

        def work() -> list[Gate | GatehouseError]:
            with self._begin() as conn:
                unreadable: dict[str, UnreadableRecord] = {}
                current = self._load_many(
                    conn, sorted({gate_id for gate_id, _ in changes}), lock=True, unreadable=unreadable
                )
                locked_status = {gate_id: gate.status for gate_id, gate in current.items()}
                results: list[Gate | GatehouseError] = []
                decision_rows: list[dict[str, Any]] = []
                gate_values: dict[str, dict[str, Any]] = {}
                drafts: list[AuditDraft] = []
                for gate_id, change in changes:
                    gate = current.get(gate_id)
                    if gate is None:
                        results.append(unreadable.get(gate_id) or GateNotFound(gate_id))
                        continue
                    try:
                        mutation = change(gate)
                    except GatehouseError as refused:
                        results.append(refused)
                        continue
                    if mutation.decision is not None:
                        decision_rows.append(_decision_row(gate_id, mutation))
                    gate_values.setdefault(gate_id, {}).update(_gate_values(gate, mutation))
                    drafts.extend(mutation.events)
                    current[gate_id] = _applied(gate, mutation)
                    results.append(mutation.raise_after or current[gate_id])
                _insert_rows(conn, decisions, decision_rows)
                self._update_gates(conn, gate_values, locked_status)
                self._append(conn, drafts)
                return results

        results: list[Gate | GatehouseError] = self._retrying(work)
        return results

    def _update_gates(
        self, conn: Connection, gate_values: dict[str, dict[str, Any]], locked_status: dict[str, GateStatus]
    ) -> None:
        """Compare-and-set each changed gate on the status it was locked in, grouped so that rows
        with the same columns go in one executemany."""
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for gate_id, values in gate_values.items():
            if values:
                row = {f"new_{k}": v for k, v in values.items()}
                row |= {"b_id": gate_id, "b_status": locked_status[gate_id].value}
                by_columns.setdefault(tuple(sorted(values)), []).append(row)
        changed_status: list[str] = []
        for columns, rows in by_columns.items():
            if conn.dialect.name == "postgresql":
                updated = conn.execute(_pg_update_gates(columns), {"rows": json_rows(rows)}).rowcount
            else:
                stmt = (
                    update(gates)
                    .where(and_(gates.c.id == bindparam("b_id"), gates.c.status == bindparam("b_status")))
                    .values({c: bindparam(f"new_{c}") for c in columns})
                )
                result = conn.execute(stmt, rows)
                updated = result.rowcount if conn.dialect.supports_sane_multi_rowcount else len(rows)
            if updated != len(rows):
                raise StoreError(
                    "a gate changed underneath a locked update"
                )  # row locks make this unreachable
            if "status" in columns:
                changed_status += [r["b_id"] for r in rows]
        if changed_status:
            self._announce(conn, changed_status)

    @staticmethod
    def _announce(conn: Connection, gate_ids: Sequence[str]) -> None:
        """Tell every replica listening on PostgreSQL that these gates changed; delivered at
        commit, so a waiter never sees a change that was rolled back."""
        if conn.dialect.name == "postgresql":
            conn.execute(
                text(
                    "SELECT pg_notify(:channel, gate_id) "
                    "FROM json_array_elements_text(CAST(:ids AS json)) AS gate_id"
                ),
                {"channel": CHANGE_CHANNEL, "ids": json_rows(list(gate_ids))},
            )

    def get_gate(self, gate_id: str) -> Gate:
        with self._read() as conn:
            return self._load(conn, gate_id, lock=False)

    def list_gates(self, query: GateFilter) -> list[Gate]:
        stmt = select(gates).order_by(gates.c.created_at.desc()).limit(query.limit)
        if query.status is not None:
            stmt = stmt.where(gates.c.status == query.status.value)
        if query.action:
            stmt = stmt.where(gates.c.action == query.action)
        if query.requester:
            stmt = stmt.where(gates.c.requester == query.requester)
        if query.ids:
            stmt = stmt.where(gates.c.id.in_(query.ids))
        if query.runs:
            stmt = stmt.where(gates.c.run_key.in_(query.runs))
        if query.dataset:
            stmt = stmt.where(
                gates.c.id.in_(
                    select(gate_datasets.c.gate_id).where(gate_datasets.c.qualified_name == query.dataset)
                )
            )
        with self._read() as conn:
            rows = conn.execute(stmt).all()
            by_gate = self._decisions_for(conn, [r.id for r in rows])
        listed = []
        for row in rows:
            try:
                listed.append(_gate_from_row(row, by_gate.get(row.id, ())))
            except UnreadableRecord as exc:  # one bad row must not hide every other gate from everyone
                log.error("list skipped a row: %s", exc)
        return listed

    def gate_states(self, ids: Sequence[str]) -> dict[str, GateState]:
        found: dict[str, GateState] = {}
        columns = select(gates.c.id, gates.c.status, gates.c.expires_at)
        with self._read() as conn:
            # In chunks: SQLite caps bound parameters per statement (32,766), PostgreSQL at 65,535.
            unique = list(dict.fromkeys(ids))
            for start in range(0, len(unique), _IDS_PER_QUERY):
                chunk = unique[start : start + _IDS_PER_QUERY]
                for row in conn.execute(columns.where(gates.c.id.in_(chunk))):
                    found[row.id] = GateState(GateStatus(row.status), row.expires_at)
        return found

    def due_for_expiry(self, now: datetime, limit: int = 500) -> list[str]:
        stmt = (
            select(gates.c.id)
            .where(and_(gates.c.status == GateStatus.PENDING.value, gates.c.expires_at <= now))
            .order_by(gates.c.expires_at)
            .limit(limit)
        )
        with self._read() as conn:
            return list(conn.execute(stmt).scalars())

    def claim_reminders(self, now: datetime, limit: int = 100) -> list[str]:
        """Pending gates whose reminder is due, each claimed by exactly one caller (CAS on reminded_at)."""
        due = and_(
            gates.c.status == GateStatus.PENDING.value,
            gates.c.remind_at <= now,
            gates.c.reminded_at.is_(None),
            gates.c.expires_at > now,
        )
        with self._read() as conn:
            candidates = list(conn.execute(select(gates.c.id).where(due).limit(limit)).scalars())
        claimed = []
        for gate_id in candidates:
            with self._begin() as conn:
                result = conn.execute(
                    update(gates)
                    .where(and_(gates.c.id == gate_id, gates.c.reminded_at.is_(None)))
                    .values(reminded_at=now)
                )
                if result.rowcount == 1:
                    claimed.append(gate_id)
        return claimed

    @staticmethod
    def _last_review(conn: Connection, request: GateRequest) -> LastReview | None:
        """When this action on this target was last decided by people (not by policy)."""
        stmt = (
            select(gates.c.id, gates.c.status, gates.c.decided_at, gates.c.decided_by)
            .where(
                and_(
                    gates.c.action == request.action,
                    gates.c.target == request.target,
                    gates.c.decided_at.is_not(None),
                    gates.c.decided_by != "[]",
                )
            )
            .order_by(gates.c.decided_at.desc())
            .limit(1)
        )
        row = conn.execute(stmt).first()
        if row is None:
            return None
        return LastReview(
            gate_id=row.id,
            status=GateStatus(row.status),
            decided_at=row.decided_at,
            decided_by=tuple(json.loads(row.decided_by)),
        )

    def _gate_by_key(self, conn: Connection, key: str) -> Gate | None:
        gate_id = conn.execute(select(gates.c.id).where(gates.c.idempotency_key == key)).scalar()
        return None if gate_id is None else self._load(conn, gate_id, lock=False)

    def _load(self, conn: Connection, gate_id: str, *, lock: bool) -> Gate:
        gate = self._load_many(conn, [gate_id], lock=lock).get(gate_id)
        if gate is None:
            raise GateNotFound(gate_id)
        return gate

    def _load_many(
        self,
        conn: Connection,
        gate_ids: Sequence[str],
        *,
        lock: bool,
        unreadable: dict[str, UnreadableRecord] | None = None,
    ) -> dict[str, Gate]:
        """The gates by id. A row no reader can parse raises, or, given ``unreadable``, is put
        there instead so that one bad row in a batch does not refuse every other gate's change."""
        stmt = select(gates).where(gates.c.id.in_(gate_ids)).order_by(gates.c.id)
        if lock:
            stmt = stmt.with_for_update()
        rows = conn.execute(stmt).all()
        by_gate = self._decisions_for(conn, [r.id for r in rows])
        loaded: dict[str, Gate] = {}
        for row in rows:
            try:
                loaded[row.id] = _gate_from_row(row, by_gate.get(row.id, ()))
            except UnreadableRecord as exc:
                if unreadable is None:
                    raise
                unreadable[row.id] = exc
        return loaded

    @staticmethod
    def _decisions_for(conn: Connection, gate_ids: Sequence[str]) -> dict[str, tuple[Decision, ...]]:
        if not gate_ids:
            return {}
        rows = conn.execute(
            select(decisions).where(decisions.c.gate_id.in_(gate_ids)).order_by(decisions.c.id)
        ).all()
        out: dict[str, list[Decision]] = {}
        for r in rows:
            out.setdefault(r.gate_id, []).append(
                Decision(
                    principal_id=r.principal_id,
                    email=r.email,
                    display_name=r.display_name,
                    verdict=r.verdict,
                    comment=r.comment,
                    at=r.at,
                    via=r.via,
                    break_glass=r.break_glass,
                    counts_for=r.counts_for,
                    issuer=r.issuer,
                    subject=r.subject,
                    passkey=r.passkey,
                )
            )
        return {k: tuple(v) for k, v in out.items()}

    # ------------------------------------------------------------ audit

    def _append(self, conn: Connection, events: Sequence[AuditDraft]) -> list[AuditEntry]:
        if not events:
            return []
        head = conn.execute(
            select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
        ).one()
        entries = chain(head.seq, head.hash, events)
        _insert_rows(
            conn,
            audit_log,
            [
                {
                    "seq": e.seq,
                    "at": e.at,
                    "event": e.event,
                    "actor": e.actor,
                    "gate_id": e.gate_id,
                    "body": e.body,
                    "prev_hash": e.prev_hash,
                    "hash": e.hash,
                }
                for e in entries
            ],
        )
        conn.execute(
            update(audit_head).where(audit_head.c.id == 1).values(seq=entries[-1].seq, hash=entries[-1].hash)
        )
        self.appended += len(entries)
        return entries

    def append_audit(self, events: Sequence[AuditDraft]) -> list[AuditEntry]:
        def work() -> list[AuditEntry]:
            with self._begin() as conn:
                return self._append(conn, events)

        return self._retrying(work)  # type: ignore[no-any-return]

    def audit_head(self) -> tuple[int, str]:
        with self._read() as conn:
            row = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one()
        return int(row.seq), str(row.hash)

    def audit_rows(
        self, from_seq: int = 1, batch: int = 20_000
    ) -> Generator[tuple[int, str, str | None, str, str, str]]:
        """Every entry ``(seq, event, gate_id, body, prev_hash, hash)`` from ``from_seq`` on, in
        seq order, streamed.

        Verification reads the whole log, so this bypasses SQLAlchemy's Row objects (most of the
        cost at a million entries) and streams plain DBAPI tuples: a server-side cursor on
        PostgreSQL, a plain cursor on SQLite — constant memory either way."""
        sql = (
            "SELECT seq, event, gate_id, body, prev_hash, hash FROM gh_audit_log WHERE seq >= {} ORDER BY seq"
        )
        try:
            with self.engine.connect() as conn:
                dbapi: Any = conn.connection.dbapi_connection
                if conn.dialect.name == "postgresql":
                    cursor = dbapi.cursor(name="gh_audit_rows")
                    cursor.itersize = batch
                    placeholder = "%s"
                else:
                    cursor = dbapi.cursor()
                    cursor.arraysize = batch
                    placeholder = "?"
                try:
                    cursor.execute(sql.format(placeholder), (from_seq,))
                    while rows := cursor.fetchmany(batch):
                        yield from rows
                finally:
                    cursor.close()
        except DBAPIError as exc:
            raise _unavailable(exc) from exc
        except (psycopg.Error, sqlite3.Error) as exc:  # raw cursors: the driver's own errors
            raise _unavailable(exc) from exc

    def rehash_elsewhere(self) -> Rehash | None:
        """The log's chain hashes re-checked by another process over its own connection
        (``gate_core._hash_worker``), or None where one cannot reach this database (in memory)
        or cannot be started — the caller then hashes in process."""
        url = self.engine.url
        if self.dialect == "sqlite":
            if url.database in (None, "", ":memory:"):
                return None
            database = str(Path(url.database).resolve())
        else:
            database = url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            return Rehash({"dialect": self.dialect, "database": database, "from_seq": 1})
        except OSError:
            return None

    def audit_entries(self, after_seq: int = 0) -> Iterator[AuditEntry]:
        with self._read() as conn:
            result = conn.execute(
                select(audit_log).where(audit_log.c.seq > after_seq).order_by(audit_log.c.seq)
            )
            for r in result:
                yield AuditEntry(r.seq, r.at, r.event, r.actor, r.gate_id, r.body, r.prev_hash, r.hash)

    def stored_state(self) -> StoredState:
        """Every gate's status and its decisions counted by verdict, for the state check (read
        as plain DBAPI tuples, no Row objects: a million-entry log has ~150,000 gates and
        ~250,000 decisions, read twice by verify)."""
        with self._read() as conn:
            dbapi: Any = conn.connection.dbapi_connection
            cursor = dbapi.cursor()
            try:
                statuses: dict[str, str] = {}
                runs: dict[str, str | None] = {}
                terms: dict[str, Terms] = {}
                for gate_id, status, key, gate_terms in self._gate_terms(dbapi, cursor):
                    statuses[gate_id] = status
                    runs[gate_id] = key
                    terms[gate_id] = gate_terms
                cursor.execute(
                    "SELECT gate_id, verdict, count(*) FROM gh_decisions GROUP BY gate_id, verdict"
                )
                counted = {(g, v): int(n) for g, v, n in cursor.fetchall()}
            except (psycopg.Error, sqlite3.Error) as exc:  # a raw cursor: the driver's own errors
                raise _unavailable(exc) from exc
            finally:
                cursor.close()
        return StoredState(statuses, counted, runs=runs, terms=terms)

    def _gate_terms(self, dbapi: Any, cursor: Any) -> Iterator[tuple[str, str, str | None, Terms]]:
        """(id, status, run key, terms) of every gate, for ``stored_state``."""
        if self.engine.dialect.name == "postgresql":
            try:
                cursor.execute(_PG_TERMS)
                rows = cursor.fetchall()
            except psycopg.DataError:
                dbapi.rollback()  # a value the database cannot read: decode the raw columns here
            else:
                for gate_id, status, key, binding, rule, quorum, expires, *context in rows:
                    groups, signature, glass, requirements, identified_by = context
                    at = _stored_time(expires)
                    stored = Terms(
                        binding, rule, quorum, at, groups, signature or "", glass, requirements, identified_by
                    )
                    yield gate_id, status, key, stored
                return
        cursor.execute(_RAW_TERMS)
        for gate_id, status, key, binding, rule, quorum, expires, context in cursor.fetchall():
            yield gate_id, status, key, _decoded_terms(binding, rule, quorum, expires, context)

    def figures(self, expiring_before: datetime) -> StoreFigures:
        """One read-only snapshot: gates by status and rule (a GROUP BY over the status index),
        undecided PENDING gates expiring before ``expiring_before``, the audit head and the newest
        checkpoint."""
        undecided = ~select(decisions.c.id).where(decisions.c.gate_id == gates.c.id).exists()
        with self._read() as conn:
            by_status = conn.execute(
                select(gates.c.status, gates.c.rule, func.count()).group_by(gates.c.status, gates.c.rule)
            ).all()
            expiring = conn.execute(
                select(gates.c.rule, func.count())
                .where(
                    gates.c.status == GateStatus.PENDING.value,
                    gates.c.expires_at <= expiring_before,
                    undecided,
                )
                .group_by(gates.c.rule)
            ).all()
            head = conn.execute(select(audit_head.c.seq).where(audit_head.c.id == 1)).scalar_one_or_none()
            newest = conn.execute(
                select(audit_checkpoints.c.size, audit_checkpoints.c.at)
                .order_by(audit_checkpoints.c.size.desc(), audit_checkpoints.c.id.desc())
                .limit(1)
            ).one_or_none()
        counted: dict[tuple[GateStatus, str], int] = {}
        for status, rule, n in by_status:
            try:
                key = (GateStatus(status), str(rule))
            except ValueError:  # a status no version wrote: left out, never a failed scrape
                continue
            counted[key] = counted.get(key, 0) + int(n)
        return StoreFigures(
            gates=counted,
            expiring_undecided={str(rule): int(n) for rule, n in expiring},
            audit_entries=int(head or 0),
            checkpoint_size=int(newest.size) if newest is not None else 0,
            checkpoint_at=newest.at if newest is not None else None,
        )

    def audit_count(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())

    def checkpoints(self) -> list[Checkpoint]:
        with self._read() as conn:
            rows = conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.id)).all()
        return [Checkpoint(r.size, r.head_hash, r.at, r.key_id, r.signature, r.root) for r in rows]

    def latest_checkpoints(self, limit: int) -> list[Checkpoint]:
        """The ``limit`` largest checkpoints, largest first (a signer finding where it left off)."""
        stmt = (
            select(audit_checkpoints)
            .order_by(audit_checkpoints.c.size.desc(), audit_checkpoints.c.id.desc())
            .limit(limit)
        )
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        return [Checkpoint(r.size, r.head_hash, r.at, r.key_id, r.signature, r.root) for r in rows]

    def add_checkpoint(self, checkpoint: Checkpoint, nodes: Sequence[tuple[int, int, bytes]] = ()) -> None:
        """Store a checkpoint and the Merkle tree nodes its root completed, in one transaction: a
        stored root always has its nodes. A node already there is kept (another replica's signer
        wrote the same hash; an edited one is for verify to report, never for a signer to mend)."""
        with self._begin() as conn:
            if nodes:
                rows = [{"level": level, "idx": index, "hash": digest} for level, index, digest in nodes]
                for start in range(0, len(rows), _IDS_PER_QUERY):
                    conn.execute(_insert_new_nodes(conn), rows[start : start + _IDS_PER_QUERY])
            conn.execute(
                insert(audit_checkpoints),
                {
                    "size": checkpoint.size,
                    "head_hash": checkpoint.head_hash,
                    "at": checkpoint.at,
                    "key_id": checkpoint.key_id,
                    "signature": checkpoint.signature,
                    "root": checkpoint.root,
                },
            )

    def tree_nodes(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Stored Merkle nodes by ``(level, index)``; absent ones are left out. On a proof's hot
        path: one primary-key lookup per key, OR-ed (a row-value IN list is no index lookup on
        SQLite), as driver SQL (building the expression cost more than running it)."""
        if not keys:
            return {}
        with self._read() as conn:
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            term = f"(level = {mark} AND idx = {mark})"
            sql = f"SELECT level, idx, hash FROM gh_audit_tree WHERE {' OR '.join([term] * len(keys))}"  # noqa: S608 - placeholders only
            found = conn.exec_driver_sql(sql, tuple(v for key in keys for v in key)).all()
        return {(int(level), int(index)): bytes(digest) for level, index, digest in found}

    def tree_rows(self) -> Iterator[tuple[int, int, bytes]]:
        """Every stored Merkle node ``(level, index, hash)``, by level then index (for verify)."""
        sql = "SELECT level, idx, hash FROM gh_audit_tree ORDER BY level, idx"
        with self._read() as conn:
            for level, index, digest in conn.exec_driver_sql(sql):
                yield int(level), int(index), bytes(digest)

    def audit_bodies(self, first_seq: int, last_seq: int) -> dict[int, str]:
        """The bodies of entries ``first_seq``…``last_seq`` (a block of the tree), by seq."""
        with self._read() as conn:
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            sql = f"SELECT seq, body FROM gh_audit_log WHERE seq BETWEEN {mark} AND {mark}"  # noqa: S608
            found = conn.exec_driver_sql(sql, (first_seq, last_seq)).all()
        return {int(seq): str(body) for seq, body in found}

    def add_cosignatures(self, cosignatures: Sequence[StoredCosignature], at: datetime) -> None:
        if not cosignatures:
            return
        with self._begin() as conn:
            conn.execute(
                insert(audit_cosignatures),
                [
                    {
                        "size": c.size,
                        "root": base64.b64encode(c.root).decode(),
                        "witness": c.witness,
                        "key_id": c.key_id.hex(),
                        "cosigned_at": c.cosigned_at,
                        "line": c.line,
                        "note": c.note,
                        "received_at": at,
                    }
                    for c in cosignatures
                ],
            )

    def cosignatures(self, size: int | None = None) -> list[StoredCosignature]:
        """Stored cosignatures, oldest first; only those on the checkpoint of ``size`` if given."""
        c = audit_cosignatures.c
        query = select(c.size, c.root, c.witness, c.key_id, c.cosigned_at, c.line, c.note).order_by(c.id)
        if size is not None:
            query = query.where(c.size == size)
        with self._read() as conn:
            rows = conn.execute(query).all()
        out = []
        for r in rows:
            try:
                root, key = base64.b64decode(r.root, validate=True), bytes.fromhex(r.key_id)
            except ValueError:
                continue  # an unreadable row proves nothing; verify counts only what verifies
            out.append(
                StoredCosignature(int(r.size), root, r.witness, key, int(r.cosigned_at), r.line, r.note)
            )
        return out

    def cosigned_sizes(self) -> dict[str, int]:
        """The largest size each witness has a stored cosignature for."""
        column = audit_cosignatures.c
        with self._read() as conn:
            rows = conn.execute(select(column.witness, func.max(column.size)).group_by(column.witness)).all()
        return {str(w): int(n) for w, n in rows}

    def record_config(self, kind: str, content_hash: str, source: str, content: str, at: datetime) -> bool:
        key = and_(config_versions.c.kind == kind, config_versions.c.hash == content_hash)
        with self._read() as conn:
            if conn.execute(select(config_versions.c.hash).where(key)).first():
                return False
        try:
            with self._begin() as conn:
                conn.execute(
                    insert(config_versions),
                    {
                        "kind": kind,
                        "hash": content_hash,
                        "source": source,
                        "content": content,
                        "loaded_at": at,
                    },
                )
        except IntegrityError:
            return False  # another process recorded the same policy a moment ago
        return True

    # ------------------------------------------------------------ API tokens

    def add_token(self, token: ApiToken, secret_hash: str, events: Sequence[AuditDraft]) -> None:
        with self._begin() as conn:
            conn.execute(insert(api_tokens), {**token.model_dump(), "secret_hash": secret_hash})
            self._append(conn, events)

    def get_token(self, token_id: str) -> tuple[ApiToken, str] | None:
        with self._read() as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
        if row is None:
            return None
        data = row._asdict()
        secret_hash = data.pop("secret_hash")
        return ApiToken.model_validate(data), secret_hash

    def list_tokens(self) -> list[ApiToken]:
        with self._read() as conn:
            rows = conn.execute(select(api_tokens).order_by(api_tokens.c.created_at)).all()
        return [
            ApiToken.model_validate({k: v for k, v in r._asdict().items() if k != "secret_hash"})
            for r in rows
        ]

    def revoke_token(self, token_id: str, at: datetime, events: Sequence[AuditDraft]) -> bool:
        with self._begin() as conn:
            result = conn.execute(
                update(api_tokens)
                .where(and_(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None)))
                .values(revoked_at=at)
            )
            if result.rowcount != 1:
                return False
            self._append(conn, events)
            return True

    # ------------------------------------------------------------ passkeys

    def add_passkey(self, key: Passkey, events: Sequence[AuditDraft]) -> None:
        """Keep a new passkey with its audit events; InvalidInput if the credential is known."""
        try:
            self._add_passkey(key, events)
        except IntegrityError:
            raise InvalidInput(
                "this passkey is already registered (a removed passkey cannot be registered again)"
            ) from None

    def _add_passkey(self, key: Passkey, events: Sequence[AuditDraft]) -> None:
        with self._begin() as conn:
            conn.execute(
                insert(passkeys),
                {
                    "credential_id": key.credential_id,
                    "principal_id": key.principal_id,
                    "name": key.name,
                    "public_key": key.public_key,
                    "sign_count": key.sign_count,
                    "rp_id": key.rp_id,
                    "origin": key.origin,
                    "created_at": key.created_at,
                },
            )
            self._append(conn, events)

    def passkeys_of(self, principal_id: str) -> list[Passkey]:
        query = (
            select(passkeys)
            .where(and_(passkeys.c.principal_id == principal_id, passkeys.c.removed_at.is_(None)))
            .order_by(passkeys.c.created_at)
        )
        with self._read() as conn:
            return [Passkey(**row._asdict()) for row in conn.execute(query).all()]

    def get_passkey(self, credential_id: str) -> Passkey | None:
        query = select(passkeys).where(
            and_(passkeys.c.credential_id == credential_id, passkeys.c.removed_at.is_(None))
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else Passkey(**row._asdict())

    def remove_passkeys(
        self, principal_id: str, credential_id: str | None, at: datetime, events: Sequence[AuditDraft]
    ) -> int:
        """Mark one passkey (or, with None, all of a person's) removed; the events only if any was."""
        where = and_(passkeys.c.principal_id == principal_id, passkeys.c.removed_at.is_(None))
        if credential_id is not None:
            where = and_(where, passkeys.c.credential_id == credential_id)
        with self._begin() as conn:
            removed = conn.execute(update(passkeys).where(where).values(removed_at=at)).rowcount
            if removed:
                self._append(conn, events)
            return int(removed)

    def advance_sign_count(self, credential_id: str, previous: int, new: int) -> bool:
        """Compare-and-set: two decisions signed with one counter value cannot both advance it."""
        with self._begin() as conn:
            result = conn.execute(
                update(passkeys)
                .where(and_(passkeys.c.credential_id == credential_id, passkeys.c.sign_count == previous))
                .values(sign_count=new)
            )
            return bool(result.rowcount == 1)

    def rename_passkey(self, principal_id: str, credential_id: str, name: str) -> bool:
        with self._begin() as conn:
            result = conn.execute(
                update(passkeys)
                .where(
                    and_(
                        passkeys.c.credential_id == credential_id,
                        passkeys.c.principal_id == principal_id,
                        passkeys.c.removed_at.is_(None),
                    )
                )
                .values(name=name)
            )
            return bool(result.rowcount == 1)

    # ------------------------------------------------------------ notification references

    def add_notification(self, ref: NotificationRef) -> None:
        with self._begin() as conn:
            conn.execute(insert(notifications), ref.model_dump())

    def notifications_for(self, gate_id: str) -> list[NotificationRef]:
        with self._read() as conn:
            rows = conn.execute(
                select(notifications).where(notifications.c.gate_id == gate_id).order_by(notifications.c.id)
            ).all()
        return [
            NotificationRef.model_validate({k: v for k, v in r._asdict().items() if k != "id"}) for r in rows
        ]


def _insert_new_nodes(conn: Connection) -> Any:
    """INSERT into gh_audit_tree that keeps a node already stored (ON CONFLICT DO NOTHING)."""
    if conn.dialect.name == "postgresql":
        return postgresql_insert(audit_tree).on_conflict_do_nothing()
    return sqlite_insert(audit_tree).on_conflict_do_nothing()


def scoped_idempotency_key(submitted_by: str, key: str) -> str:
    """What the unique ``idempotency_key`` column holds: the key within its submitter's scope
    (SHA-256 of the canonical submitter id and the key), so one principal's key never finds
    another principal's gate, and nobody can take a pipeline's key first (issue 14)."""
    return sha256_hex(f"{canonical_identity(submitted_by)}\x00{key}")


def _gate_row(gate: Gate) -> dict[str, Any]:
    req = gate.request
    return {
        "id": gate.id,
        "idempotency_key": (
            None
            if req.idempotency_key is None
            else scoped_idempotency_key(gate.submitted_by, req.idempotency_key)
        ),
        "status": gate.status.value,
        "action": req.action,
        "target": req.target,
        "environment": req.environment,
        "requester": req.requester,
        "submitted_by": gate.submitted_by,
        "binding_hash": gate.binding_hash,
        "policy_hash": gate.policy_hash,
        "rule": gate.rule,
        "required_approvals": gate.required_approvals,
        "request": canonical_json(req.model_dump(mode="json")),
        "run_key": req.run.key(),
        "context": canonical_json(
            {
                "matched_rules": list(gate.matched_rules),
                "explanation": gate.explanation,
                "approver_groups": list(gate.approver_groups),
                "break_glass_groups": list(gate.break_glass_groups),
                "notify": list(gate.notify),
                "requester_identities": list(gate.requester_identities),
                "involved": [i.model_dump(mode="json") for i in gate.involved],
                "identified_by": list(gate.identified_by),
                "signature": gate.signature,
                "last_review": gate.last_review.model_dump(mode="json") if gate.last_review else None,
                "tag_sources": gate.tag_sources,
                "requirements": [r.model_dump(mode="json") for r in gate.requirements],
            }
        ),
        "created_at": gate.created_at,
        "expires_at": gate.expires_at,
        "remind_at": gate.remind_at,
        "decided_at": gate.decided_at,
        "decided_by": canonical_json(list(gate.decided_by)),
        "consumed_at": gate.consumed_at,
    }


def _insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (the same keys in each). On PostgreSQL a batch is one statement over one
    JSON parameter turned into the table's row type (``gate_core.sql.json_rows``); elsewhere,
    and for one row, an executemany."""
    if not rows:
        return
    if conn.dialect.name != "postgresql" or len(rows) == 1:
        conn.execute(insert(table), rows)
        return
    conn.execute(_pg_insert(table.name, tuple(rows[0])), {"rows": json_rows(rows)})


@functools.cache
def _pg_insert(table: str, columns: tuple[str, ...]) -> TextClause:
    names = ", ".join(columns)
    return text(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM "  # noqa: S608 - our own table and columns
        f"json_populate_recordset(CAST(NULL AS {table}), CAST(:rows AS json))"
    )


@functools.cache
def _pg_update_gates(columns: tuple[str, ...]) -> TextClause:
    """Compare-and-set of many gates in one statement: each JSON row holds ``b_id``, ``b_status``
    (the status it was locked in) and ``new_<column>`` values, as the executemany form binds them.
    The row is found by its key written straight from the JSON (an index probe per row): a
    condition through the populated record is opaque to the planner, which then hash-joins a
    scan of the whole table."""
    assignments = ", ".join(f"{c} = r.{c}" for c in columns)
    values = ", ".join(f"'{c}', j -> 'new_{c}'" for c in columns)
    return text(
        f"UPDATE {gates.name} AS g SET {assignments} "  # noqa: S608 - our own table and columns
        "FROM json_array_elements(CAST(:rows AS json)) AS j, "
        f"json_populate_record(CAST(NULL AS {gates.name}), json_build_object({values})) AS r "
        "WHERE g.id = j ->> 'b_id' AND g.status = j ->> 'b_status'"
    )


def _gate_from_row(row: Row[Any], gate_decisions: Sequence[Decision]) -> Gate:
    """The stored gate, or UnreadableRecord naming it. The request is parsed by the standard
    library, not pydantic's JSON parser, whose 200-level recursion limit made rows written before
    the write limits (gate_core._limits) unreadable."""
    try:
        return _parse_row(row, gate_decisions)
    except (ValueError, TypeError, KeyError, RecursionError) as exc:  # ValidationError is a ValueError
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnreadableRecord(row.id, problem) from exc


def _parse_row(row: Row[Any], gate_decisions: Sequence[Decision]) -> Gate:
    context = json.loads(row.context)
    return Gate(
        id=row.id,
        status=GateStatus(row.status),
        request=GateRequest.model_validate(json.loads(row.request)),
        submitted_by=row.submitted_by,
        requester_identities=tuple(context["requester_identities"]),
        involved=tuple(Involved.model_validate(i) for i in context.get("involved", ())),
        identified_by=tuple(context.get("identified_by", ())),
        signature=str(context.get("signature", "")),
        binding_hash=row.binding_hash,
        policy_hash=row.policy_hash,
        rule=row.rule,
        matched_rules=tuple(context["matched_rules"]),
        explanation=context["explanation"],
        required_approvals=row.required_approvals,
        approver_groups=tuple(context["approver_groups"]),
        break_glass_groups=tuple(context["break_glass_groups"]),
        notify=tuple(context["notify"]),
        created_at=row.created_at,
        expires_at=row.expires_at,
        remind_at=row.remind_at,
        decided_at=row.decided_at,
        decided_by=tuple(json.loads(row.decided_by)),
        consumed_at=row.consumed_at,
        decisions=tuple(gate_decisions),
        last_review=LastReview.model_validate(context["last_review"]) if context["last_review"] else None,
        tag_sources=context.get("tag_sources", {}),  # gates opened before issue 16 have none
        requirements=tuple(ApprovalRequirement.model_validate(r) for r in context.get("requirements", ())),
    )


def _gate_values(gate: Gate, mutation: Mutation) -> dict[str, Any]:
    """The columns a mutation changes."""
    values: dict[str, Any] = {}
    if mutation.status is not None and mutation.status is not gate.status:
        values["status"] = mutation.status.value
    if mutation.decided_at is not None:
        values["decided_at"] = mutation.decided_at
    if mutation.decided_by is not None:
        values["decided_by"] = canonical_json(list(mutation.decided_by))
    if mutation.consumed_at is not None:
        values["consumed_at"] = mutation.consumed_at
    return values


def _applied(gate: Gate, mutation: Mutation) -> Gate:
    """The gate as the mutation leaves it — what a re-read inside the transaction would return."""
    changes: dict[str, Any] = {}
    if mutation.status is not None:
        changes["status"] = mutation.status
    if mutation.decided_at is not None:
        changes["decided_at"] = mutation.decided_at
    if mutation.decided_by is not None:
        changes["decided_by"] = mutation.decided_by
    if mutation.consumed_at is not None:
        changes["consumed_at"] = mutation.consumed_at
    if mutation.decision is not None:
        changes["decisions"] = (*gate.decisions, mutation.decision)
    return gate.model_copy(update=changes) if changes else gate


def _decision_row(gate_id: str, mutation: Mutation) -> dict[str, Any]:
    decision = mutation.decision
    assert decision is not None
    assert mutation.person_key is not None
    return {
        "gate_id": gate_id,
        "principal_id": decision.principal_id,
        "person_key": mutation.person_key,
        "email": decision.email,
        "display_name": decision.display_name,
        "verdict": decision.verdict.value,
        "comment": decision.comment,
        "at": decision.at,
        "via": decision.via.value,
        "break_glass": decision.break_glass,
        "counts_for": decision.counts_for,
        "issuer": decision.issuer,
        "subject": decision.subject,
        "passkey": decision.passkey,
    }
