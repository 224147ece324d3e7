"""What a gated task raises when it must not run, in Airflow's idiom — and in the core's family.

    AirflowFailException + gate_core.GateNotApproved     (fail now: retrying cannot change a decision)
     └── GateNotPassed         expired, cancelled, timed out, or the approval is not usable
          └── GateRejected     a person rejected the request (also a gate_core.GateRejected)
    AirflowException + gate_core.ServiceUnavailable      (fail; a retry may succeed)
     └── GateUnavailable       the service could not be asked or refused the wait

So ``except gate_core.GateRejected`` catches a rejection from every adapter, while Airflow sees
the exception types it acts on. ``on_reject="skip"`` raises Airflow's own AirflowSkipException
instead of GateRejected.
"""

from __future__ import annotations

from typing import Literal, NoReturn

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

import gate_core

OnReject = Literal["fail", "skip"]


class GateNotPassed(gate_core.GateNotApproved, AirflowFailException):
    """The gate expired, was cancelled or timed out, or its approval cannot be used for this step."""


class GateRejected(GateNotPassed, gate_core.GateRejected):
    """The gate was rejected; the step must not run."""


class GateUnavailable(gate_core.ServiceUnavailable, AirflowException):
    """No decision could be obtained (service unreachable or refusing); never treated as approval."""


def stop(error: gate_core.GatehouseError, on_reject: OnReject = "fail") -> NoReturn:
    """Raise the Airflow exception that stops a task whose gate did not let it run."""
    if isinstance(error, gate_core.GateNotApproved):
        if isinstance(error, gate_core.GateRejected) and on_reject == "skip":
            raise AirflowSkipException(str(error)) from error
        cls = GateRejected if isinstance(error, gate_core.GateRejected) else GateNotPassed
        raise cls(
            str(error),
            gate_id=error.gate_id,
            status=error.status,
            reason=error.reason,
            decided_by=error.decided_by,
        ) from error
    message = f"gatehouse: {error}"
    if isinstance(error, gate_core.ServiceUnavailable):
        raise GateUnavailable(message) from error
    raise GateNotPassed(message) from error
