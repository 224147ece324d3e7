"""GateTrigger: waits in the triggerer until a gate is decided, holding no worker slot.

Every GateTrigger on one triggerer shares one ``SharedGateWaiter`` per connection, so thousands
of deferred gate tasks cost one batched long-poll per cycle. The event it yields is a
``GateEvent`` payload (see ``airflow_provider.triggers.events``); it never says "approved" unless
the service reported the gate APPROVED — errors keep it waiting or fail it.

``wait_for_decision`` is that wait, whoever runs it: the trigger in the triggerer, and a gate
operator with ``deferrable=False`` in its own worker (``wait_in_worker``, a waiter of its own on
a private event loop) — one deadline rule, one retry policy, one mapping to a GateEvent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider.hooks.gatehouse import DEFAULT_CONN_ID, Credentials, GatehouseHook
from airflow_provider.triggers._waiter import AsyncWaitClient, SharedGateWaiter, WaitRefused
from airflow_provider.triggers.events import GateEvent, GateOutcome
from gate_core import HttpGateClient

CLASSPATH = "airflow_provider.triggers.gate.GateTrigger"
DEFAULT_POLL_TIMEOUT = 25.0  # seconds per long-poll; the service caps it at its max_wait_s (60 s)


def waiter_for(conn_id: str | None, poll_timeout: float = DEFAULT_POLL_TIMEOUT) -> SharedGateWaiter:
    """The running event loop's shared waiter for ``conn_id`` (created on first use)."""

    async def connect() -> AsyncWaitClient:
        credentials = await GatehouseHook.aresolve(conn_id)
        return HttpGateClient(credentials.base_url, credentials.token)

    return SharedGateWaiter.for_loop(
        conn_id or "", lambda: SharedGateWaiter(connect, poll_timeout=poll_timeout)
    )


def seconds_until(deadline: str | None) -> float | None:
    """Seconds from now to the ISO time ``deadline`` (naive means UTC); None without one."""
    if deadline is None:
        return None
    moment = datetime.fromisoformat(deadline)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (moment - datetime.now(UTC)).total_seconds()


async def wait_for_decision(waiter: SharedGateWaiter, gate_id: str, deadline: str | None) -> GateEvent:
    """How waiting for ``gate_id`` ended: the service's decision, ``TIMED_OUT`` once ``deadline``
    (the task's own ``timeout``) passes, or ``ERROR`` when the service refused the wait. Failures
    to reach the service are retried inside ``waiter``; none of them ever reads as approval."""
    try:
        resolution = await asyncio.wait_for(waiter.wait(gate_id), timeout=seconds_until(deadline))
    except TimeoutError:
        return GateEvent.failure(
            gate_id, GateOutcome.TIMED_OUT, f"no decision before the task's timeout ({deadline})"
        )
    if isinstance(resolution, WaitRefused):
        return GateEvent.failure(gate_id, GateOutcome.ERROR, resolution.message)
    return GateEvent.from_gate(resolution)


def wait_in_worker(
    credentials: Credentials,
    gate_id: str,
    *,
    deadline: str | None,
    give_up_after: float,
    poll_timeout: float = DEFAULT_POLL_TIMEOUT,
) -> GateEvent:
    """``wait_for_decision`` inside a task (``deferrable=False``): a waiter of its own with one
    long-poll in flight, on an event loop of its own, returning the moment the decision lands.

    ``give_up_after`` seconds is the backstop Airflow's deferral timeout is for a deferred task:
    the service reports a gate's expiry itself, so reaching it means no decision could be had —
    an ``ERROR`` event, which fails the task (never passes it)."""

    async def connect() -> AsyncWaitClient:
        # a client of its own: httpx's async connections belong to the loop that opened them
        return HttpGateClient(credentials.base_url, credentials.token)

    async def wait() -> GateEvent:
        waiter = SharedGateWaiter(connect, poll_timeout=poll_timeout)
        try:
            return await asyncio.wait_for(
                wait_for_decision(waiter, gate_id, deadline), timeout=max(give_up_after, 0.0)
            )
        except TimeoutError:
            return GateEvent.failure(
                gate_id,
                GateOutcome.ERROR,
                f"the gate service reported no decision or expiry within {give_up_after:.0f} s",
            )

    return asyncio.run(wait())


class GateTrigger(BaseTrigger):
    """Fire once, when gate ``gate_id`` leaves PENDING (or ``deadline`` passes first).

    :param gate_id: the gate to wait for.
    :param gatehouse_conn_id: the ``gatehouse`` connection (resolved in the triggerer, so the
        token never sits in the trigger's stored kwargs); ``None`` reads the environment.
    :param poll_timeout: seconds each shared long-poll stays open.
    :param deadline: ISO time after which the trigger gives up with ``TIMED_OUT`` (the task's
        own ``timeout``); the gate's expiry is enforced by the service itself.
    """

    def __init__(
        self,
        *,
        gate_id: str,
        gatehouse_conn_id: str | None = DEFAULT_CONN_ID,
        poll_timeout: float = DEFAULT_POLL_TIMEOUT,
        deadline: str | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger is unannotated
        self.gate_id = gate_id
        self.gatehouse_conn_id = gatehouse_conn_id
        self.poll_timeout = float(poll_timeout)
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "gate_id": self.gate_id,
                "gatehouse_conn_id": self.gatehouse_conn_id,
                "poll_timeout": self.poll_timeout,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        waiter = waiter_for(self.gatehouse_conn_id, self.poll_timeout)
        event = await wait_for_decision(waiter, self.gate_id, self.deadline)
        self.log.info("gatehouse: %s", event.describe())
        yield TriggerEvent(event.to_payload())  # type: ignore[no-untyped-call]  # unannotated in Airflow
