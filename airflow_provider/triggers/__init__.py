"""GateTrigger, its typed GateEvent payload, and the waiter all gate triggers share."""
