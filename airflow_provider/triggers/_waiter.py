"""SharedGateWaiter: every gate trigger in one triggerer waits through one long-poll per cycle.

A triggerer runs all its triggers as coroutines on one event loop. Each GateTrigger registers its
gate here instead of polling on its own; the waiter keeps one batched long-poll in flight
(``POST /v1/gates/wait`` with every waiting id — the *main* poll, one per cycle) and resolves
each trigger's future the moment the service reports its gate left PENDING. Ten thousand
waiting gates therefore cost one request (and the same few store queries) per cycle, like one gate.

    trigger.run() ──register(gate)──► SharedGateWaiter ──await_many(all ids, 25 s)──► gate service
                 ◄──future resolved──         (one per event loop and connection)

Gates that register while the main poll is in flight are not left waiting for it to end: after
a short batching window they get a *side* poll of their own that ends with the main one, and
the next main poll covers everything again (in-flight polls are never cancelled for newcomers,
because the service keeps a cancelled long-poll open until its timeout).

Failures never pass a gate: network errors and 503s back off (0.5 s doubling to 30 s) and keep
waiting; a refusal by the service (bad token, unknown gate) resolves the affected triggers with
a refusal, which their tasks turn into failures.

Why not Airflow 3.3's ``SharedStreamManager``: it serves ``BaseEventTrigger`` (asset watchers)
and broadcasts every raw event to every subscriber — O(triggers) per decision — and it does not
exist before 3.3, which this provider supports.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from gate_core import Gate, GatehouseError, ServiceUnavailable, WaitResult

log = logging.getLogger("airflow_provider.triggers")

GATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")  # the service's own id pattern: one bad id must not
MAX_IDS_PER_POLL = 10_000  # poison a batch; and the service's limit per wait request


class AsyncWaitClient(Protocol):
    """The part of ``gate_core.GateClient`` the waiter uses."""

    async def await_many(self, gate_ids: Sequence[str], timeout: float) -> WaitResult: ...

    async def aclose(self) -> None: ...


ClientFactory = Callable[[], Awaitable[AsyncWaitClient]]


@dataclass(frozen=True, slots=True)
class WaitRefused:
    """The service will not let this gate be waited on; the task must fail."""

    message: str


Resolution = Gate | WaitRefused


class _Refusal(Exception):
    """A poll the service refused outright (4xx): every gate in it gets a WaitRefused."""


@dataclass
class WaiterStats:
    """Counters for tests and the triggerer benchmark."""

    polls: int = 0  # wait requests sent (main + side)
    cycles: int = 0  # main polls: each covers every gate waiting when it starts
    errors: int = 0  # failed requests (then backed off)
    resolved: int = 0  # triggers answered
    ids_polled: list[int] = field(default_factory=list)  # gates per request, most recent last

    def note_poll(self, size: int) -> None:
        self.polls += 1
        self.ids_polled.append(size)
        del self.ids_polled[:-1000]


@dataclass(eq=False)
class _Poll:
    task: asyncio.Task[WaitResult | None]
    ids: frozenset[str]
    deadline: float
    main: bool


class SharedGateWaiter:
    """One per event loop and connection. Get it with ``for_loop``; triggers call ``wait``."""

    _registry: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedGateWaiter]]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(
        self,
        client_factory: ClientFactory,
        *,
        poll_timeout: float = 25.0,
        batch_window: float = 0.01,
        max_ids: int = MAX_IDS_PER_POLL,
        max_backoff: float = 30.0,
    ) -> None:
        self._client_factory = client_factory
        self.poll_timeout = poll_timeout
        self.batch_window = batch_window
        self.max_ids = max_ids
        self.max_backoff = max_backoff
        self.stats = WaiterStats()
        self._waiters: dict[str, set[asyncio.Future[Resolution]]] = {}
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._main: list[_Poll] = []
        self._sides: list[_Poll] = []
        self._failures = 0

    @classmethod
    def for_loop(cls, key: str, factory: Callable[[], SharedGateWaiter]) -> SharedGateWaiter:
        """The running loop's waiter for ``key`` (a connection), made by ``factory`` the first time."""
        per_loop = cls._registry.setdefault(asyncio.get_running_loop(), {})
        waiter = per_loop.get(key)
        if waiter is None:
            waiter = per_loop[key] = factory()
        return waiter

    @classmethod
    def existing(cls, key: str) -> SharedGateWaiter | None:
        """The running loop's waiter for ``key``, if any trigger created it."""
        return cls._registry.get(asyncio.get_running_loop(), {}).get(key)

    @property
    def waiting(self) -> int:
        """Gates with at least one trigger waiting on them."""
        return len(self._waiters)

    # ------------------------------------------------------------------ the triggers' side

    async def wait(self, gate_id: str) -> Resolution:
        """Until ``gate_id`` leaves PENDING (its Gate) or the service refuses it (WaitRefused).
        Cancelling the caller deregisters it."""
        if not GATE_ID.match(gate_id):
            return WaitRefused(f"{gate_id!r} is not a gate id")
        future: asyncio.Future[Resolution] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(gate_id, set()).add(future)
        self._wake.set()
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._run(), name="gatehouse-waiter")
        try:
            return await future
        finally:
            self._forget(gate_id, future)

    def _forget(self, gate_id: str, future: asyncio.Future[Resolution]) -> None:
        futures = self._waiters.get(gate_id)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self._waiters[gate_id]
        if not self._waiters:
            self._wake.set()  # the pump notices there is nothing left and stops

    def _resolve(self, gate_id: str, resolution: Resolution) -> None:
        for future in self._waiters.pop(gate_id, ()):
            if not future.done():
                future.set_result(resolution)
                self.stats.resolved += 1

    # ------------------------------------------------------------------ the pump

    async def _run(self) -> None:
        client: AsyncWaitClient | None = None
        try:
            try:
                client = await self._client_factory()
            except Exception as exc:  # no credentials / bad connection: nothing can be waited on
                log.error("gatehouse: cannot reach the gate service: %s", exc)
                for gate_id in list(self._waiters):
                    self._resolve(gate_id, WaitRefused(str(exc)))
                return
            while self._waiters:
                await self._start_polls(client)
                if not self._waiters:  # every trigger went away during the batching window
                    break
                self._wake.clear()
                waker = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait([*self._in_flight(), waker], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waker.cancel()
                self._collect()
        finally:
            self._pump = None  # no await since the last look at _waiters: a new wait() starts a new pump
            polls, self._main, self._sides = self._in_flight(), [], []
            for poll in polls:
                poll.cancel()
            if client is not None:
                await _quietly_close(client)

    def _in_flight(self) -> list[asyncio.Task[WaitResult | None]]:
        return [p.task for p in (*self._main, *self._sides)]

    async def _start_polls(self, client: AsyncWaitClient) -> None:
        loop = asyncio.get_running_loop()
        if not self._main:
            ids = list(self._waiters)
            deadline = loop.time() + self.poll_timeout
            self._main = [
                self._start(client, chunk, self.poll_timeout, deadline, True) for chunk in self._chunks(ids)
            ]
            self.stats.cycles += 1
            return
        covered = frozenset().union(*(p.ids for p in (*self._main, *self._sides)))
        if not self._waiters.keys() - covered:
            return
        await asyncio.sleep(self.batch_window)  # let a burst of registrations share one side poll
        covered = frozenset().union(*(p.ids for p in (*self._main, *self._sides)))
        uncovered = [g for g in self._waiters if g not in covered]
        if not uncovered or not self._main:
            return
        deadline = max(p.deadline for p in self._main)
        timeout = max(0.5, deadline - loop.time())  # ends with the main poll; the next main covers all
        self._sides += [
            self._start(client, chunk, timeout, deadline, False) for chunk in self._chunks(uncovered)
        ]

    def _chunks(self, ids: list[str]) -> list[list[str]]:
        return [ids[i : i + self.max_ids] for i in range(0, len(ids), self.max_ids)]

    def _start(
        self, client: AsyncWaitClient, ids: list[str], timeout: float, deadline: float, main: bool
    ) -> _Poll:
        self.stats.note_poll(len(ids))
        task = asyncio.ensure_future(self._poll(client, ids, timeout))
        return _Poll(task, frozenset(ids), deadline, main)

    async def _poll(self, client: AsyncWaitClient, ids: list[str], timeout: float) -> WaitResult | None:
        try:
            result = await client.await_many(ids, timeout)
        except ServiceUnavailable as exc:
            await self._back_off(f"gate service unavailable: {exc}")
            return None
        except GatehouseError as exc:  # 4xx: the service answered, and said no
            raise _Refusal(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # a malformed answer or a bug: keep waiting, never pass a gate
            await self._back_off(f"unexpected error waiting on gates: {type(exc).__name__}: {exc}")
            return None
        self._failures = 0
        return result

    async def _back_off(self, message: str) -> None:
        self.stats.errors += 1
        self._failures += 1
        delay = min(self.max_backoff, 0.5 * 2 ** (self._failures - 1))
        log.warning(
            "gatehouse: %s; waiting %.1f s and polling again (no gate passes meanwhile)", message, delay
        )
        await asyncio.sleep(delay)

    def _collect(self) -> None:
        for poll in [p for p in (*self._main, *self._sides) if p.task.done()]:
            if poll.main:
                self._main.remove(poll)
            else:
                self._sides.remove(poll)
            self._settle(poll)

    def _settle(self, poll: _Poll) -> None:
        try:
            result = poll.task.result()
        except asyncio.CancelledError:
            return
        except _Refusal as exc:
            log.error("gatehouse: the gate service refused to wait on %d gate(s): %s", len(poll.ids), exc)
            for gate_id in poll.ids:
                self._resolve(gate_id, WaitRefused(str(exc)))
            return
        if result is None:  # backed off already; the ids are uncovered now and get polled again
            return
        for gate in result.changed:
            self._resolve(gate.id, gate)
        known = {g.id for g in result.changed}.union(result.pending)
        for gate_id in poll.ids - known:
            self._resolve(gate_id, WaitRefused(f"the gate service has no gate {gate_id}"))


async def _quietly_close(client: AsyncWaitClient) -> None:
    try:
        await client.aclose()
    except Exception as exc:  # closing a dead connection must not mask why the pump stopped
        log.debug("gatehouse: closing the wait client failed: %s", exc)
