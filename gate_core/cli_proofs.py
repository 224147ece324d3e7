"""`gatehouse audit prove | consistency | verify-proof`: RFC 9162 proofs over the audit log.

`prove` and `consistency` read the home's log and sign a checkpoint note with its key;
`verify-proof` needs no home and no database — only a bundle and the log's public key — so an
auditor can check one decision on their own machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gate_core._audit import load_public_key
from gate_core._cosign import read_verifier_keys
from gate_core._errors import AuditError
from gate_core._home import Settings, open_gatekeeper
from gate_core._witnessing import WitnessPolicy, verify_witnessed_bundle
from gate_core.cli_errors import clean_errors, fail


@click.command()
@click.argument("seq", type=click.IntRange(min=1))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout.")
@clean_errors
def prove(seq: int, output: Path | None) -> None:
    """Write an inclusion bundle for entry SEQ: the entry, its O(log n) proof, a signed checkpoint."""
    text = open_gatekeeper(Settings.from_env()).audit.prove(seq)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote the inclusion proof of entry {seq} to {output}", err=True)


@click.command()
@click.argument("old", type=click.IntRange(min=0))
@click.argument("new", type=click.IntRange(min=0), required=False)
@clean_errors
def consistency(old: int, new: int | None) -> None:
    """Prove the log of OLD entries is a prefix of the log of NEW (default: now): it only grew."""
    click.echo(json.dumps(open_gatekeeper(Settings.from_env()).audit.consistency(old, new), indent=2))


@click.command(name="verify-proof")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The log's public key, from a copy you trust.",
)
@click.option(
    "--witness-key",
    "witness_key_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file of witness verifier keys (one a line): the bundle's checkpoint must carry their "
    "cosignatures. Repeatable.",
)
@click.option("--quorum", type=click.IntRange(min=1), default=None, help="Default: every witness given.")
@clean_errors
def verify_proof(
    bundle_path: Path, public_key: Path, witness_key_files: tuple[Path, ...], quorum: int | None
) -> None:
    """Check an inclusion bundle with nothing but the log's public key (and the witnesses' keys).
    Exit 1 says what failed."""
    keys = [k for p in witness_key_files for k in read_verifier_keys(p.read_text(encoding="utf-8"), str(p))]
    if witness_key_files and not keys:
        fail("no witness verifier key in the --witness-key files", code=2)
    policy = WitnessPolicy(tuple(keys), quorum if quorum is not None else len(keys)) if keys else None
    try:
        entry, names = verify_witnessed_bundle(
            bundle_path.read_text(encoding="utf-8"), load_public_key(public_key), policy
        )
    except AuditError as exc:
        fail(f"proof REJECTED: {exc}")
    witnessed = f", its checkpoint cosigned by {', '.join(names)}" if keys else ""
    click.echo(
        f"proof OK: entry {entry['seq']} ({entry.get('event')}, gate {entry.get('gate')}) is in the log"
        + witnessed
    )
    sys.exit(0)
