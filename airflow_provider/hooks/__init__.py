"""The ``gatehouse`` connection type: GatehouseHook."""
