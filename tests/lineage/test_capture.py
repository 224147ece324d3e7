"""pandas capture: schema, rows and bytes from metadata alone; the fingerprint only when asked."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from lineage import AccessEvent, track_dataframe
from lineage.testing import recording


class Poison:
    """A cell that fails loudly if anything reads it: hashing, comparing, printing, sizing."""

    def __hash__(self) -> int:
        raise AssertionError("a cell was hashed")

    def __eq__(self, other: object) -> bool:
        raise AssertionError("a cell was compared")

    def __repr__(self) -> str:
        raise AssertionError("a cell was printed")

    __str__ = __repr__

    def __sizeof__(self) -> int:
        raise AssertionError("a cell was measured")


def test_schema_rows_and_shallow_bytes() -> None:
    df = pd.DataFrame(
        {
            "id": np.arange(3, dtype="int64"),
            "email": ["a@x", "b@x", "c@x"],
            "score": [0.5, 1.5, 2.5],
            "tier": pd.Categorical(["gold", "silver", "gold"]),
            "seen": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"]).tz_localize("UTC"),
            "sparse": pd.arrays.SparseArray([0, 0, 987654321]),
        }
    )
    with recording() as sink:
        event = track_dataframe(df, dataset="warehouse/customers", operation="read")
    assert sink.events == [event]
    types = {c.name: c.type for c in event.columns}
    assert types["id"] == "int64" and types["score"] == "float64"
    assert types["email"] in ("str", "object")
    assert types["tier"] == "category"  # never the categories: those are values
    assert types["sparse"] == "Sparse[int64]"  # never the fill value
    assert types["seen"].startswith("datetime64[") and "UTC" in types["seen"]
    assert event.row_count == 3
    assert event.bytes == int(df.memory_usage(index=True, deep=False).sum())
    assert event.fingerprint is None
    assert "pii" in event.tags and "email" in {t for c in event.columns for t in c.tags}


def test_capture_never_touches_a_cell() -> None:
    df = pd.DataFrame({"payload": np.array([Poison() for _ in range(1000)], dtype=object), "n": range(1000)})
    with recording() as sink:
        event = track_dataframe(df, dataset="lake/poison", operation="write")
    assert sink.events[0].row_count == 1000 and event.bytes and event.bytes >= 8 * 1000


def test_capture_of_a_million_rows_reads_only_metadata() -> None:
    """A sanity check, not a timing: one column of 10⁶ rows goes through the same O(columns) path."""
    df = pd.DataFrame({"v": np.zeros(1_000_000)})
    with recording() as sink:
        track_dataframe(df, dataset="lake/big", operation="read")
    assert sink.events[0].row_count == 1_000_000
    assert sink.events[0].bytes == 8_000_000 + int(df.index.memory_usage())


def test_odd_column_labels_become_names() -> None:
    df = pd.DataFrame(np.zeros((2, 3)), columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", "")]))
    with recording() as sink:
        track_dataframe(df, dataset="lake/multi", operation="read")
    assert [c.name for c in sink.events[0].columns] == ["a.1", "a.2", "b."]
    with recording() as sink:
        track_dataframe(pd.DataFrame({0: [1], "": [2]}), dataset="lake/odd", operation="read")
    assert [c.name for c in sink.events[0].columns] == ["0", "(unnamed)"]


def test_fingerprint_is_opt_in_deterministic_and_content_sensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    df = pd.DataFrame({"id": [1, 2, 3], "email": ["a@x", "b@x", "c@x"]})

    def fingerprint(frame: pd.DataFrame) -> str:
        with recording() as sink:
            event: AccessEvent = track_dataframe(frame, dataset="w/c", operation="read", fingerprint=True)
        assert sink.events[0].fingerprint == event.fingerprint
        assert event.fingerprint is not None
        return event.fingerprint

    first = fingerprint(df)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first)
    assert fingerprint(df.copy()) == first
    changed = df.copy()
    changed.loc[1, "email"] = "b@y"
    assert fingerprint(changed) != first
    assert fingerprint(df.rename(columns={"email": "mail"})) != first  # the schema is covered too
    assert fingerprint(df.iloc[[1, 0, 2]]) != first  # and the order

    monkeypatch.setenv("GATEHOUSE_LINEAGE_FINGERPRINT_KEY", "a-secret")
    keyed = fingerprint(df)
    assert keyed.startswith("hsha256:") and keyed.split(":")[1] != first.split(":")[1]
    monkeypatch.setenv("GATEHOUSE_LINEAGE_FINGERPRINT_KEY", "another-secret")
    assert fingerprint(df) != keyed


def test_bad_input_fails_before_any_work() -> None:
    df = pd.DataFrame({"v": np.array([Poison()], dtype=object)})
    with recording() as sink, pytest.raises(Exception, match="NAMESPACE/NAME"):
        track_dataframe(df, dataset="no-namespace", operation="read", fingerprint=True)
    with recording() as sink, pytest.raises(Exception, match="unknown operation 'copy'"):
        track_dataframe(df, dataset="a/b", operation="copy", fingerprint=True)
    assert sink.events == []
