"""The ``gatehouse`` command.

Exit codes: 0 ok · 1 refused, not found or a failed check · 2 usage error.
In local mode the CLI works on the store through the Gatekeeper and acts as the operating-system
account the kernel records for the process (never ``$USER``; ``gate_core.cli_identity``), which must
be a principal (or alias) in the directory. Only in a sandbox home (``init --example``) may
``gatehouse --as NAME`` choose a person; that identity is recorded as unverified (``sandbox``).

Local mode has no service sweeping overdue gates, so ``list`` and ``show`` expire what is overdue
first, explicitly and audited (``Gatekeeper.expire_due`` / ``expire``): what they print is what a
step could use. The Gatekeeper's own reads never write.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from gate_core import cli_proofs, cli_witness
from gate_core._audit import (
    VerifyReport,
    export_csv,
    export_jsonl,
    load_public_key,
    read_checkpoints,
    verify_chain,
)
from gate_core._cosign import log_verifier_key, read_verifier_keys
from gate_core._errors import ConfigError, GatehouseError
from gate_core._gatekeeper import Gatekeeper
from gate_core._hashing import canonical_json
from gate_core._home import Settings, init_home, open_gatekeeper
from gate_core._models import Actor, DatasetRef, Gate, GateRequest, GateStatus, RunContext
from gate_core._ports import GateFilter
from gate_core._tokens import Scope
from gate_core._witnessing import WitnessPolicy
from gate_core.cli_db import db as db_commands
from gate_core.cli_errors import clean_errors, fail
from gate_core.cli_identity import SANDBOX_BANNER, local_caller
from gate_core.cli_policy import policy as policy_commands

P = ParamSpec("P")
R = TypeVar("R")


def _gatekeeper() -> Gatekeeper:
    gatekeeper = open_gatekeeper(Settings.from_env())
    click.get_current_context().call_on_close(lambda: _sign_tail(gatekeeper))
    return gatekeeper


def _sign_tail(gatekeeper: Gatekeeper) -> None:
    """Sign what this command appended before it exits: a CLI-only home has no sweeper, and an
    unsigned tail is one an operator could rewrite or cut without any checkpoint noticing.
    A refusal (the log no longer extends the last checkpoint) is reported, never hidden."""
    try:
        gatekeeper.audit.checkpoint_if_unsigned()
        for problem in gatekeeper.audit.witness_pending():  # one a witness missed before, retried
            click.echo(f"gatehouse: WARNING: the newest checkpoint is not witnessed: {problem}", err=True)
    except GatehouseError as exc:
        click.echo(f"gatehouse: WARNING: {exc}", err=True)


def _local_actor(gatekeeper: Gatekeeper) -> Actor:
    return local_caller(gatekeeper.directory, Settings.from_env()).actor


def _gate_json(gate: Gate) -> dict[str, Any]:
    return gate.model_dump(mode="json")


def _describe(gate: Gate) -> str:
    req = gate.request
    lines = [
        f"gate {gate.id}: {gate.status.value}",
        f"  action      {req.action}"
        + (f" on {req.target}" if req.target else "")
        + (f" in {req.environment}" if req.environment else ""),
        f"  requester   {req.requester}"
        + (f" (submitted by {gate.submitted_by})" if gate.submitted_by != req.requester else ""),
    ]
    for principal, sources in gate.involved_people():
        lines.append(f"  involved    {principal} ({sources}; may not decide)")
    if req.datasets:
        lines.append("  datasets    " + ", ".join(str(d) for d in req.datasets))
        sourced = [gate.tag_with_source(d, t) for d in req.datasets for t in sorted(d.tags)]
        if gate.tag_sources:  # where each tag came from: the caller, the catalog, lineage
            lines.append("  tags from   " + ", ".join(sourced))
    if req.reason:
        lines.append(f"  reason      {req.reason}")
    lines.append(f"  policy      {gate.explanation}")
    lines.append(
        f"  approvals   {len(gate.approvals)}/{gate.required_approvals} from "
        f"{' or '.join(gate.approver_groups) or '-'}; expires {gate.expires_at.isoformat(timespec='seconds')}"
    )
    for d in gate.decisions:
        flag = " [BREAK-GLASS]" if d.break_glass else ""
        comment = f": {d.comment}" if d.comment else ""
        lines.append(
            f"  {d.verdict.value:<11} by {d.principal_id} via {d.via.value} at "
            f"{d.at.isoformat(timespec='seconds')}{flag}{comment}"
        )
    if gate.last_review:
        lr = gate.last_review
        lines.append(
            f"  last review {lr.status.value.lower()} by {', '.join(lr.decided_by)} at "
            f"{lr.decided_at.isoformat(timespec='seconds')} (gate {lr.gate_id})"
        )
    return "\n".join(lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gatehouse")
@click.option(
    "--as",
    "as_name",
    default=None,
    metavar="NAME",
    help="Sandbox homes only (init --example): act as this directory principal, unverified.",
)
@click.pass_context
def main(ctx: click.Context, as_name: str | None) -> None:
    """Gatehouse: human approval gates and a tamper-evident audit trail for data pipelines."""
    ctx.obj = {"as": as_name}
    settings = Settings.from_env()
    if settings.is_sandbox:
        click.echo(SANDBOX_BANNER.format(home=settings.home), err=True)


@main.command()
@click.option("--example", is_flag=True, help="Write the commented example policy and directory.")
@click.option("--force", is_flag=True, help="Overwrite existing policy and directory files.")
@clean_errors
def init(example: bool, force: bool) -> None:
    """Create $GATEHOUSE_HOME: database, signing key, policy and directory."""
    settings = Settings.from_env()
    written = init_home(settings, example=example, force=force)
    for path in written:
        click.echo(f"wrote {path}")
    if settings.key_beside_database() and not example:  # an --example home is a sandbox
        click.echo(
            f"gatehouse: WARNING: the audit signing key {settings.signing_key_path} sits beside the "
            "database: whoever can rewrite the log can re-sign it. Keep it elsewhere "
            "(GATEHOUSE_SIGNING_KEY=/path/outside/the/home) and give auditors audit-signing.pub.",
            err=True,
        )
    click.echo(f"gatehouse home ready at {settings.home}")


def _parse_param(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def _parse_datasets(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> tuple[DatasetRef, ...]:
    try:
        return tuple(DatasetRef.parse(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@main.command()
@click.option(
    "--action", required=True, help="export, redeploy, role_escalation, billing_change, infra_change, …"
)
@click.option("--target", default="", help="What the action applies to (a bucket, a model, a role).")
@click.option("--dataset", "datasets", multiple=True, callback=_parse_datasets, metavar="NS/NAME[#tag,tag]")
@click.option("--env", "environment", default="", help="Environment, e.g. prod.")
@click.option("--reason", default="", help="Why the step needs to run.")
@click.option("--param", "parameters", multiple=True, callback=_parse_param, metavar="KEY=VALUE")
@click.option(
    "--for", "requester", default=None, help="Requester, when a service principal acts for a person."
)
@click.option(
    "--idempotency-key", default=None, help="Returns the existing gate for this key instead of a new one."
)
@clean_errors
def request(
    action: str,
    target: str,
    datasets: tuple[DatasetRef, ...],
    environment: str,
    reason: str,
    parameters: dict[str, Any],
    requester: str | None,
    idempotency_key: str | None,
) -> None:
    """Open a gate. Prints the gate id as the last line of stdout."""
    gatekeeper = _gatekeeper()
    actor = _local_actor(gatekeeper)
    gate = gatekeeper.open(
        GateRequest(
            action=action,
            target=target,
            datasets=datasets,
            parameters=parameters,
            environment=environment,
            requester=requester or actor.principal_id,
            run=RunContext(orchestrator="local", pipeline="cli"),
            idempotency_key=idempotency_key,
            reason=reason,
        ),
        submitted_by=actor,
    )
    click.echo(_describe(gate))
    click.echo(gate.id)


@main.command(name="list")
@click.option("--status", type=click.Choice([s.value for s in GateStatus], case_sensitive=False))
@click.option("--action", default=None)
@click.option("--dataset", default=None, metavar="NS/NAME")
@click.option("--limit", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of gates.")
@clean_errors
def list_gates(
    status: str | None, action: str | None, dataset: str | None, limit: int, as_json: bool
) -> None:
    """List gates, newest first."""
    gatekeeper = _gatekeeper()
    gatekeeper.expire_due()
    gates = gatekeeper.list(
        GateFilter(
            status=GateStatus(status.upper()) if status else None, action=action, dataset=dataset, limit=limit
        )
    )
    if as_json:
        click.echo(json.dumps([_gate_json(g) for g in gates], indent=2))
        return
    if not gates:
        click.echo("no gates")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "status", "action", "target", "requester", "approvals", "rule", "created")
    for g in gates:
        table.add_row(
            g.id,
            g.status.value,
            g.request.action,
            g.request.target,
            g.request.requester,
            f"{len(g.approvals)}/{g.required_approvals}",
            g.rule,
            g.created_at.isoformat(timespec="seconds"),
        )
    Console(width=160).print(table)


@main.command()
@click.argument("gate_id")
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def show(gate_id: str, as_json: bool) -> None:
    """Show one gate with its context and decisions."""
    gate = _gatekeeper().expire(gate_id)
    click.echo(json.dumps(_gate_json(gate), indent=2) if as_json else _describe(gate))


@main.command()
@click.argument("gate_id")
@click.option("--comment", default="")
@clean_errors
def approve(gate_id: str, comment: str) -> None:
    """Approve a gate as the current user."""
    gatekeeper = _gatekeeper()
    gate = gatekeeper.approve(gate_id, actor=_local_actor(gatekeeper), comment=comment)
    missing = gate.approvals_missing()
    click.echo(_describe(gate))
    if gate.status is GateStatus.PENDING:
        click.echo(f"recorded; {missing} more distinct approval(s) needed")


@main.command()
@click.argument("gate_id")
@click.option("--reason", required=True)
@clean_errors
def reject(gate_id: str, reason: str) -> None:
    """Reject a gate as the current user (final)."""
    gatekeeper = _gatekeeper()
    click.echo(_describe(gatekeeper.reject(gate_id, actor=_local_actor(gatekeeper), reason=reason)))


@main.command()
@click.argument("gate_id")
@click.option("--reason", default="")
@clean_errors
def cancel(gate_id: str, reason: str) -> None:
    """Withdraw your own pending gate."""
    gatekeeper = _gatekeeper()
    click.echo(_describe(gatekeeper.cancel(gate_id, actor=_local_actor(gatekeeper), reason=reason)))


@main.group()
def audit() -> None:
    """Verify and export the audit trail."""


_WITNESS_KEY = click.option(
    "--witness-key",
    "witness_key_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file of witness verifier keys (one a line), from a copy you trust. Repeatable. "
    "Default: the keys in $GATEHOUSE_HOME/witnesses.yaml.",
)
_QUORUM = click.option(
    "--quorum",
    type=click.IntRange(min=1),
    default=None,
    help="How many of those witnesses must have cosigned (default: witnesses.yaml's, else all given).",
)


def witness_policy(
    files: tuple[Path, ...], quorum: int | None, configured: WitnessPolicy | None
) -> WitnessPolicy | None:
    """The witnesses a verification requires: keys given out of band, else the home's."""
    if not files:
        if configured is not None and quorum is not None:
            return WitnessPolicy(configured.keys, quorum)
        return configured
    keys = [k for path in files for k in read_verifier_keys(path.read_text(encoding="utf-8"), str(path))]
    if not keys:
        raise ConfigError(f"no witness verifier key in {', '.join(map(str, files))}")
    # where to ask each witness for the size it holds: the home's URLs, for the very keys given here
    urls = {}
    if configured is not None:
        urls = {
            k.name: configured.urls[k.name]
            for k in keys
            if k in configured.keys and k.name in configured.urls
        }
    return WitnessPolicy(tuple(keys), quorum if quorum is not None else len(keys), urls)


@audit.command()
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify with this public key (default: $GATEHOUSE_HOME/audit-signing.pub).",
)
@click.option(
    "--checkpoints",
    "checkpoint_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also check these checkpoints (JSON lines), e.g. a copy an auditor kept. Repeatable.",
)
@_WITNESS_KEY
@_QUORUM
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def verify(
    public_key: Path | None,
    checkpoint_files: tuple[Path, ...],
    witness_key_files: tuple[Path, ...],
    quorum: int | None,
    as_json: bool,
) -> None:
    """Recompute the hash chain, check every signed checkpoint and every gate's state against the
    log, and — with witnesses configured or given — that a quorum of them cosigned the newest
    checkpoint. Exit 1 names the first bad entry or gate, or the witnesses missing; exit 2 if there
    is no trust root (no public key): a missing key is an error, never a skip."""
    settings = Settings.from_env()
    key_path = public_key or settings.public_key_path
    if not key_path.exists():
        fail(
            f"no trust root: {key_path} is missing; verify with the log's public key from a copy "
            "you trust (--public-key)",
            code=2,
        )
    key = load_public_key(key_path)
    gatekeeper = open_gatekeeper(settings)
    marks = [*gatekeeper.audit.witness_checkpoints()]
    for path in checkpoint_files:
        marks += read_checkpoints(path)
    policy = witness_policy(witness_key_files, quorum, gatekeeper.audit.witnesses)
    report = gatekeeper.audit.verify(marks, public_key=key, witnesses=policy)
    _print_report(report, as_json)


def _print_report(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "head_hash": report.head_hash,
                    "checkpoints_checked": report.checkpoints_checked,
                    "first_bad_seq": report.first_bad_seq,
                    "gate": report.gate,
                    "problem": report.problem,
                    "signed_decisions": report.signed_decisions,
                    "witnessed_size": report.witnessed_size,
                    "witnesses": list(report.witnesses),
                }
            )
        )
    else:
        click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@audit.command(name="verify-export")
@click.argument("export_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The log's public key, from a copy you trust.",
)
@click.option(
    "--checkpoints",
    "checkpoint_files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Signed checkpoints (JSON lines) covering the export, e.g. audit-checkpoints.jsonl. Repeatable.",
)
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def verify_export(
    export_file: Path, public_key: Path, checkpoint_files: tuple[Path, ...], as_json: bool
) -> None:
    """Verify an exported log (``audit export``, JSON lines) with no home and no database: the
    hash chain from the first entry, the signed checkpoints, and every passkey-signed decision
    against the key registered earlier in the export. Exit 1 names the first bad entry."""
    rows = []
    with export_file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                body = canonical_json(
                    {key: record[key] for key in ("seq", "at", "event", "actor", "gate", "payload")}
                )
                rows.append(
                    (int(record["seq"]), str(record["event"]), record["gate"], body,
                     str(record["prev_hash"]), str(record["hash"]))
                )  # fmt: skip
            except (ValueError, KeyError, TypeError) as exc:
                fail(f"{export_file}:{number}: not an exported audit entry ({exc})")
    marks = [mark for path in checkpoint_files for mark in read_checkpoints(path)]
    _print_report(verify_chain(rows, marks, load_public_key(public_key)), as_json)


@audit.command(name="log-key")
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Default: $GATEHOUSE_HOME/audit-signing.pub.",
)
@clean_errors
def log_key(public_key: Path | None) -> None:
    """Print the log's note verifier key (origin+keyid+key): what a witness is configured with."""
    path = public_key or Settings.from_env().public_key_path
    click.echo(log_verifier_key(load_public_key(path)).text())


@audit.command(name="export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout.")
@click.option("--since-seq", default=0, help="Only entries after this sequence number.")
@clean_errors
def export(fmt: str, output: Path | None, since_seq: int) -> None:
    """Write every audit event with its SOC 2, ISO 27001:2022 and NIST 800-53 control ids."""
    gatekeeper = _gatekeeper()
    writer = export_jsonl if fmt == "jsonl" else export_csv
    entries = gatekeeper.audit.entries(after_seq=since_seq)
    if output is None:
        writer(entries, sys.stdout)
        return
    with output.open("w", encoding="utf-8", newline="") as handle:
        count = writer(entries, handle)
    click.echo(f"wrote {count} events to {output}", err=True)


@audit.command(name="checkpoint")
@clean_errors
def checkpoint_cmd() -> None:
    """Sign the current head of the log now."""
    mark = _gatekeeper().audit.checkpoint()
    if mark is None:
        fail("no signing key in $GATEHOUSE_HOME; run `gatehouse init`")
    assert mark is not None
    click.echo(f"checkpoint: {mark.size} entries, head {mark.head_hash}, key {mark.key_id}")


audit.add_command(cli_proofs.prove)
audit.add_command(cli_proofs.consistency)
audit.add_command(cli_proofs.verify_proof)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--log-level", default="info", type=click.Choice(["critical", "error", "warning", "info", "debug"])
)
@clean_errors
def serve(host: str, port: int, log_level: str) -> None:
    """Run the gate service: REST API, Slack endpoint and web console."""
    from gate_core.service import ServiceConfig, create_app
    from gate_core.service._serve import serve_app

    settings = Settings.from_env()
    gatekeeper = open_gatekeeper(settings)
    config = ServiceConfig.load(settings.home)
    loopback = host in ("127.0.0.1", "localhost", "::1")
    local_signin = config.console.local_signin if config.console.local_signin is not None else loopback
    app = create_app(gatekeeper, config, local_signin=local_signin, sandbox=settings.is_sandbox)
    click.echo(
        f"gatehouse: serving on http://{host}:{port} (console /console, API /v1, OpenAPI /openapi.json)"
    )
    serve_app(app, host=host, port=port, log_level=log_level)


@main.group()
def token() -> None:
    """Create, list and revoke API tokens (stored hashed; shown once)."""


@token.command(name="create")
@click.option("--principal", required=True, help="Directory principal the token acts as.")
@click.option("--scope", type=click.Choice([s.value for s in Scope]), default="request", show_default=True)
@click.option("--description", default="")
@click.option("--expires", "expires", default=None, help="Lifetime, e.g. 90d (default: no expiry).")
@click.option(
    "--pipeline",
    "pipelines",
    multiple=True,
    metavar="GLOB",
    help="Service tokens only: the pipelines (globs) it may open gates for; repeat for more.",
)
@clean_errors
def token_create(
    principal: str, scope: str, description: str, expires: str | None, pipelines: tuple[str, ...]
) -> None:
    """Create a token. Your own, or — as a member of gatehouse-admins — a service principal's.
    The token is printed once, as the last line of stdout."""
    from gate_core._durations import parse_duration

    gatekeeper = _gatekeeper()
    try:
        lifetime = parse_duration(expires) if expires else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from exc
    created, secret = gatekeeper.tokens.create(
        principal,
        Scope(scope),
        created_by=_local_actor(gatekeeper),
        description=description,
        expires_in=lifetime,
        pipelines=pipelines or None,
        channel="cli",
    )
    kind = gatekeeper.directory.get(principal).kind.value
    click.echo(
        f"token {created.id} for {created.principal_id} ({kind}), scope {created.scope.value}"
        + (f", expires {created.expires_at.isoformat(timespec='seconds')}" if created.expires_at else "")
    )
    click.echo("store it now: it cannot be shown again")
    click.echo(secret)


@token.command(name="list")
@clean_errors
def token_list() -> None:
    """List tokens (never their secrets)."""
    for t in _gatekeeper().tokens.list():
        state = "revoked" if t.revoked_at else "active"
        click.echo(
            f"{t.id}  {t.principal_id:<16} {t.scope.value:<8} {state:<8} created {t.created_at:%Y-%m-%d} "
            f"by {t.created_by} via {t.created_via or 'unrecorded'}  {t.description}"
        )


@token.command(name="revoke")
@click.argument("token_id")
@clean_errors
def token_revoke(token_id: str) -> None:
    """Revoke a token at once."""
    gatekeeper = _gatekeeper()
    if not gatekeeper.tokens.revoke(token_id, actor=_local_actor(gatekeeper), channel="cli"):
        fail(f"no active token with id {token_id!r}")
    click.echo(f"revoked {token_id}")


@main.group()
def passkeys() -> None:
    """List people's passkeys; reset a person's (admins). People add theirs in the console."""


@passkeys.command(name="list")
@click.argument("principal")
@clean_errors
def passkeys_list(principal: str) -> None:
    """The passkeys that may sign PRINCIPAL's decisions."""
    gatekeeper = _gatekeeper()
    person = gatekeeper.directory.get(principal)
    for key in gatekeeper.passkeys.of(person.id):
        click.echo(
            f"{key.credential_id[:22]}…  {key.name}  added {key.created_at:%Y-%m-%d}  "
            f"counter {key.sign_count}"
        )


@passkeys.command(name="reset")
@click.argument("principal")
@click.option("--reason", required=True, help="Why (recorded in the audit trail), e.g. 'lost laptop'.")
@clean_errors
def passkeys_reset(principal: str, reason: str) -> None:
    """Remove every passkey of PRINCIPAL (gatehouse-admins only; audited as passkey.reset). They
    register a new one in the console; signed rules wait for it, never fall back to unsigned."""
    gatekeeper = _gatekeeper()
    person = gatekeeper.directory.get(principal)
    caller = local_caller(gatekeeper.directory, Settings.from_env())
    removed = gatekeeper.passkeys.reset(person.id, actor=caller.actor, admin=caller.principal, reason=reason)
    click.echo(f"removed {removed} passkey(s) of {person.id}")


def _load_plugins() -> None:
    """Commands registered under the ``gatehouse.cli`` entry point group (e.g. ``gatehouse
    lineage``). A plugin that fails to load costs one line on stderr, never the core's commands."""
    for plugin in entry_points(group="gatehouse.cli"):
        try:
            command = plugin.load()
        except Exception as exc:
            click.echo(f"gatehouse: plugin {plugin.name!r} not loaded: {type(exc).__name__}: {exc}", err=True)
            continue
        if isinstance(command, click.Command):
            main.add_command(command)
        else:
            click.echo(f"gatehouse: plugin {plugin.name!r} is not a click command; ignored", err=True)


main.add_command(policy_commands)  # gatehouse policy test|check (gate_core.cli_policy)
main.add_command(db_commands)  # gatehouse db upgrade|grant-service-role (gate_core.cli_db)
main.add_command(cli_witness.witness)  # gatehouse witness init|add-log|show|serve
_load_plugins()

if __name__ == "__main__":
    main()
