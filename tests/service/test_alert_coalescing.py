"""The notification hub's alert windows, on a clock moved by hand: at most one alert per (gate,
notify target) each ``alert_interval_s``, then one summary of what was held (the newest finding
and ``more_findings``); a quiet window ends without a message; a clean shutdown sends what is
held; 0 turns coalescing off. The wire-level attack (1,000 findings over the OpenLineage receiver,
Slack, Teams and a webhook at the wire) is tests/security/test_alert_markup_P.py."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from gate_core import Gate, GateRequest
from gate_core._ports import NotificationRef
from gate_core.service import ServiceConfig
from gate_core.service.notify import NotificationHub, NotifyTarget
from gate_core.testing import actor, example_gatekeeper

EXPORT = {
    "action": "export",
    "target": "s3://exports/customers.csv",
    "datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["pii"]}],
    "requester": "alice",
}
INTERVAL = 300.0


class Recording:
    """A notifier that remembers each alert it was asked to post."""

    kind = "recording"

    def __init__(self) -> None:
        self.alerts: list[tuple[str, str, dict[str, Any]]] = []

    def post_request(self, gate: Gate, target: NotifyTarget) -> NotificationRef | None:
        return None

    def post_outcome(self, gate: Gate, ref: NotificationRef) -> None:
        return None

    def post_reminder(self, gate: Gate, target: NotifyTarget) -> None:
        return None

    def post_alert(self, gate: Gate, target: NotifyTarget, event: str, details: Mapping[str, Any]) -> None:
        self.alerts.append((gate.id, str(target), dict(details)))


@pytest.fixture
def rig() -> Iterator[tuple[NotificationHub, Recording, list[Gate], list[float]]]:
    gatekeeper = example_gatekeeper()
    gates = [
        gatekeeper.open(GateRequest.model_validate(EXPORT), submitted_by=actor("etl-bot")).model_copy(
            update={"notify": ("rec:#a", "rec:#b")}
        )
        for _ in range(2)
    ]
    recording = Recording()
    hub = NotificationHub(gatekeeper, {"rec": recording}, alert_interval_s=INTERVAL)
    now = [1000.0]
    hub.clock = lambda: now[0]
    yield hub, recording, gates, now
    hub.close()
    gatekeeper.store.close()


def finding(n: int) -> dict[str, Any]:
    return {"id": f"v{n:04d}", "kind": "unapproved_dataset", "dataset": f"w/pii_{n}", "operation": "read"}


def sent(hub: NotificationHub, recording: Recording) -> list[tuple[str, str, str, int]]:
    hub.drain()
    return [(g, t, d["id"], d.get("more_findings", 0)) for g, t, d in recording.alerts]


def test_one_alert_per_gate_and_target_then_one_summary(
    rig: tuple[NotificationHub, Recording, list[Gate], list[float]],
) -> None:
    hub, recording, (gate, other), now = rig
    for n in range(50):
        hub.alert(gate, "lineage.out_of_scope", finding(n))
    hub.alert(other, "lineage.out_of_scope", finding(99))  # another gate has its own window
    # (in order per gate; two gates' deliveries run side by side)
    assert sorted(sent(hub, recording)) == sorted(
        [
            (gate.id, "rec:#a", "v0000", 0),
            (gate.id, "rec:#b", "v0000", 0),
            (other.id, "rec:#a", "v0099", 0),
            (other.id, "rec:#b", "v0099", 0),
        ]
    )
    now[0] += INTERVAL - 1
    hub.flush_alerts()  # the window is still open: nothing
    assert len(sent(hub, recording)) == 4
    now[0] += 1
    hub.flush_alerts()  # the newest of the 49 held, standing for the 48 others
    assert sent(hub, recording)[4:] == [(gate.id, "rec:#a", "v0049", 48), (gate.id, "rec:#b", "v0049", 48)]
    # the summary opened the next window: a steady stream is one message per interval
    hub.alert(gate, "lineage.out_of_scope", finding(50))
    assert len(sent(hub, recording)) == 6
    now[0] += INTERVAL
    hub.flush_alerts()
    assert sent(hub, recording)[6:] == [(gate.id, "rec:#a", "v0050", 0), (gate.id, "rec:#b", "v0050", 0)]
    # quiet windows end without a message, and the next finding goes out at once
    now[0] += INTERVAL
    hub.flush_alerts()
    now[0] += INTERVAL
    hub.flush_alerts()
    assert len(sent(hub, recording)) == 8
    hub.alert(gate, "lineage.out_of_scope", finding(51))
    assert sent(hub, recording)[8:] == [(gate.id, "rec:#a", "v0051", 0), (gate.id, "rec:#b", "v0051", 0)]


def test_a_window_the_sweep_has_not_summarised_yet_is_counted_in_the_next_alert(
    rig: tuple[NotificationHub, Recording, list[Gate], list[float]],
) -> None:
    hub, recording, (gate, _), now = rig
    for n in range(3):
        hub.alert(gate, "lineage.out_of_scope", finding(n))
    now[0] += INTERVAL
    hub.alert(gate, "lineage.out_of_scope", finding(3))  # before any sweep: it carries the 2 held
    assert sent(hub, recording)[2:] == [(gate.id, "rec:#a", "v0003", 2), (gate.id, "rec:#b", "v0003", 2)]
    hub.flush_alerts()
    assert len(sent(hub, recording)) == 4  # counted once, never twice


def test_a_clean_shutdown_sends_what_is_held(
    rig: tuple[NotificationHub, Recording, list[Gate], list[float]],
) -> None:
    hub, recording, (gate, _), _now = rig
    for n in range(10):
        hub.alert(gate, "lineage.out_of_scope", finding(n))
    hub.close()
    assert sent(hub, recording)[2:] == [(gate.id, "rec:#a", "v0009", 8), (gate.id, "rec:#b", "v0009", 8)]


def test_interval_zero_sends_every_finding() -> None:
    gatekeeper = example_gatekeeper()
    gate = gatekeeper.open(GateRequest.model_validate(EXPORT), submitted_by=actor("etl-bot"))
    gate = gate.model_copy(update={"notify": ("rec:#a",)})
    recording = Recording()
    hub = NotificationHub(gatekeeper, {"rec": recording}, alert_interval_s=0)
    try:
        for n in range(5):
            hub.alert(gate, "lineage.out_of_scope", finding(n))
        hub.flush_alerts(everything=True)
        assert sent(hub, recording) == [(gate.id, "rec:#a", f"v{n:04d}", 0) for n in range(5)]
    finally:
        hub.close()
        gatekeeper.store.close()


def test_the_interval_is_a_service_setting_with_a_five_minute_default() -> None:
    assert ServiceConfig().alert_interval_s == 300.0
    assert ServiceConfig.model_validate({"alert_interval_s": 60}).alert_interval_s == 60.0
    with pytest.raises(ValueError, match="alert_interval_s"):
        ServiceConfig.model_validate({"alert_interval_s": -1})
