"""GateOperator and the BaseGateOperator every gated task builds on."""
