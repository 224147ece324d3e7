"""AccessEvents as OpenLineage RunEvents, sent through openlineage-python's own transports.

Events go out through a standard ``OpenLineageClient()``, so its usual configuration applies:
``OPENLINEAGE_URL`` (+ ``OPENLINEAGE_API_KEY``), ``OPENLINEAGE__TRANSPORT__*`` variables or an
``openlineage.yml`` (``OPENLINEAGE_CONFIG``, the working directory, ``~/.openlineage``).

Per dataset an event carries the ``schema``, ``dataSource`` and ``tags`` facets (column tags as
tags with a ``field``: the 1-2-0 schema facet has no per-field tags) and ``inputStatistics`` /
``outputStatistics``; the run carries the ``gatehouse_approval`` facet when a gate is given, whose
JSON schema ships in ``lineage/schemas``. Everything comes from AccessEvents, whose types leave no
field for a cell value; exception texts are withheld for the same reason (they can quote data).

An event the transport cannot deliver is spooled, one JSON file per event, and sent again
oldest-first before the next one (order matters: a COMPLETE must not overtake its START).
"""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import attr
from openlineage.client import OpenLineageClient
from openlineage.client import facet_v2 as ol
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.serde import Serde
from openlineage.client.transport import Transport
from openlineage.client.utils import RedactMixin
from openlineage.client.uuid import generate_new_uuid

import gate_core
from gate_core import ConfigError, DatasetRef, Gate, RunContext, Settings
from lineage._errors import EmitFailed
from lineage._models import AccessEvent, ColumnInfo, Operation

if TYPE_CHECKING:
    from openlineage.client.client import Event

log = logging.getLogger("gatehouse.lineage.openlineage")

APPROVAL_FACET_KEY = "gatehouse_approval"  # custom facets carry their project's prefix
APPROVAL_FACET_SCHEMA_URL = (
    "https://gatehouse.dev/spec/facets/1-0-0/GatehouseApprovalRunFacet.json#/$defs/GatehouseApprovalRunFacet"
)
_VERSION = gate_core.__version__  # "0.0.0" from a source tree that was never installed
PRODUCER = f"https://gatehouse.dev/gatehouse/{_VERSION}"
_TAG_SOURCE = "GATEHOUSE"
# A fixed namespace makes run ids deterministic: START and COMPLETE built apart still match.
_RUN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://gatehouse.dev/openlineage/run")
_OUTPUTS = frozenset({Operation.WRITE, Operation.EXPORT, Operation.DELETE})
_InputStats = ol.input_statistics_input_dataset.InputStatisticsInputDatasetFacet
_OutputStats = ol.output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet


@attr.define(kw_only=True)
class GatehouseApprover(RedactMixin):
    """One approval: who, how they were authenticated, when, and what they said."""

    principal_id: str
    display_name: str
    via: str
    at: str
    comment: str | None = None


@attr.define(kw_only=True)
class GatehouseApprovalRunFacet(ol.RunFacet):
    """The human approval this run went ahead under (schema: ``approval_facet_schema()``)."""

    gate_id: str
    status: str
    action: str
    rule: str
    explanation: str
    required_approvals: int
    approvers: list[GatehouseApprover] = attr.field(factory=list)
    requested_at: str
    decided_at: str | None = None
    expires_at: str
    policy_hash: str
    binding_hash: str
    break_glass: bool = False

    @staticmethod
    def _get_schema() -> str:
        return APPROVAL_FACET_SCHEMA_URL


def approval_facet_schema() -> dict[str, Any]:
    """The approval facet's JSON schema, as shipped in the package."""
    text = resources.files("lineage").joinpath("schemas/GatehouseApprovalRunFacet.json").read_text("utf-8")
    return cast("dict[str, Any]", json.loads(text))


def _iso(moment: datetime) -> str:
    # OpenLineage needs an offset; a naive time from a caller is taken as UTC, as Gatehouse stores.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def approval_facet(gate: Gate) -> GatehouseApprovalRunFacet:
    """The approval facet of ``gate``: who approved what, under which rule, when."""
    return GatehouseApprovalRunFacet(
        producer=PRODUCER,
        gate_id=gate.id,
        status=gate.status.value,
        action=gate.request.action,
        rule=gate.rule,
        explanation=gate.explanation,
        required_approvals=gate.required_approvals,
        approvers=[
            GatehouseApprover(
                principal_id=d.principal_id,
                display_name=d.display_name,
                via=d.via.value,
                at=_iso(d.at),
                comment=d.comment or None,
            )
            for d in gate.approvals
        ],
        requested_at=_iso(gate.created_at),
        decided_at=_iso(gate.decided_at) if gate.decided_at else None,
        expires_at=_iso(gate.expires_at),
        policy_hash=gate.policy_hash,
        binding_hash=gate.binding_hash,
        break_glass=any(d.break_glass for d in gate.approvals),
    )


def job_for(run: RunContext, namespace: str | None = None) -> Job:
    """The job: ``gatehouse.<orchestrator>`` (or ``namespace`` / ``OPENLINEAGE_NAMESPACE``, the
    variable OpenLineage integrations use) and ``pipeline[.task]``."""
    name = ".".join(part for part in (run.pipeline, run.task_id) if part) or "adhoc"
    namespace = namespace or os.environ.get("OPENLINEAGE_NAMESPACE") or f"gatehouse.{run.orchestrator}"
    return Job(namespace=namespace, name=name)


def run_uuid_for(run: RunContext) -> str:
    """The OpenLineage runId (a UUID) of one task try: the same context gives the same id. Without a
    ``run_id`` there is nothing to be deterministic on, so a fresh time-ordered id is drawn."""
    if not run.run_id:
        return str(generate_new_uuid())
    key = "\x1f".join((run.orchestrator, run.pipeline, run.run_id, run.task_id, str(run.try_number)))
    return str(uuid.uuid5(_RUN_NAMESPACE, key))


@dataclass
class _Usage:
    """One dataset in one role (input or output), merged over the run's accesses of it."""

    ref: DatasetRef
    columns: dict[str, ColumnInfo] = field(default_factory=dict)
    counts: list[tuple[int | None, int | None]] = field(default_factory=list)

    def add(self, access: AccessEvent, *, count: bool) -> None:
        self.ref = self.ref.model_copy(update={"tags": self.ref.tags | access.dataset.tags})
        for column in access.columns:
            seen = self.columns.get(column.name)
            self.columns[column.name] = (
                seen.model_copy(update={"tags": seen.tags | column.tags}) if seen else column
            )
        if count:
            self.counts.append((access.row_count, access.bytes))


def _total(values: list[int | None]) -> int | None:
    """A sum only when every access reported the number: a partial sum would pass for the whole."""
    known = [v for v in values if v is not None]
    return sum(known) if known and len(known) == len(values) else None


def _statistics(usage: _Usage, reads: bool) -> dict[str, Any]:
    rows, size = _total([c[0] for c in usage.counts]), _total([c[1] for c in usage.counts])
    if rows is None and size is None:
        return {}
    key, facet = ("inputStatistics", _InputStats) if reads else ("outputStatistics", _OutputStats)
    return {key: facet(producer=PRODUCER, rowCount=rows, size=size)}


def _dataset_facets(usage: _Usage) -> dict[str, ol.DatasetFacet]:
    ref = usage.ref
    facets: dict[str, ol.DatasetFacet] = {
        "dataSource": ol.datasource_dataset.DatasourceDatasetFacet(
            producer=PRODUCER, name=ref.namespace, uri=ref.namespace if "://" in ref.namespace else None
        )
    }
    if usage.columns:
        facets["schema"] = ol.schema_dataset.SchemaDatasetFacet(
            producer=PRODUCER,
            fields=[
                ol.schema_dataset.SchemaDatasetFacetFields(name=c.name, type=c.type or None, fields=None)
                for c in usage.columns.values()
            ],
        )
    tags = [
        ol.tags_dataset.TagsDatasetFacetFields(key=t, value="true", source=_TAG_SOURCE)
        for t in sorted(ref.tags)
    ]
    tags += [
        ol.tags_dataset.TagsDatasetFacetFields(key=t, value="true", source=_TAG_SOURCE, field=c.name)
        for c in usage.columns.values()
        for t in sorted(c.tags)
    ]
    if tags:
        facets["tags"] = ol.tags_dataset.TagsDatasetFacet(producer=PRODUCER, tags=tags)
    return facets


def run_event(
    state: RunState,
    run: RunContext,
    accesses: Sequence[AccessEvent],
    *,
    at: datetime,
    gate: Gate | None = None,
    error: BaseException | str | None = None,
    run_uuid: str | None = None,
    job_namespace: str | None = None,
) -> RunEvent:
    """One RunEvent. Reads are inputs; writes, exports and deletes are outputs. Statistics are
    left off START (nothing has been counted yet). On FAIL, an exception contributes its type
    only — its text can quote the very values lineage must not carry; pass a ``str`` you vouch for
    to say more."""
    with_stats = state is not RunState.START
    inputs: dict[tuple[str, str], _Usage] = {}
    outputs: dict[tuple[str, str], _Usage] = {}
    for access in accesses:
        role = outputs if access.operation in _OUTPUTS else inputs
        key = (access.dataset.namespace, access.dataset.name)
        usage = role.setdefault(key, _Usage(access.dataset))
        usage.add(access, count=with_stats and access.operation is not Operation.DELETE)
    run_facets: dict[str, ol.RunFacet] = {}
    if gate is not None:
        run_facets[APPROVAL_FACET_KEY] = approval_facet(gate)
    if state is RunState.FAIL and error is not None:
        message = error if isinstance(error, str) else f"{type(error).__qualname__} (message withheld)"
        run_facets["errorMessage"] = ol.error_message_run.ErrorMessageRunFacet(
            producer=PRODUCER, message=message, programmingLanguage="PYTHON"
        )
    ins = [
        InputDataset(u.ref.namespace, u.ref.name, facets=_dataset_facets(u), inputFacets=_statistics(u, True))
        for u in inputs.values()
    ]
    outs = [
        OutputDataset(
            u.ref.namespace, u.ref.name, facets=_dataset_facets(u), outputFacets=_statistics(u, False)
        )
        for u in outputs.values()
    ]
    return RunEvent(
        eventType=state,
        eventTime=_iso(at),
        producer=PRODUCER,
        run=Run(runId=run_uuid or run_uuid_for(run), facets=run_facets),
        job=job_for(run, job_namespace),
        inputs=ins,
        outputs=outs,
    )


def run_events(
    run: RunContext,
    accesses: Sequence[AccessEvent],
    *,
    gate: Gate | None = None,
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
    error: BaseException | str | None = None,
    job_namespace: str | None = None,
) -> tuple[RunEvent, RunEvent]:
    """START and COMPLETE (FAIL when ``error`` is given) for one task try, with one runId.
    Times default to the first and last access (now, without accesses)."""
    times = sorted(a.at for a in accesses) or [datetime.now(UTC)]
    run_uuid = run_uuid_for(run)
    common: dict[str, Any] = {"gate": gate, "run_uuid": run_uuid, "job_namespace": job_namespace}
    start = run_event(RunState.START, run, accesses, at=started_at or times[0], **common)
    end_state = RunState.COMPLETE if error is None else RunState.FAIL
    end = run_event(end_state, run, accesses, at=ended_at or times[-1], error=error, **common)
    return start, end


@dataclass(frozen=True)
class FlushResult:
    """What one pass over the spool did; ``error`` says why the oldest event is still waiting."""

    delivered: int
    remaining: int
    error: str | None = None


def _failure(exc: BaseException, transport_kind: str | None) -> str:
    """One short reason, without the event: transports' exceptions name the endpoint, not the body."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return f"OpenLineage endpoint answered HTTP {status}"
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "Timeout" in names:
        return "OpenLineage endpoint timed out"
    if "ConnectionError" in names:
        return "OpenLineage endpoint unreachable"
    return f"OpenLineage {transport_kind} transport failed ({type(exc).__name__}: {exc})"[:300]


class _Spooling(Transport):
    """Between the client and its transport, so that what is sent or spooled is the event as the
    client finished it: its run tags and environment facets added, its filters applied."""

    def __init__(self, emitter: LineageEmitter, inner: Transport) -> None:
        self.emitter, self.inner = emitter, inner
        self.kind = inner.kind  # the client checks it: "noop" means OpenLineage is disabled

    def emit(self, event: Event) -> None:
        self.emitter._deliver(event)

    def close(self, timeout: float = -1) -> bool:
        return self.inner.close(timeout)


class LineageEmitter:
    """Sends RunEvents through an ``OpenLineageClient`` (default: ``OpenLineageClient()``, so the
    standard OpenLineage configuration applies) and spools what it cannot deliver.

    ``spool_dir`` (or ``GATEHOUSE_OPENLINEAGE_SPOOL``; default ``$GATEHOUSE_HOME/openlineage-spool``)
    holds one JSON file per undelivered event. ``on_error`` (or ``GATEHOUSE_OPENLINEAGE_ON_ERROR``):
    ``"spool"`` (default) logs one warning line and lets the pipeline go on; ``"raise"`` spools too —
    nothing is lost either way — then raises ``EmitFailed`` so the step fails. After a failure,
    events are spooled without another attempt for ``retry_interval`` seconds: each attempt at a
    dead endpoint costs the transport's timeout and retries (about 9 s with the http defaults).
    """

    def __init__(
        self,
        client: OpenLineageClient | None = None,
        *,
        spool_dir: Path | str | None = None,
        on_error: Literal["spool", "raise"] | None = None,
        job_namespace: str | None = None,
        retry_interval: float = 30.0,
    ) -> None:
        mode = on_error or os.environ.get("GATEHOUSE_OPENLINEAGE_ON_ERROR") or "spool"
        if mode not in ("spool", "raise"):
            raise ConfigError(f"OpenLineage on_error must be 'spool' or 'raise', not {mode!r}")
        self.on_error = mode
        default_spool = Settings.from_env().home / "openlineage-spool"
        self.spool_dir = Path(spool_dir or os.environ.get("GATEHOUSE_OPENLINEAGE_SPOOL") or default_spool)
        self.job_namespace = job_namespace
        self.retry_interval = retry_interval
        self._paused_until, self._paused_reason = 0.0, ""
        # A copy: wrapping its transport must not change a client the caller also uses elsewhere.
        self.client = copy.copy(client) if client is not None else OpenLineageClient()
        self.transport = self.client.transport
        self.client.transport = _Spooling(self, self.transport)

    def emit_run(
        self,
        run: RunContext,
        accesses: Sequence[AccessEvent],
        *,
        gate: Gate | None = None,
        error: BaseException | str | None = None,
    ) -> None:
        """Build and send START and COMPLETE (or FAIL) for one task try; see ``run_events``."""
        for event in run_events(run, accesses, gate=gate, error=error, job_namespace=self.job_namespace):
            self.emit(event)

    def record_many(self, events: Sequence[AccessEvent], /) -> None:
        """As a ``lineage`` sink: one RUNNING event per run in the batch, with its datasets and
        statistics (START and COMPLETE/FAIL, with the approval facet, come from ``emit_run`` at the
        step's edges)."""
        by_run: dict[RunContext, list[AccessEvent]] = {}
        for access in events:
            by_run.setdefault(access.run, []).append(access)
        for run, batch in by_run.items():
            at = max(a.at for a in batch)
            self.emit(run_event(RunState.RUNNING, run, batch, at=at, job_namespace=self.job_namespace))

    def emit(self, event: RunEvent) -> None:
        """Send ``event`` after any spooled ones, or spool it (see ``on_error``)."""
        self.client.emit(event)

    def _waiting_for(self) -> str | None:
        """Why this event must queue behind spooled ones (so order is kept), or None: it may go.
        Without a spool nothing is touched: while the endpoint is up no directory or lock is needed."""
        if not self.spooled():
            return None
        if time.monotonic() < self._paused_until:
            return self._paused_reason
        return self.flush_spool().error

    def _pause(self, reason: str) -> None:
        self._paused_until, self._paused_reason = time.monotonic() + self.retry_interval, reason

    def _deliver(self, event: Event) -> None:
        cause: BaseException | None = None
        reason = self._waiting_for()
        if reason is None:
            try:
                self.transport.emit(event)
                return
            except Exception as exc:  # whatever the transport raises, lineage must not lose the event
                cause, reason = exc, _failure(exc, self.transport.kind)
                self._pause(reason)
        try:
            with self._locked():
                path = self._spool(Serde.to_json(event))
                waiting = len(self.spooled())
        except OSError as exc:  # both ways out are closed: say so, loudly
            message = f"{reason}, and the spool {self.spool_dir} is not writable ({exc}); event lost"
            if self.on_error == "raise":
                raise EmitFailed(message) from exc
            log.error(message)
            return
        message = f"{reason}; event spooled to {path} ({waiting} waiting); will retry"
        if self.on_error == "raise":
            raise EmitFailed(f"{message} (on_error='raise' fails the step)") from cause
        log.warning(message)

    def flush_spool(self) -> FlushResult:
        """Send spooled events oldest-first, now; stop at the first failure (the rest keep their
        order). Each emit calls it first; call it to retry on demand (a command, a scheduled job)."""
        if self.transport.kind == "noop":
            return FlushResult(0, len(self.spooled()), "OpenLineage is disabled (OPENLINEAGE_DISABLED)")
        if not self.spooled():
            return FlushResult(0, 0)
        with self._locked():
            return self._flush()

    def spooled(self) -> list[Path]:
        """The spooled events, oldest first."""
        if not self.spool_dir.is_dir():
            return []
        return sorted(p for p in self.spool_dir.glob("*.json") if p.name[:20].isdigit())

    def _flush(self) -> FlushResult:
        delivered = 0
        for path in self.spooled():
            try:
                payload = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):  # hand-edited or truncated by a full disk: set aside, say so
                path.replace(path.with_suffix(".unreadable"))
                log.error("OpenLineage spool file %s is unreadable; moved aside as .unreadable", path.name)
                continue
            try:
                # Stock transports serialise through Serde, which takes this dict as it is; the
                # client finished the event (tags, environment, filters) before it was spooled.
                self.transport.emit(payload)
            except Exception as exc:
                reason = _failure(exc, self.transport.kind)
                self._pause(reason)
                return FlushResult(delivered, len(self.spooled()), reason)
            path.unlink()
            delivered += 1
        if delivered:
            log.info("OpenLineage: delivered %d spooled event(s); spool is empty", delivered)
        return FlushResult(delivered, 0)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Workers on one host share the spool: one flusher at a time, or two would send the same
        # file twice and could interleave their events out of order.
        self.spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.spool_dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _spool(self, text: str) -> Path:
        existing = self.spooled()
        # Names sort in emit order even if the wall clock steps back: never below the newest one.
        seq = max(time.time_ns(), int(existing[-1].name[:20]) + 1 if existing else 0)
        path = self.spool_dir / f"{seq:020d}-{os.getpid()}.json"
        temporary = path.with_name(f".{path.name}.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)  # atomic: a reader sees the whole event or none of it
        directory = os.open(self.spool_dir, os.O_RDONLY)
        try:
            os.fsync(directory)  # and the rename itself survives a crash
        finally:
            os.close(directory)
        return path
