"""A notifier shipped by a separate distribution, written the way pip installs one.

    SITE/gatehouse_pager/__init__.py                     the plugin: two notifier types
    SITE/gatehouse_pager-0.1.dist-info/METADATA          name + version
    SITE/gatehouse_pager-0.1.dist-info/entry_points.txt  [gatehouse.notifiers] pager = …

Put SITE on ``sys.path`` (or PYTHONPATH) and ``importlib.metadata`` finds the entry points, as
for any installed package: no build backend, no network. The plugin imports only Gatehouse's
public notifier API. ``pager`` POSTs every event it is given to its ``url`` as JSON;
``broken-pager`` raises in post_request, as a plugin with a bug would.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

PLUGIN_SOURCE = '''\
"""Pages whoever is on call: a Gatehouse notifier type from its own distribution."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from pydantic import BaseModel, ConfigDict

from gate_core import Gate
from gate_core.service.notify import NotificationRef, NotifierContext, NotifierType, NotifyTarget


class PagerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    severity: int = 3


class Pager:
    def __init__(self, config: PagerConfig, context: NotifierContext) -> None:
        self.config = config
        self.instance = context.name
        self.public_url = context.public_url

    def send(self, event: str, gate: Gate, address: str) -> None:
        body = {
            "event": event,
            "instance": self.instance,
            "address": address,
            "gate": gate.id,
            "status": gate.status.value,
            "severity": self.config.severity,
            "console": f"{self.public_url}/console/gates/{gate.id}",
        }
        httpx.post(self.config.url, json=body, timeout=5).raise_for_status()

    def post_request(self, gate: Gate, target: NotifyTarget) -> NotificationRef | None:
        self.send("opened", gate, target.address)
        return NotificationRef(
            gate_id=gate.id,
            target=str(target),
            channel=target.address,
            message_ref=gate.id,
            kind="pager",
            sent_at=datetime.now(UTC),
        )

    def post_outcome(self, gate: Gate, ref: NotificationRef) -> None:
        self.send("decided", gate, ref.channel)

    def post_reminder(self, gate: Gate, target: NotifyTarget) -> None:
        self.send("reminder", gate, target.address)


class BrokenPager(Pager):
    def post_request(self, gate: Gate, target: NotifyTarget) -> NotificationRef | None:
        raise RuntimeError("the pager is on fire")


pager = NotifierType("pager", PagerConfig, Pager)
broken = NotifierType("broken-pager", PagerConfig, BrokenPager)
'''


def install_plugin(site: Path, module: str = "gatehouse_pager") -> Path:
    """Write the distribution into ``site`` (created) and return ``site``. ``module`` names the
    import package, so tests in one process can each install a fresh copy."""
    (site / module).mkdir(parents=True, exist_ok=True)
    (site / module / "__init__.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    dist_info = site / f"{module}-0.1.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n", encoding="utf-8"
    )
    (dist_info / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [gatehouse.notifiers]
            pager = {module}:pager
            broken-pager = {module}:broken
            """
        ),
        encoding="utf-8",
    )
    return site
