"""Translate an Airflow task's context into what a gate asks: run, requester, datasets.

run          RunContext(orchestrator="airflow", pipeline=dag_id, run_id, task_id, try_number, url)
idempotency  airflow:{dag_id}:{run_id}:{task_id}:{map_index} — no try number, so a retried
             task finds its own gate instead of opening a second one
requester    the DAG run's triggering user as Airflow recorded it, else the ``requester=``
             argument, else the task owner; the pipeline's token (a service principal) submits
             on their behalf
datasets     ``datasets=["warehouse/customers#pii"]`` plus the task's ``inlets``/``outlets``
             (Airflow Assets: ``s3://bucket/key`` → namespace ``s3://bucket``, name ``key``)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow.sdk import Asset

from gate_core import DatasetRef, RunContext
from gate_core.session import RequesterClaim

log = logging.getLogger("airflow_provider")

ORCHESTRATOR = "airflow"
# dag.test() names this pseudo-user as the run's trigger; it is not a person who could be asked.
NOT_A_PERSON = frozenset({"dag_test"})


@dataclass(frozen=True, slots=True)
class TaskDatasets:
    """A task's datasets by role: what it reads, what it writes, and what the gate names."""

    inputs: tuple[DatasetRef, ...] = ()
    outputs: tuple[DatasetRef, ...] = ()
    declared: tuple[DatasetRef, ...] = ()

    @property
    def all(self) -> tuple[DatasetRef, ...]:
        """Every dataset once (by qualified name, tags merged), in declaration order."""
        merged: dict[str, DatasetRef] = {}
        for ref in (*self.declared, *self.inputs, *self.outputs):
            seen = merged.get(ref.qualified_name)
            merged[ref.qualified_name] = (
                ref if seen is None else seen.model_copy(update={"tags": seen.tags | ref.tags})
            )
        return tuple(merged.values())


def _asset_tags(asset: Asset) -> frozenset[str]:
    """Tags an Asset carries in ``extra={"tags": [...]}``."""
    tags = asset.extra.get("tags") if isinstance(asset.extra, Mapping) else None
    return frozenset(str(t) for t in tags) if isinstance(tags, list | tuple) else frozenset()


def _asset_ref(asset: Asset) -> DatasetRef:
    tags = _asset_tags(asset)
    for text in (asset.uri, asset.name):
        try:
            ref = DatasetRef.parse(text)
        except ValueError:
            continue
        return ref.model_copy(update={"tags": ref.tags | tags}) if tags else ref
    return DatasetRef(namespace=ORCHESTRATOR, name=asset.name, tags=tags)


def dataset_ref(item: object) -> DatasetRef | None:
    """One inlet/outlet or ``datasets=`` entry as a DatasetRef; None for what names no dataset
    yet (an AssetAlias resolves only after the task ran)."""
    if isinstance(item, DatasetRef):
        return item
    if isinstance(item, str):
        return DatasetRef.parse(item)
    if isinstance(item, Asset):
        return _asset_ref(item)
    log.warning("gatehouse: %r names no dataset the gate can show; list it in datasets=[...]", item)
    return None


def _refs(items: Iterable[object]) -> tuple[DatasetRef, ...]:
    return tuple(ref for ref in map(dataset_ref, items) if ref is not None)


def task_datasets(
    declared: Iterable[object], inlets: Iterable[object], outlets: Iterable[object]
) -> TaskDatasets:
    return TaskDatasets(inputs=_refs(inlets), outputs=_refs(outlets), declared=_refs(declared))


def run_context(context: Mapping[str, Any]) -> RunContext:
    ti = context["ti"]
    task_id = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
    try:
        url: str | None = ti.log_url
    except Exception:  # building the UI link needs config a bare worker may lack; it is optional
        url = None
    return RunContext(
        orchestrator=ORCHESTRATOR,
        pipeline=ti.dag_id,
        run_id=ti.run_id,
        task_id=task_id,
        try_number=max(1, int(ti.try_number or 1)),
        url=url,
    )


def idempotency_key(context: Mapping[str, Any]) -> str:
    ti = context["ti"]
    return f"{ORCHESTRATOR}:{ti.dag_id}:{ti.run_id}:{ti.task_id}:{ti.map_index}"


def requester_claims(
    explicit: str | None, context: Mapping[str, Any], owner: str | None
) -> tuple[RequesterClaim, ...]:
    """Who the task acts for, strongest first (``gate_core.session.resolve_requester`` picks): the
    DAG run's triggering user as Airflow recorded it, then ``requester=`` (templated: whoever
    triggers the run controls it), then the task's first owner."""
    claims = []
    user = getattr(context.get("dag_run"), "triggering_user_name", None)
    if user and user not in NOT_A_PERSON:
        claims.append(RequesterClaim(str(user), "Airflow triggering user", recorded_by_orchestrator=True))
    if explicit and explicit.strip():
        claims.append(RequesterClaim(explicit, "argument requester="))
    first_owner = (owner or "").split(",")[0].strip()
    if first_owner:
        claims.append(RequesterClaim(first_owner, "DAG owner"))
    return tuple(claims)
