"""GateSensor: wait for a gate opened elsewhere."""
