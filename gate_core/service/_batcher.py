"""Group commit for decisions arriving over HTTP, Slack or the console.

One worker per process takes whatever decisions are queued and runs them as one
``Gatekeeper.decide_many`` transaction. At low load a batch is a single decision, so nothing
waits; under load, the requests that arrive while a batch commits form the next one. Each
caller still gets its own answer (its gate, or the error that refused it).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from gate_core._errors import GatehouseError
from gate_core._gatekeeper import DecisionRequest, Gatekeeper
from gate_core._models import Gate

log = logging.getLogger("gatehouse.service")


@dataclass
class _Pending:
    request: DecisionRequest
    answer: asyncio.Future[Gate]


class DecisionBatcher:
    def __init__(self, gatekeeper: Gatekeeper, *, max_batch: int = 128) -> None:
        self.gatekeeper = gatekeeper
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.decisions = 0

    async def decide(self, request: DecisionRequest) -> Gate:
        """Queue one decision and wait for its own outcome; raises what refused it."""
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run(self._queue), name="gatehouse-decision-batcher")
        answer: asyncio.Future[Gate] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(request, answer))
        return await answer

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                outcomes = await run_in_threadpool(self.gatekeeper.decide_many, [p.request for p in batch])
            except Exception as failure:  # the whole transaction failed (database away): all fail closed
                for pending in batch:
                    if not pending.answer.done():
                        pending.answer.set_exception(failure)
                continue
            self.batches += 1
            self.decisions += len(batch)
            for pending, outcome in zip(batch, outcomes, strict=True):
                if pending.answer.done():  # the caller went away; its decision still stands
                    continue
                if isinstance(outcome, GatehouseError):
                    pending.answer.set_exception(outcome)
                else:
                    pending.answer.set_result(outcome)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                log.debug("decision batcher stopped")
