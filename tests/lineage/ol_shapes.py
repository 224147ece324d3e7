"""OpenLineage events in the shapes the OpenLineage project publishes, built here with
openlineage-python's own event and facet classes (and Airflow's provider's own run facet), so the
JSON is exactly what those integrations send:

    airflow_task(...)   Airflow's provider: job ``dag_id.task_id``, run facets ``airflow``
                        (dag, dagRun with its conf, task, taskInstance) and ``parent`` (the DAG run)
    spark(...)          Spark's listener for a job spark-submit'ed by an Airflow task: parent facet
                        naming the task's run, processing engine, schema, statistics, column lineage
    dbt_run(...)        dbt-ol's run-level job ``dbt-run-<project>`` (parent: the Airflow task)
    dbt_model(...)      a dbt model job ``<db>.<schema>.<model>``, parent: the dbt run
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from openlineage.client import facet_v2 as f
from openlineage.client.event_v2 import (
    DatasetEvent,
    InputDataset,
    Job,
    JobEvent,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
    StaticDataset,
)
from openlineage.client.serde import Serde

PRODUCER = "https://github.com/apache/airflow/tree/providers-openlineage/2.20.3"
SPARK_PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/integration/spark"
DBT_PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/integration/dbt"
PG = "postgres://127.0.0.1:5432"


def as_json(event: RunEvent | DatasetEvent | JobEvent) -> dict[str, Any]:
    data: dict[str, Any] = Serde.to_dict(event)
    return data


def schema(*fields: tuple[str, str]) -> f.schema_dataset.SchemaDatasetFacet:
    return f.schema_dataset.SchemaDatasetFacet(
        fields=[f.schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in fields]
    )


def table(name: str, *fields: tuple[str, str], rows: int | None = None, role: str = "input") -> Any:
    facets: dict[str, Any] = {
        "schema": schema(*fields),
        "dataSource": f.datasource_dataset.DatasourceDatasetFacet(name=PG, uri=f"{PG}/test"),
    }
    if role == "input":
        input_facets = {}
        if rows is not None:
            input_facets["inputStatistics"] = (
                f.input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
                    rowCount=rows, size=rows * 100
                )
            )
        return InputDataset(namespace=PG, name=name, facets=facets, inputFacets=input_facets)
    output_facets = {}
    if rows is not None:
        output_facets["outputStatistics"] = (
            f.output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=rows, size=rows * 100
            )
        )
    return OutputDataset(namespace=PG, name=name, facets=facets, outputFacets=output_facets)


def dag_run_uuid(dag_id: str, run_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"airflow/{dag_id}/{run_id}"))


def task_run_uuid(dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"airflow/{dag_id}/{run_id}/{task_id}/{try_number}"))


def airflow_task(
    dag_id: str,
    run_id: str,
    task_id: str,
    *,
    state: RunState = RunState.COMPLETE,
    inputs: list[Any] | None = None,
    outputs: list[Any] | None = None,
    at: datetime | None = None,
    try_number: int = 1,
    conf: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from airflow.providers.openlineage.plugins.facets import AirflowRunFacet

    ol_run = task_run_uuid(dag_id, run_id, task_id, try_number)
    run_facets: dict[str, Any] = {
        "airflow": AirflowRunFacet(
            dag={"dag_id": dag_id, "owner": "airflow", "description": "exports"},
            dagRun={"dag_id": dag_id, "run_id": run_id, "conf": conf or {}, "run_type": "manual"},
            task={"task_id": task_id, "operator_class": "SQLExecuteQueryOperator"},
            taskInstance={"try_number": try_number, "map_index": None, "log_url": "http://x"},
            taskUuid=ol_run,
        ),
        "parent": f.parent_run.ParentRunFacet(
            run=f.parent_run.Run(runId=dag_run_uuid(dag_id, run_id)),
            job=f.parent_run.Job(namespace="default", name=dag_id),
            root=f.parent_run.Root(
                run=f.parent_run.RootRun(runId=dag_run_uuid(dag_id, run_id)),
                job=f.parent_run.RootJob(namespace="default", name=dag_id),
            ),
        ),
    }
    event = RunEvent(
        eventType=state,
        eventTime=(at or datetime.now(UTC)).isoformat(),
        run=Run(runId=ol_run, facets=run_facets),
        job=Job(
            namespace="default",
            name=f"{dag_id}.{task_id}",
            facets={
                "jobType": f.job_type_job.JobTypeJobFacet(
                    processingType="BATCH", integration="AIRFLOW", jobType="TASK"
                ),
                "sql": f.sql_job.SQLJobFacet(query="SELECT * FROM customers"),
            },
        ),
        inputs=inputs or [],
        outputs=outputs or [],
        producer=PRODUCER,
    )
    return as_json(event)


def spark(
    parent_run_id: str,
    parent_job: str,
    *,
    inputs: list[Any],
    outputs: list[Any],
    state: RunState = RunState.COMPLETE,
    at: datetime | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    column_lineage = f.column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            "customer_id": f.column_lineage_dataset.Fields(
                inputFields=[
                    f.column_lineage_dataset.InputField(
                        namespace=PG, name="test.public.customers", field="id"
                    )
                ],
                transformationDescription="identity",
                transformationType="IDENTITY",
            )
        }
    )
    outs = []
    for out in outputs:
        outs.append(
            OutputDataset(
                namespace=out.namespace,
                name=out.name,
                facets={**(out.facets or {}), "columnLineage": column_lineage},
                outputFacets=out.outputFacets,
            )
        )
    event = RunEvent(
        eventType=state,
        eventTime=(at or datetime.now(UTC)).isoformat(),
        run=Run(
            runId=run_id or str(uuid.uuid4()),
            facets={
                "parent": f.parent_run.ParentRunFacet(
                    run=f.parent_run.Run(runId=parent_run_id),
                    job=f.parent_run.Job(namespace="default", name=parent_job),
                ),
                "processing_engine": f.processing_engine_run.ProcessingEngineRunFacet(
                    version="3.5.1", name="spark", openlineageAdapterVersion="1.54.0"
                ),
            },
        ),
        job=Job(namespace="default", name="export_app.execute_insert_into_hadoop_fs_relation_command"),
        inputs=inputs,
        outputs=outs,
        producer=SPARK_PRODUCER,
    )
    return as_json(event)


def dbt_run(
    parent_run_id: str | None, parent_job: str | None, run_id: str, *, at: datetime | None = None
) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    if parent_run_id and parent_job:
        facets["parent"] = f.parent_run.ParentRunFacet(
            run=f.parent_run.Run(runId=parent_run_id),
            job=f.parent_run.Job(namespace="default", name=parent_job),
        )
    event = RunEvent(
        eventType=RunState.START,
        eventTime=(at or datetime.now(UTC)).isoformat(),
        run=Run(runId=run_id, facets=facets),
        job=Job(
            namespace="dbt",
            name="dbt-run-jaffle_shop",
            facets={
                "jobType": f.job_type_job.JobTypeJobFacet(
                    processingType="BATCH", integration="DBT", jobType="JOB"
                )
            },
        ),
        producer=DBT_PRODUCER,
    )
    return as_json(event)


def dbt_model(
    dbt_run_id: str, model: str, *, inputs: list[Any], outputs: list[Any], at: datetime | None = None
) -> dict[str, Any]:
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=(at or datetime.now(UTC)).isoformat(),
        run=Run(
            runId=str(uuid.uuid4()),
            facets={
                "parent": f.parent_run.ParentRunFacet(
                    run=f.parent_run.Run(runId=dbt_run_id),
                    job=f.parent_run.Job(namespace="dbt", name="dbt-run-jaffle_shop"),
                )
            },
        ),
        job=Job(
            namespace="dbt",
            name=f"test.public.{model}",
            facets={
                "jobType": f.job_type_job.JobTypeJobFacet(
                    processingType="BATCH", integration="DBT", jobType="MODEL"
                ),
                "sql": f.sql_job.SQLJobFacet(query=f"select * from {model}"),
            },
        ),
        inputs=inputs,
        outputs=outputs,
        producer=DBT_PRODUCER,
    )
    return as_json(event)


def dataset_event(name: str, *fields: tuple[str, str]) -> dict[str, Any]:
    event = DatasetEvent(
        eventTime=datetime.now(UTC).isoformat(),
        producer=PRODUCER,
        dataset=StaticDataset(namespace=PG, name=name, facets={"schema": schema(*fields)}),
    )
    return as_json(event)


def job_event(name: str, *, inputs: list[Any], outputs: list[Any]) -> dict[str, Any]:
    event = JobEvent(
        eventTime=datetime.now(UTC).isoformat(),
        producer=PRODUCER,
        job=Job(namespace="default", name=name),
        inputs=inputs,
        outputs=outputs,
    )
    return as_json(event)


def later(minutes: float) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)
