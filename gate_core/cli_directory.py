"""``gatehouse directory show [--at TIME] [--json]``: who existed and who was in which group, now
or at any past moment — the directory file's principals and the people the IdP provisioned
(SCIM), as the change log had them then."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from gate_core._home import Settings, open_gatekeeper
from gate_core.cli_errors import clean_errors, fail
from gate_core.identity._provisioned import directory_view


def parse_moment(text: str | None) -> datetime | None:
    """An ISO 8601 time; without a zone it is UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--at {text!r} is not an ISO 8601 time (e.g. 2026-03-01T14:05:00Z)")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.group(name="directory")
def directory_commands() -> None:
    """The directory: the file's principals and the people an IdP provisions."""


@directory_commands.command(name="show")
@click.option(
    "--at", "at", metavar="TIME", help="show the directory as it was then (ISO 8601; UTC if no zone)"
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@clean_errors
def show(at: str | None, as_json: bool) -> None:
    """Who existed, and who was in which group, now or at --at."""
    moment = parse_moment(at)
    gatekeeper = open_gatekeeper(Settings.from_env())
    try:
        view = directory_view(gatekeeper.directory, moment)
    finally:
        gatekeeper.store.close()
    if as_json:
        click.echo(json.dumps(view, indent=2, sort_keys=True))
        return
    click.echo(f"directory at {view['at'] or 'now'} (provisioned version {view['version']})")
    for person in view["principals"]:
        state = "" if person["active"] else "  [deactivated]"
        groups = ", ".join(person["groups"]) or "-"
        click.echo(f"  {person['id']:<28} {person['source']:<5} {person['kind']:<8} {groups}{state}")
    click.echo("groups:")
    for group, members in view["groups"].items():
        click.echo(f"  {group}: {', '.join(members)}")
