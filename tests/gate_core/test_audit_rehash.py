"""A large log's verify hands the chain hashes to a second process (gate_core._hash_worker).
The tamper matrix (test_audit.py) runs in both modes; here, what only the split can get wrong:
which bad entry is named first, a helper process that fails or sees fewer entries, and where
the database's credentials travel."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gate_core import Gatekeeper, SqlStore
from gate_core._hash_worker import Rehash, first_mismatch
from gate_core.testing import actor
from tests.gate_core.conftest import prod_redeploy
from tests.gate_core.test_audit import edit_payload, fill, tamper


class RehashOf:
    """The store, with the second process pointed at another database (or at none that opens)."""

    def __init__(self, store: SqlStore, request: dict[str, Any]) -> None:
        self._store = store
        self._request = request
        self.started: list[Rehash] = []

    def rehash_elsewhere(self) -> Rehash:
        rehash = Rehash(self._request)
        self.started.append(rehash)
        return rehash

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
def split(gatekeeper: Gatekeeper) -> Gatekeeper:
    gatekeeper.audit.rehash_from = 0
    return gatekeeper


def test_an_edit_found_by_the_second_process_is_named_before_a_later_problem(split: Gatekeeper) -> None:
    fill(split)
    edit_payload(split, 5)  # only the hash shows this one: the second process finds it
    tamper(split, "UPDATE gh_audit_log SET event = 'gate.cancelled' WHERE seq = 9")  # this process does
    report = split.audit.verify()
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert "edited" in report.problem


def test_a_problem_this_process_finds_first_is_named_when_the_edit_is_later(split: Gatekeeper) -> None:
    fill(split)
    tamper(split, "UPDATE gh_audit_log SET event = 'gate.cancelled' WHERE seq = 4")
    edit_payload(split, 8)
    report = split.audit.verify()
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "columns" in report.problem


def test_a_failed_second_process_costs_time_never_a_check(
    split: Gatekeeper, store: SqlStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fill(split)
    edit_payload(split, 6)
    nowhere = RehashOf(store, {"dialect": "sqlite", "database": str(tmp_path / "absent.db"), "from_seq": 1})
    split.audit.log = nowhere
    with caplog.at_level(logging.WARNING, logger="gatehouse.audit"):
        report = split.audit.verify()
    assert (report.ok, report.first_bad_seq) == (False, 6)
    assert nowhere.started, "the second process was not asked"
    assert "hashing in this process instead" in caplog.text
    assert "unable to open database file" in caplog.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_entries_the_second_process_did_not_reach_are_hashed_here(
    split: Gatekeeper, store: SqlStore, tmp_path: Path
) -> None:
    fill(split)
    reached, _ = split.store.audit_head()
    earlier = tmp_path / "earlier.db"  # the log as the second process saw it, before the rest arrived
    source = sqlite3.connect(str(store.engine.url.database))
    with sqlite3.connect(earlier) as copy:
        source.backup(copy)
    source.close()
    gate = split.open(prod_redeploy(), submitted_by=actor("alice"))
    split.approve(gate.id, actor=actor("bob"))
    size, _ = split.store.audit_head()
    assert size > reached + 1
    edit_payload(split, size - 1)
    behind = RehashOf(store, {"dialect": "sqlite", "database": str(earlier), "from_seq": 1})
    split.audit.log = behind
    report = split.audit.verify()
    assert behind.started[0].answer()["last_seq"] == reached
    assert (report.ok, report.first_bad_seq) == (False, size - 1)


def test_the_second_process_agrees_with_an_intact_log_and_reads_every_entry(split: Gatekeeper) -> None:
    size = fill(split)
    rehash = split.store.rehash_elsewhere()
    assert rehash is not None
    try:
        answer = rehash.answer()
    finally:
        rehash.close()
    assert answer == {"checked": size, "last_seq": size, "bad_seq": None, "bad_prev": None}
    assert split.audit.verify().ok


def test_the_database_url_never_reaches_the_command_line(split: Gatekeeper, store: SqlStore) -> None:
    """A PostgreSQL URL may carry a password; another user on the host can read any process's
    argv (ps), so the request travels on stdin."""
    fill(split)
    rehash = split.store.rehash_elsewhere()
    assert rehash is not None
    rehash.close()
    argv = [str(part) for part in rehash._process.args]  # type: ignore[union-attr]
    assert argv[1:] == ["-I", str(Path(__file__).parents[2] / "gate_core" / "_hash_worker.py")]
    assert not any(str(store.engine.url.database) in part for part in argv)


def test_stopping_early_stops_the_second_process(split: Gatekeeper) -> None:
    fill(split)
    rehash = split.store.rehash_elsewhere()
    assert rehash is not None
    rehash.close()
    assert rehash._process.returncode is not None


def test_first_mismatch_names_the_first_edited_row() -> None:
    from gate_core._audit import GENESIS_HASH, chain_hash

    rows = []
    prev = GENESIS_HASH
    for seq in range(1, 6):
        body = json.dumps({"seq": seq})
        digest = chain_hash(prev, body)
        rows.append((seq, body if seq != 3 else body + " ", prev, digest))
        prev = digest
    assert first_mismatch(rows) == {"checked": 2, "last_seq": 3, "bad_seq": 3, "bad_prev": rows[2][2]}
    assert first_mismatch(rows[:2])["bad_seq"] is None
