"""Pause mode: the run shows as Paused in Prefect and continues the moment its gate is decided.

Prefect's ``pause_flow_run`` sleeps ``poll_interval`` seconds (10 by default) between reads of the
run's state, so a resume from elsewhere is noticed up to 10 s late; a small interval would read
the run's state from the API several times a second for as long as the gate stays open (hours).
This module pauses the run the way ``pause_flow_run`` does — a ``Paused`` state through Prefect's
orchestration with a pause key and a run-input schema — and then:

- a resumer thread long-polls the gate service (one HTTP request at a time, answered the moment
  a decision lands), wakes the flow at once (an in-process event, no polling in between) and
  resumes the run through Prefect's API with the verified GateDecision as its run input; the
  flow verifies and consumes the approval while that resume is under way, and its own code
  continues once both are done;
- the flow thread also reads the run's state every ``poll_seconds``, to notice a resume made
  elsewhere (the Prefect UI, ``watch_and_resume``) or a cancellation. A resume while the gate is
  still PENDING does not open it: the run is paused again under a fresh key and keeps waiting.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import State
from prefect.exceptions import Abort, Pause
from prefect.states import Paused
from prefect.utilities.engine import propose_state_sync

from gate_core import Gate, GateCancelled, GateClient, GateStatus, ServiceUnavailable
from prefect_blocks._decision import GateDecision, input_keyset, pause_key
from prefect_blocks._resume import resume_with_decision

log = logging.getLogger("gatehouse.prefect")

LONG_POLL_S = 50.0  # under the service's 60 s cap on one wait
PAUSE_GRACE_S = 60  # Prefect keeps the pause open this long past the gate's deadline
RESUME_TIMEOUT_S = 120.0  # one resume call, with the Prefect client's own retries


class PausedGate:
    """Pause the current flow run on ``gate`` and return the gate once it is decided.

    ``deadline`` (monotonic) is when the step stops waiting; past it the caller decides what
    an unanswered gate means. The returned gate may still be PENDING only in that case."""

    def __init__(
        self,
        *,
        gate: Gate,
        flow_run_id: UUID,
        new_client: Callable[[], GateClient],
        service_url: str,
        deadline: float,
        poll_seconds: float,
        description: str,
    ) -> None:
        self.gate = gate
        self.flow_run_id = flow_run_id
        self.new_client = new_client
        self.service_url = service_url
        self.deadline = deadline
        self.poll_seconds = max(0.05, poll_seconds)
        self.description = description
        self._resumer: _Resumer | None = None

    def wait(self) -> Gate:
        """Pause the run and block until the gate is decided (or the deadline); return the gate.

        Returns the moment the decision is known, while the resumer is still resuming the run
        in Prefect, so the caller can verify and consume the approval meanwhile: call
        ``resumed()`` before the step's own code runs."""
        with get_client(sync_client=True) as prefect:
            attempt = self._pause(prefect, 1)
            self._resumer = resumer = _Resumer(self)
            resumer.start()
            try:
                while True:
                    remaining = self.deadline - time.monotonic()
                    if resumer.decided.wait(max(0.0, min(self.poll_seconds, remaining))):
                        if resumer.gate is not None:
                            return resumer.gate
                        if resumer.error is not None:
                            raise resumer.error
                        return self._fresh_gate()  # the deadline passed without a decision
                    if remaining <= 0:
                        return self._fresh_gate()
                    state = prefect.read_flow_run(self.flow_run_id).state
                    if state is None or state.is_paused():
                        continue
                    if not state.is_running():
                        raise GateCancelled(
                            f"flow run left its pause on gate {self.gate.id} as "
                            f"{state.name or state.type.value}",
                            gate_id=self.gate.id,
                            status=GateStatus.PENDING.value,
                            reason=state.message or "",
                        )
                    gate = self._fresh_gate()  # resumed elsewhere: the service decides, not the input
                    if gate.status is not GateStatus.PENDING:
                        return gate
                    log.warning(
                        "flow run %s was resumed outside Gatehouse while gate %s is still PENDING; "
                        "pausing it again",
                        self.flow_run_id,
                        gate.id,
                    )
                    attempt = self._pause(prefect, attempt + 1)
            finally:
                resumer.stop.set()

    def resumed(self) -> None:
        """Block until the resumer has resumed the run in Prefect, if it is the one resuming it
        (it had the decision); raise if Prefect refused. Returns at once otherwise."""
        resumer = self._resumer
        if resumer is None or resumer.gate is None:
            return
        if not resumer.done.wait(RESUME_TIMEOUT_S):
            raise RuntimeError(f"Prefect did not resume flow run {self.flow_run_id} in {RESUME_TIMEOUT_S}s")
        if resumer.error is not None:
            raise resumer.error

    # ------------------------------------------------------------------ pausing

    def _pause(self, prefect: SyncPrefectClient, attempt: int) -> int:
        """Propose ``Paused`` under the first unused pause key from ``attempt`` on; save the
        run-input schema and description (what Prefect's UI shows on the paused run)."""
        used = prefect.read_flow_run(self.flow_run_id).empirical_policy.pause_keys or set()
        while pause_key(self.gate.id, attempt) in used:
            attempt += 1
        key = pause_key(self.gate.id, attempt)
        until = self.gate.expires_at + timedelta(seconds=PAUSE_GRACE_S)
        step_until = datetime.now(UTC) + timedelta(
            seconds=max(0.0, self.deadline - time.monotonic()) + PAUSE_GRACE_S
        )
        state: State[None] = Paused(
            pause_expiration_time=min(until, step_until),
            pause_key=key,
            message=self.description,
        )
        keyset = input_keyset(state.name or "Paused", key)
        state.state_details.run_input_keyset = {str(k): v for k, v in keyset.items()}
        try:
            accepted = propose_state_sync(prefect, state, flow_run_id=self.flow_run_id)
        except Abort as exc:
            raise RuntimeError(f"Prefect refused to pause the flow run: {exc}") from exc
        except Pause as exc:  # Prefect keeps one pause per run: another gate (or pause) holds it
            raise RuntimeError(
                f"flow run {self.flow_run_id} is already paused; in pause mode a flow run waits on "
                "one gate at a time (open concurrent gates from separate flow runs)"
            ) from exc
        if not accepted.is_paused():
            raise RuntimeError(f"Prefect refused to pause the flow run (it answered {accepted.type.value})")
        prefect.create_flow_run_input(self.flow_run_id, keyset["schema"], GateDecision.input_schema())
        prefect.create_flow_run_input(self.flow_run_id, keyset["description"], json.dumps(self.description))
        log.info("flow run %s paused on gate %s (pause key %s)", self.flow_run_id, self.gate.id, key)
        return attempt

    def _fresh_gate(self) -> Gate:
        client = self.new_client()
        try:
            return client.get(self.gate.id)
        finally:
            client.close()


class _Resumer(threading.Thread):
    """Long-polls the gate; when it is decided, wakes the flow (``decided``) and resumes the run
    with the decision as its run input (``done``)."""

    def __init__(self, paused: PausedGate) -> None:
        super().__init__(name=f"gatehouse-resumer-{paused.gate.id}", daemon=True)
        self.paused = paused
        self.decided = threading.Event()  # the wait is over: ``gate`` is decided, or ``error``
        self.done = threading.Event()  # ...and the run has been resumed, or that failed
        self.stop = threading.Event()
        self.gate: Gate | None = None
        self.error: BaseException | None = None
        self._context = contextvars.copy_context()  # Prefect's settings (API URL) live in context

    def run(self) -> None:
        self._context.run(self._run)

    def _run(self) -> None:
        paused = self.paused
        client = paused.new_client()
        try:
            with get_client(sync_client=True) as prefect:  # opened before the wait: no setup after it
                gate = self._wait_for_decision(client)
                if gate is None or self.stop.is_set():  # the flow stopped waiting: not ours to resume
                    return
                self.gate = gate
                self.decided.set()  # the flow verifies and consumes the approval meanwhile
                resume_with_decision(
                    prefect, paused.flow_run_id, GateDecision.from_gate(gate, paused.service_url)
                )
        except BaseException as exc:
            self.error = exc
        finally:
            client.close()
            self.decided.set()
            self.done.set()

    def _wait_for_decision(self, client: GateClient) -> Gate | None:
        backoff = 0.5
        while not self.stop.is_set():
            remaining = self.paused.deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                gate = client.wait(self.paused.gate.id, timeout=min(remaining, LONG_POLL_S))
            except ServiceUnavailable as exc:  # keep waiting through an outage; fail closed meanwhile
                log.warning("gate service unavailable while waiting on %s: %s", self.paused.gate.id, exc)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.5
            if gate.status is not GateStatus.PENDING:
                return gate
        return None
