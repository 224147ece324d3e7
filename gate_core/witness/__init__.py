"""`gatehouse witness`: an independent C2SP tlog-witness for Gatehouse audit logs (or any log
that signs C2SP checkpoints with Ed25519). Run it under another account or on another machine
than the log: it is the trust root an operator holding the log's signing key cannot rewrite."""

from gate_core.witness._state import Latest, WitnessState
from gate_core.witness._witness import Refused, Witness, WitnessHome

__all__ = ["Latest", "Refused", "Witness", "WitnessHome", "WitnessState"]
