"""`gatehouse witness init | add-log | serve | show`: run an independent witness for audit logs.

A witness has its own home (``--home`` or ``$GATEHOUSE_WITNESS_HOME``, default
``~/.gatehouse-witness``), its own Ed25519 key and its own state; it never opens a Gatehouse home
or database. Give its verifier key (printed by ``init`` and ``show``) to the log's operator, who
lists it in ``$GATEHOUSE_HOME/witnesses.yaml``, and to every auditor, who passes it to
``gatehouse audit verify --witness-key``."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from gate_core._audit import load_public_key
from gate_core._cosign import VerifierKey, log_verifier_key
from gate_core.cli_errors import clean_errors, fail
from gate_core.witness import WitnessHome

_HOME = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The witness's home (default: $GATEHOUSE_WITNESS_HOME or ~/.gatehouse-witness).",
)


@click.group()
def witness() -> None:
    """Run an independent witness that cosigns a log's checkpoints only if it only grew."""


@witness.command()
@_HOME
@click.option(
    "--name",
    default=None,
    help="The witness's key name, a schema-less URL such as witness.example.com/w1 "
    "(default: HOST/gatehouse-witness).",
)
@clean_errors
def init(home: Path | None, name: str | None) -> None:
    """Create the witness's home, key and state; print its verifier key (last line of stdout)."""
    where = WitnessHome.from_env(home)
    key = where.init(name or f"{socket.getfqdn()}/gatehouse-witness")
    click.echo(f"witness home ready at {where.path}; give this verifier key to the log and its auditors:")
    click.echo(key.text())


@witness.command(name="add-log")
@_HOME
@click.argument("log_key", metavar="LOG_VERIFIER_KEY", required=False)
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The log's audit-signing.pub instead of its verifier key (`gatehouse audit log-key`).",
)
@clean_errors
def add_log(home: Path | None, log_key: str | None, public_key: Path | None) -> None:
    """Witness a log: its note verifier key (`gatehouse audit log-key` prints it), from a copy you trust."""
    if (log_key is None) == (public_key is None):
        fail("give the log's verifier key or --public-key, one of them", code=2)
    key = VerifierKey.parse(log_key) if log_key else log_verifier_key(load_public_key(public_key))  # type: ignore[arg-type]
    added = WitnessHome.from_env(home).add_log(key)
    click.echo(f"{'now witnessing' if added else 'already witnessing'} {key.name} ({key.text()})")


@witness.command()
@_HOME
@clean_errors
def show(home: Path | None) -> None:
    """The witness's verifier key, the logs it witnesses and the size it holds for each."""
    where = WitnessHome.from_env(home)
    opened = where.open()
    held = opened.state.latest()
    click.echo(f"witness {opened.name}")
    click.echo(f"verifier key {where.verifier_key().text()}")
    for origin in sorted(opened.logs):
        latest = held.get(origin)
        click.echo(f"log {origin}: " + (f"cosigned size {latest.size}" if latest else "nothing cosigned yet"))
    for origin, status, reason in opened.state.refusals():
        click.echo(f"refused {origin} ({status}): {reason}")


@witness.command()
@_HOME
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=7380, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--log-level", default="info", type=click.Choice(["critical", "error", "warning", "info", "debug"])
)
@clean_errors
def serve(home: Path | None, host: str, port: int, log_level: str) -> None:
    """Serve POST /add-checkpoint (C2SP tlog-witness) for the configured logs."""
    import uvicorn

    from gate_core.witness._app import create_witness_app

    where = WitnessHome.from_env(home)
    opened = where.open()
    if not opened.logs:
        click.echo(
            "gatehouse witness: WARNING: no logs configured yet (`gatehouse witness add-log`)", err=True
        )
    click.echo(f"gatehouse witness {opened.name}: serving on http://{host}:{port}/add-checkpoint")
    app = create_witness_app(opened, where.verifier_key())
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
