"""What a gated task raises when it must not run, in Airflow's idiom.

    AirflowFailException          (fail now; retrying cannot change a decision)
     ├── GateRejected             a person rejected the request (the reason is in the message)
     └── GateNotPassed            expired, cancelled, timed out, or the approval is not usable
    AirflowException              (fail; a retry may succeed)
     └── GateUnavailable          the service could not be asked or refused the wait

``on_reject="skip"`` raises Airflow's own AirflowSkipException instead of GateRejected.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class GateRejected(AirflowFailException):
    """The gate was rejected; the step must not run."""


class GateNotPassed(AirflowFailException):
    """The gate expired, was cancelled or timed out, or its approval cannot be used for this step."""


class GateUnavailable(AirflowException):
    """No decision could be obtained (service unreachable or refusing); never treated as approval."""
