"""lineage's public API is exactly what we mean it to be; its migrations match its schema; the
core finds it only through entry points."""

from __future__ import annotations

import ast
import importlib
import inspect
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import gate_core
import lineage
from lineage import LineageStore
from lineage._migrate import HEAD, MIGRATIONS, VERSION_TABLE
from lineage._schema import metadata

EXPECTED = {
    # the event and its parts
    "AccessEvent",
    "ColumnInfo",
    "Operation",
    # recording
    "record_access",
    "track_dataframe",
    "configure",
    "context",
    "reset",
    "LineageSink",
    "HttpSink",
    # gated steps (the adapter session's lineage port)
    "GateLineage",
    "operation_for",
    "step_accesses",
    "approval_facet",
    # classification
    "Catalog",
    "Classification",
    "classify",
    # storage and queries
    "LineageStore",
    "AccessRow",
    "AccessRows",
    "GraphEdge",
    "GraphNode",
    "LineageGraph",
    # errors
    "LineageError",
    "LineageInputError",
    "MalformedDataset",
    "UnknownOperation",
    "BadTimeWindow",
    "CatalogError",
    "NoDestination",
    "EmitFailed",
}
ROOT = Path(lineage.__file__).parent


def test_public_api_is_exactly_all() -> None:
    assert set(lineage.__all__) == EXPECTED
    for name in lineage.__all__:
        assert getattr(lineage, name).__module__.startswith("lineage")


def test_every_error_is_a_gatehouse_error_in_the_drawn_tree() -> None:
    doc = inspect.getdoc(lineage._errors) or ""
    errors = [getattr(lineage, n) for n in EXPECTED if isinstance(getattr(lineage, n), type)]
    errors = [e for e in errors if issubclass(e, Exception)]
    assert len(errors) == 8
    core_codes = {
        getattr(gate_core, n).code
        for n in gate_core.__all__
        if isinstance(getattr(gate_core, n), type)
        and issubclass(getattr(gate_core, n), gate_core.GatehouseError)
    }
    for error in errors:
        assert issubclass(error, gate_core.GatehouseError)
        assert error.__name__ in doc, f"{error.__name__} missing from the tree in lineage/_errors.py"
        assert error.code not in core_codes
    assert len({e.code for e in errors}) == len(errors)
    # input errors are the core's InvalidInput, so the service answers 422 without knowing lineage
    assert issubclass(lineage.MalformedDataset, gate_core.InvalidInput)
    assert issubclass(lineage.CatalogError, gate_core.ConfigError)


def test_head_constant_matches_the_newest_migration() -> None:
    assert MIGRATIONS.script_head() == HEAD


def test_migrations_create_exactly_the_declared_schema(lstore: LineageStore) -> None:
    assert _schema_diff(lstore) == []


def _ours(name: str | None, type_: str, _parent: object) -> bool:
    """The gate store's tables share the database; only gh_lineage_* tables are compared."""
    return type_ != "table" or ((name or "").startswith("gh_lineage_") and name != VERSION_TABLE)


def _schema_diff(lstore: LineageStore) -> list[object]:
    with lstore.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "include_name": _ours}
        )
        return list(compare_metadata(context, metadata))


def _lineage_tables(lstore: LineageStore) -> set[str]:
    names = sqlalchemy.inspect(lstore.engine).get_table_names()
    return {n for n in names if n.startswith("gh_lineage_") and n != VERSION_TABLE}


def test_migrating_twice_is_a_no_op(lstore: LineageStore) -> None:
    lstore.migrate()
    lstore.migrate()
    with lstore.engine.connect() as conn:
        assert MIGRATIONS.current_revision(conn) == HEAD
    assert _schema_diff(lstore) == []
    assert _lineage_tables(lstore) == {t.name for t in metadata.sorted_tables}


def test_the_history_runs_down_and_up_again(lstore: LineageStore) -> None:
    """downgrade() undoes upgrade() exactly: no lineage table is left behind, and upgrading again
    gives the declared schema (so a rollback and a re-deploy are both safe)."""
    with lstore.engine.begin() as conn:
        config = MIGRATIONS.config()
        config.attributes["connection"] = conn
        config.attributes["version_table"] = VERSION_TABLE
        command.downgrade(config, "base")
    with lstore.engine.connect() as conn:
        assert MIGRATIONS.current_revision(conn) is None
    assert _lineage_tables(lstore) == set()
    lstore.migrate()
    with lstore.engine.connect() as conn:
        assert MIGRATIONS.current_revision(conn) == HEAD
    assert _schema_diff(lstore) == []
    assert _lineage_tables(lstore) == {t.name for t in metadata.sorted_tables}


def test_the_core_finds_lineage_only_through_entry_points() -> None:
    cli = {ep.name: ep.value for ep in entry_points(group="gatehouse.cli")}
    service = {ep.name: ep.value for ep in entry_points(group="gatehouse.service")}
    assert cli["lineage"] == "lineage._cli:lineage"
    assert service["lineage"] == "lineage._service:install"
    from gate_core.cli import main

    assert "lineage" in main.commands  # type: ignore[attr-defined]
    core = Path(gate_core.__file__).parent
    for path in core.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n == "lineage" or n.startswith("lineage.") for n in names), path


def test_lineage_uses_only_the_cores_public_api() -> None:
    """Every lineage module — the service plugin too — imports only names in the ``__all__`` of
    gate_core's public modules (gate_core, gate_core.sql, gate_core.service.extension…)."""
    paths = list(ROOT.rglob("*.py"))
    assert ROOT / "_service.py" in paths and ROOT / "_console.py" in paths
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gate_core"):
                module = node.module or ""
                assert not any(part.startswith("_") for part in module.split(".")), f"{path} imports {module}"
                public = importlib.import_module(module).__all__
                for alias in node.names:
                    assert alias.name in public, f"{path.name} imports {module}.{alias.name}"


@pytest.mark.parametrize("module", ["lineage.testing", "lineage._cli", "lineage._service"])
def test_public_modules_import(module: str) -> None:
    __import__(module)


class _BrokenEntryPoint:
    name = "broken"

    def load(self) -> object:
        raise ImportError("No module named 'lineage_extras'")


def test_a_broken_plugin_costs_one_line_never_the_core(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from gate_core import cli
    from gate_core.service import _app

    monkeypatch.setattr(cli, "entry_points", lambda group: [_BrokenEntryPoint()])
    cli._load_plugins()
    err = capsys.readouterr().err
    assert err == "gatehouse: plugin 'broken' not loaded: ImportError: No module named 'lineage_extras'\n"

    monkeypatch.setattr(_app, "entry_points", lambda group: [_BrokenEntryPoint()])
    _app.install_plugins(None, None)  # type: ignore[arg-type]
    assert "service plugin 'broken' not loaded: ImportError" in caplog.text
