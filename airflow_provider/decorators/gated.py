"""``@gated``: a TaskFlow function that runs only once a person approved it.

    @gated(action="export", datasets=["warehouse/customers#pii"], reason="quarterly report")
    @task(retries=2)
    def export_customers() -> str:
        df = read_customers()
        lineage.track_dataframe(df, dataset="warehouse/customers", operation="export")  # under the gate
        return write_csv(df)

    @task.gated(action="export", datasets=[...])     # the same, registered with the provider
    def export_customers() -> str: ...

The gate is part of the task itself, not a separate upstream task: the task opens its gate,
defers (no worker slot held) until people decide, then runs the function in the same try — so the
approval, the function's run and its retries are one task in the UI, and a retry finds the same
gate (the approval is re-used within its expiry; the consume is recorded per try). The function's
return value is the task's XCom as usual; the decision is pushed under ``gatehouse_decision``.
Inside the function, ``lineage.record_access``/``track_dataframe`` calls carry the run, the
requester and the gate id; the task's ``datasets``/``inlets``/``outlets`` are recorded after
the function returns. Arguments are GateOperator's (``BaseGateOperator``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import attrs
from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
from airflow.sdk.bases.decorator import is_decorated_task, task_decorator_factory

from airflow_provider import _lineage
from airflow_provider.operators._base import GATE_TEMPLATE_FIELDS, BaseGateOperator

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.bases.decorator import TaskDecorator

    from gate_core import Gate

DECISION_XCOM_KEY = "gatehouse_decision"


class GatedPythonOperator(BaseGateOperator, _PythonDecoratedOperator):
    """A ``@task`` function behind a Gatehouse gate (made by ``@gated`` / ``@task.gated``)."""

    template_fields: Sequence[str] = ("templates_dict", "op_args", "op_kwargs", *GATE_TEMPLATE_FIELDS)
    custom_operator_name = "@task.gated"

    def execute(self, context: Context) -> Any:
        return self._run_function(context, self.open_gate(context))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resumed by the trigger with its GateEvent payload."""
        return self._run_function(context, self.resume_gate(context, event))

    def _run_function(self, context: Context, gate: Gate) -> Any:
        context["ti"].xcom_push(key=DECISION_XCOM_KEY, value=self.decision(gate))
        request = self._request
        if request is None or not self.record_lineage:
            return _PythonDecoratedOperator.execute(self, context)
        with _lineage.scope(
            run=request.run, actor=request.requester, gate_id=gate.id, credentials=self.hook.credentials
        ):
            result = _PythonDecoratedOperator.execute(self, context)
        self.record_gate_lineage(gate)
        return result


def gated_task(
    python_callable: Callable[..., Any] | None = None, multiple_outputs: bool | None = None, **kwargs: Any
) -> TaskDecorator:
    """``@task.gated(action=..., ...)``: the provider's TaskFlow decorator."""
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=GatedPythonOperator,
        **kwargs,
    )


def gated(*, action: str, **gate_kwargs: Any) -> Callable[[Callable[..., Any]], TaskDecorator]:
    """Gate a TaskFlow function: put ``@gated(...)`` on top of ``@task`` (or use it alone)."""

    def wrap(function: Callable[..., Any]) -> TaskDecorator:
        if is_decorated_task(function):
            if function.operator_class is not _PythonDecoratedOperator:
                raise TypeError(
                    f"@gated wraps plain @task functions, not {function.operator_class.__name__}; "
                    "put a GateOperator upstream of other kinds of task"
                )
            kwargs = {**function.kwargs, "action": action, **gate_kwargs}
            return cast(
                "TaskDecorator", attrs.evolve(function, operator_class=GatedPythonOperator, kwargs=kwargs)
            )
        return gated_task(function, action=action, **gate_kwargs)

    return wrap
