"""record_access and its destinations: configure(), context(), the environment, local defaults."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import pytest

import lineage
from gate_core import InvalidInput, RunContext, Settings, init_home
from lineage import LineageInputError, LineageStore, MalformedDataset, NoDestination, UnknownOperation
from lineage.testing import MemorySink, recording


def test_record_access_classifies_and_stamps_the_scope(lstore: LineageStore) -> None:
    run = RunContext(orchestrator="airflow", pipeline="daily", run_id="r1", task_id="load", try_number=2)
    lineage.configure(store=lstore, run=run, actor="etl-bot")
    event = lineage.record_access(
        "warehouse/customers#finance", "READ", columns=["email", ("id", "int64")], row_count=5, bytes=80
    )
    assert event.run == run and event.actor == "etl-bot" and event.gate_id is None
    assert event.tags == {"finance", "pii", "email"}
    assert lstore.get(event.id) == event
    with lineage.context(gate_id="gAPPROVAL", actor="alice"):
        inner = lineage.record_access("s3://out/customers.csv", "export")
        with lineage.context(run=RunContext(orchestrator="airflow", run_id="r2")):
            innermost = lineage.record_access("s3://out/x", "write")
    assert (inner.gate_id, inner.actor, inner.run.run_id) == ("gAPPROVAL", "alice", "r1")
    assert (innermost.gate_id, innermost.actor, innermost.run.run_id) == ("gAPPROVAL", "alice", "r2")
    assert lineage.record_access("a/b", "read", actor="carol", gate_id="g2").actor == "carol"


def test_contexts_are_per_thread_and_sinks_can_be_many() -> None:
    first, second = MemorySink(), MemorySink()
    lineage.configure(sinks=[first, second], actor="bot")
    seen: dict[str, str | None] = {}

    def step(name: str) -> None:
        with lineage.context(gate_id=f"g{name}", run=RunContext(orchestrator="prefect", run_id=name)):
            seen[name] = lineage.record_access(f"lake/{name}", "write").gate_id

    threads = [threading.Thread(target=step, args=(str(i),)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {str(i): f"g{i}" for i in range(8)}
    assert len(first.events) == len(second.events) == 8
    assert {e.run.run_id for e in first.events} == {str(i) for i in range(8)}


def test_outside_a_pipeline_the_run_is_local_and_the_actor_is_the_os_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    settings = Settings.from_env({"GATEHOUSE_HOME": str(home)})
    init_home(settings, example=True)
    directory = settings.directory_path.read_text(encoding="utf-8")
    settings.directory_path.write_text(
        directory.replace("  - id: alice\n", "  - id: alice\n    aliases: [asmith]\n")
    )
    monkeypatch.setenv("GATEHOUSE_HOME", str(home))
    from gate_core.identity import _callers

    monkeypatch.setattr(_callers, "os_account", lambda: "asmith")  # the kernel's account, stood in
    event = lineage.record_access("warehouse/customers", "read", columns=["email"])
    assert event.actor == "alice"  # the alias, mapped as the core's CLI maps the OS account
    assert event.run.orchestrator == "local" and event.run.run_id.startswith("local-")
    again = lineage.record_access("warehouse/clean", "write")
    assert again.run.run_id == event.run.run_id  # one run per process: a script's read → write is an edge
    store = LineageStore.open(settings.database_url)
    assert [e.id for e in store.iter_events()] == [event.id, again.id]
    assert [e.downstream for e in store.graph("warehouse/customers").edges] == ["warehouse/clean"]
    monkeypatch.setattr(_callers, "os_account", lambda: "somebody-else")
    assert lineage.record_access("a/b", "read").actor == "somebody-else"  # unknown: the OS name as is


def test_the_database_url_from_the_environment(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEHOUSE_DATABASE_URL", database_url)
    event = lineage.record_access("warehouse/x", "delete", row_count=3)
    assert LineageStore.open(database_url).get(event.id).operation.value == "delete"


def test_nowhere_to_record_is_a_clear_error() -> None:
    with pytest.raises(NoDestination, match=r"GATEHOUSE_URL and GATEHOUSE_TOKEN .* lineage\.configure"):
        lineage.record_access("a/b", "read")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dataset": "customers"}, MalformedDataset, "'customers' is not NAMESPACE/NAME"),
        ({"dataset": " a/b"}, MalformedDataset, "no surrounding spaces"),
        ({"dataset": "a/b\x00"}, MalformedDataset, "control characters"),
        ({"dataset": 42}, MalformedDataset, "expected a string"),
        ({"operation": "copy"}, UnknownOperation, "unknown operation 'copy': expected one of read, write"),
        ({"operation": None}, UnknownOperation, "unknown operation None"),
        ({"row_count": -1}, LineageInputError, "row_count: Input should be greater than or equal to 0"),
        ({"bytes": 2**64}, LineageInputError, "bytes"),
        ({"fingerprint": "md5 of it"}, LineageInputError, "fingerprint"),
        ({"at": datetime(2026, 1, 1)}, LineageInputError, "naive time"),
        ({"columns": [{"name": "a", "type": "x" * 300}]}, LineageInputError, "columns"),
        ({"columns": ["bad\x00name"]}, LineageInputError, "NUL"),
        ({"tags": ["x" * 101]}, LineageInputError, "at most 100"),
        ({"gate_id": "not a gate id!"}, LineageInputError, "gate_id"),
        ({"run": RunContext(run_id="r" * 501)}, LineageInputError, "run.run_id is at most 500"),
    ],
)
def test_bad_input_gives_a_clear_error(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    call: dict[str, object] = {"dataset": "warehouse/customers", "operation": "read", **kwargs}
    with recording() as sink, pytest.raises(error) as caught:
        lineage.record_access(**call)  # type: ignore[arg-type]
    assert message in str(caught.value)
    assert isinstance(caught.value, InvalidInput)
    assert sink.events == []


def test_classify_uses_the_configured_catalog() -> None:
    catalog = lineage.Catalog.parse("datasets:\n  a/b:\n    columns:\n      notes: [pii]\n")
    lineage.configure(sinks=[MemorySink()], catalog=catalog)
    assert lineage.classify("a/b", ["notes"]).tags == {"pii"}
    assert lineage.record_access("a/b", "read", columns=["notes"]).tags == {"pii"}
