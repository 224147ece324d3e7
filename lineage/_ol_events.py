"""OpenLineage events as the receiver takes them in: checked against the spec, then reduced to
what describes data without holding it.

Validation. An event declares its spec version in ``schemaURL``
(``https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent``). Versions 1-x (RunEvent
only) and 2-x (RunEvent, DatasetEvent, JobEvent) are accepted and checked with the JSON Schemas
below (``jsonschema-rs``, Draft 2020-12: about 10 µs an event). They are this project's own
transcription of the *required structure* of ``spec/OpenLineage.json`` of each major version —
fields, types, enums and required keys of the events, runs, jobs and datasets, and of every facet
the receiver keeps — not a copy of the spec file (openlineage-python ships only generated
classes, no schema file). Facets the receiver drops are not validated beyond "an object":
whatever they hold, it is never read. A version we do not know (3-x, or no ``schemaURL``) is
refused, not guessed.

Reduction ("never contents"). Kept, per dataset: the ``schema`` facet's field names and types
(nested fields flattened ``parent.child``), ``inputStatistics``/``outputStatistics`` and
``dataQualityMetrics`` row counts and sizes, ``tags`` (key, and the value when it is a short
classification token), and ``columnLineage`` edges (which input field feeds which output field).
The data source is the dataset's namespace (OpenLineage naming); the ``dataSource`` facet's URI is
dropped because it may carry credentials. Per run: the ids that tie it to an orchestrator run (the
``airflow``/``airflowDagRun`` facets' dag id, run id, task id, try number, map index; the
``parent`` facet's job and run ids). Everything else — every other facet, custom facets, field
descriptions, SQL text, error messages, run ``conf``, transformation descriptions — is dropped
before anything is stored.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import astuple, dataclass, field
from datetime import UTC, datetime
from typing import Any

import jsonschema_rs
import orjson

from lineage._errors import LineageInputError

MAX_EVENT_BYTES = 256 * 1024
MAX_BATCH_EVENTS = 1000
MAX_DEPTH = 32  # JSON nesting: Airflow's deepest facet nests about 8 levels
MAX_DATASETS = 500  # inputs + outputs of one event
MAX_FIELDS = 2000  # schema fields of one dataset, nested ones included
MAX_COLUMN_EDGES = 5000  # column-lineage edges of one dataset
MAX_INFLATED_BYTES = 16 * 1024 * 1024  # a gzip body is inflated at most this far (no zip bombs)
_TAG_VALUE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,39}$")
_SCHEMA_URL = re.compile(r"^https://openlineage\.io/spec/(\d+)-(\d+)-(\d+)/OpenLineage\.json(#.*)?$")
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_EVENT_TYPES = ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]


class InvalidOpenLineageEvent(LineageInputError):
    """An OpenLineage event the receiver will not take (422): not JSON, not the spec's shape, too
    big or too deep, or of a spec version it does not know."""


# ---------------------------------------------------------------- schemas (see module docstring)


def _text(max_length: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length}


_FACETS = {"type": "object", "maxProperties": 200}  # facets we drop: never read, only bounded
_SCHEMA_FIELD: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": _text(500),
        "type": {"type": "string", "maxLength": 200},
        "fields": {"type": "array", "items": {"$ref": "#/$defs/SchemaField"}, "maxItems": MAX_FIELDS},
    },
}
_STATS = {
    "type": "object",
    "properties": {
        "rowCount": {"type": "integer", "minimum": 0},
        "size": {"type": "integer", "minimum": 0},
        "bytes": {"type": "integer", "minimum": 0},
        "fileCount": {"type": "integer", "minimum": 0},
    },
}
_KEPT_DATASET_FACETS = {
    "schema": {
        "type": "object",
        "properties": {
            "fields": {"type": "array", "items": {"$ref": "#/$defs/SchemaField"}, "maxItems": MAX_FIELDS}
        },
    },
    "tags": {
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "maxItems": 200,
                "items": {
                    "type": "object",
                    "required": ["key", "value"],
                    "properties": {
                        "key": _text(100),
                        "value": {"type": "string", "maxLength": 1000},
                        "source": {"type": "string", "maxLength": 200},
                        "field": {"type": "string", "maxLength": 500},
                    },
                },
            }
        },
    },
    "columnLineage": {
        "type": "object",
        "properties": {
            "fields": {
                "type": "object",
                "maxProperties": MAX_FIELDS,
                "additionalProperties": {
                    "type": "object",
                    "required": ["inputFields"],
                    "properties": {
                        "inputFields": {
                            "type": "array",
                            "maxItems": 500,
                            "items": {
                                "type": "object",
                                "required": ["namespace", "name", "field"],
                                "properties": {
                                    "namespace": _text(500),
                                    "name": _text(1000),
                                    "field": _text(500),
                                },
                            },
                        }
                    },
                },
            }
        },
    },
}
_DATASET: dict[str, Any] = {
    "type": "object",
    "required": ["namespace", "name"],
    "properties": {
        "namespace": _text(500),
        "name": _text(1000),
        "facets": {"type": "object", "maxProperties": 200, "properties": _KEPT_DATASET_FACETS},
        "inputFacets": {
            "type": "object",
            "maxProperties": 200,
            "properties": {"inputStatistics": _STATS, "dataQualityMetrics": _STATS},
        },
        "outputFacets": {"type": "object", "maxProperties": 200, "properties": {"outputStatistics": _STATS}},
    },
}
_RUN_FACETS = {
    "type": "object",
    "maxProperties": 200,
    "properties": {
        "parent": {
            "type": "object",
            "required": ["run", "job"],
            "properties": {
                "run": {
                    "type": "object",
                    "required": ["runId"],
                    "properties": {"runId": {"type": "string", "pattern": _UUID}},
                },
                "job": {
                    "type": "object",
                    "required": ["namespace", "name"],
                    "properties": {"namespace": _text(500), "name": _text(1000)},
                },
                "root": {
                    "type": "object",
                    "properties": {
                        "run": {
                            "type": "object",
                            "required": ["runId"],
                            "properties": {"runId": {"type": "string", "pattern": _UUID}},
                        },
                    },
                },
            },
        },
        "airflow": {"type": "object"},
        "airflowDagRun": {"type": "object"},
    },
}
_RUN = {
    "type": "object",
    "required": ["runId"],
    "properties": {"runId": {"type": "string", "pattern": _UUID}, "facets": _RUN_FACETS},
}
_JOB = {
    "type": "object",
    "required": ["namespace", "name"],
    "properties": {"namespace": _text(500), "name": _text(1000), "facets": _FACETS},
}
_BASE = {
    "eventTime": {"type": "string", "format": "date-time", "maxLength": 64},
    "producer": {"type": "string", "format": "uri", "maxLength": 2000},
    "schemaURL": {"type": "string", "format": "uri", "maxLength": 2000},
}
_DATASETS = {"type": "array", "items": {"$ref": "#/$defs/Dataset"}, "maxItems": MAX_DATASETS}
_DEFS = {"SchemaField": _SCHEMA_FIELD, "Dataset": _DATASET}


def _event_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": _DEFS,
        "type": "object",
        "properties": {**_BASE, **properties},
        "required": ["eventTime", "producer", "schemaURL", *required],
    }


_RUN_EVENT_PROPS = {
    "eventType": {"enum": _EVENT_TYPES},
    "run": _RUN,
    "job": _JOB,
    "inputs": _DATASETS,
    "outputs": _DATASETS,
}
SCHEMAS: dict[tuple[int, str], dict[str, Any]] = {
    # 1-x: RunEvent only (eventType is optional there too: a RUNNING-less event is a fact)
    (1, "RunEvent"): _event_schema(_RUN_EVENT_PROPS, ["run", "job"]),
    (2, "RunEvent"): _event_schema(_RUN_EVENT_PROPS, ["run", "job"]),
    (2, "DatasetEvent"): _event_schema({"dataset": {"$ref": "#/$defs/Dataset"}}, ["dataset"]),
    (2, "JobEvent"): _event_schema({"job": _JOB, "inputs": _DATASETS, "outputs": _DATASETS}, ["job"]),
}
_VALIDATORS = {key: jsonschema_rs.Draft202012Validator(s) for key, s in SCHEMAS.items()}


# ---------------------------------------------------------------- parsing and checking


def decode_body(body: bytes, content_encoding: str | None, max_bytes: int = MAX_INFLATED_BYTES) -> Any:
    """The request body as JSON (gzip inflated, never past ``max_bytes``), or a clear 422."""
    encoding = (content_encoding or "").strip().lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, max_bytes + 1)
        except zlib.error as exc:
            raise InvalidOpenLineageEvent(f"the gzip body cannot be inflated: {exc}") from None
        if inflater.unconsumed_tail or len(body) > max_bytes:
            raise InvalidOpenLineageEvent(f"the body inflates past {max_bytes} bytes")
    elif encoding not in ("", "identity"):
        raise InvalidOpenLineageEvent(f"Content-Encoding {encoding[:40]!r} is not supported (gzip is)")
    if len(body) > max_bytes:
        raise InvalidOpenLineageEvent(f"the body is more than {max_bytes} bytes of JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass  # the standard library decides: see _decode_slowly
    return _decode_slowly(body)


def _decode_slowly(body: bytes) -> Any:
    """What orjson refused, as the receiver always read it: orjson is the fast path for the JSON
    every producer sends, but it refuses what ``json.loads`` takes (NaN and Infinity, which
    openlineage-python's ``json.dumps`` writes for a float metric in a facet; lone surrogate
    escapes, which ``validate`` refuses with its own message; nesting past 1024), and only the
    standard library's verdict and messages are the receiver's contract.

    UTF-8 only (RFC 8259 8.1; every OpenLineage client sends it): ``json.loads`` would also take
    UTF-16 and UTF-32, in which a character's bytes can hold a quote, and the depth count reads
    the body's bytes (``body_facts``) — such a body could hide its nesting from it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidOpenLineageEvent(f"the body is not UTF-8 JSON (RFC 8259): {exc.reason}") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidOpenLineageEvent(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidOpenLineageEvent(f"the body is not JSON: {str(exc)[:200]}") from None


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"(())")  # in valid JSON, which of the two never matters


@dataclass(frozen=True, slots=True)
class BodyFacts:
    """What the raw body already tells, so the per-event walks can be skipped (the hot path)."""

    depth: int  # deepest nesting of the whole body (a batch's array counts one)
    escapes: bool  # a backslash-u escape: only those make NUL or a lone surrogate (raw UTF-8 is checked)


def body_facts(body: bytes) -> BodyFacts:
    """Nesting depth from the brackets outside string literals, and whether any backslash-u
    escape appears. All at C speed: the body is valid JSON (decoded already), so its brackets
    nest properly, and each pass that deletes every innermost pair (left to right, not rescanning
    what a deletion joins: ``bytes.replace``) peels exactly one level. Counted up to MAX_DEPTH + 2:
    deeper is refused all the same, and a hostile body never costs more than that many passes."""
    # Escapes go first, whole (backslash and the character after it: \" \\ \n \u…), so that every
    # quote left delimits a string; keep only quotes and brackets (bytes.translate); then what
    # lies outside the strings is every other piece between quotes. Brackets become "(" and ")"
    # in the same pass, so a peel is one bytes.replace, not a regex substitution (a third of the
    # time of the whole function).
    unescaped = _ESCAPE.sub(b"", body) if b"\\" in body else body
    brackets = b"".join(unescaped.translate(_OPEN_CLOSE, _NOT_STRUCTURE).split(b'"')[::2])
    depth = 0
    while brackets and depth <= MAX_DEPTH + 1:
        brackets = brackets.replace(b"()", b"")
        depth += 1
    return BodyFacts(depth, b"\\u" in body)


def _depth_ok(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                return False
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                return False
            stack.extend((v, depth + 1) for v in item)
    return True


def _no_bad_text(value: Any, *, nul: bool = True) -> str | None:
    """What neither store can keep: NUL (unless ``nul`` is False) and lone surrogates, anywhere
    in ``value``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if nul and "\x00" in item:
                return "text must not contain NUL (\\x00) characters"
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return "text is not valid Unicode (lone surrogate)"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def _kept_text(seen: SeenEvent) -> list[Any]:
    """Every string of a reduced event: all of what may be stored."""
    text: list[Any] = [seen.job_namespace, seen.job_name, astuple(seen.run)]
    for ds in seen.datasets:
        text += [ds.namespace, ds.name, ds.fields, tuple(ds.tags), [astuple(e) for e in ds.column_edges]]
        text += [(column, tuple(tags)) for column, tags in ds.column_tags.items()]
    return text


def event_kind(event: Mapping[str, Any]) -> str:
    """RunEvent, DatasetEvent or JobEvent, by the keys the spec gives each."""
    if "run" in event:
        return "RunEvent"
    if "dataset" in event:
        return "DatasetEvent"
    if "job" in event:
        return "JobEvent"
    raise InvalidOpenLineageEvent("not an OpenLineage event: it has no run, job or dataset")


def validate(event: Any, facts: BodyFacts | None = None) -> tuple[int, str]:
    """Check one event; returns (spec major version, kind). Raises InvalidOpenLineageEvent.
    ``facts`` of the body it came from spare the walks they already answer."""
    if not isinstance(event, dict):
        raise InvalidOpenLineageEvent("an OpenLineage event is a JSON object")
    if facts is None and not _depth_ok(event):
        raise InvalidOpenLineageEvent(f"JSON nested deeper than {MAX_DEPTH} levels")
    # Lone surrogates anywhere: the schema validator cannot even read such text. NUL is refused
    # only in what is kept (``reduce``): a dropped facet's NUL is never stored, so never a problem.
    problem = _no_bad_text(event, nul=False) if facts is None or facts.escapes else None
    if problem:
        raise InvalidOpenLineageEvent(problem)
    url = event.get("schemaURL")
    match = _SCHEMA_URL.match(url) if isinstance(url, str) else None
    if match is None:
        raise InvalidOpenLineageEvent(
            "schemaURL must name the OpenLineage spec version, e.g. "
            "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
        )
    major = int(match.group(1))
    kind = event_kind(event)
    validator = _VALIDATORS.get((major, kind))
    if validator is None:
        raise InvalidOpenLineageEvent(f"OpenLineage spec {major}-x has no {kind} this receiver knows")
    if not validator.is_valid(event):
        error = next(iter(validator.iter_errors(event)))
        where = "/".join(str(p) for p in error.instance_path) or "(event)"
        raise InvalidOpenLineageEvent(
            f"{kind} does not match spec {major}-x at {where}: {error.message[:300]}"
        )
    return major, kind


# ---------------------------------------------------------------- reduction


@dataclass(frozen=True, slots=True)
class ColumnEdge:
    upstream: str  # NAMESPACE/NAME
    upstream_field: str
    downstream_field: str


@dataclass(frozen=True, slots=True)
class SeenDataset:
    namespace: str
    name: str
    role: str  # input | output | dataset (a DatasetEvent's)
    fields: tuple[tuple[str, str], ...] = ()
    tags: frozenset[str] = frozenset()
    column_tags: Mapping[str, frozenset[str]] = field(default_factory=dict)
    row_count: int | None = None
    bytes: int | None = None
    column_edges: tuple[ColumnEdge, ...] = ()

    @property
    def qualified_name(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class RunIds:
    """The ids that tie an OpenLineage run to its orchestrator's run (nothing else of the run)."""

    dag_id: str | None = None
    dag_run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    map_index: int | None = None
    parent_run_id: str | None = None
    parent_job: str | None = None  # NAMESPACE/NAME
    root_run_id: str | None = None


@dataclass(frozen=True, slots=True)
class SeenEvent:
    """One event reduced to what may be stored."""

    kind: str
    event_type: str
    event_time: datetime
    ol_run_id: str | None
    job_namespace: str
    job_name: str
    run: RunIds
    datasets: tuple[SeenDataset, ...]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


def _flat_fields(
    fields: Any, prefix: str = "", out: list[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    """Schema fields, nested ones as ``parent.child``, in order (one list, no generator chain:
    this runs for every field of every dataset of every event)."""
    out = [] if out is None else out
    for item in fields if isinstance(fields, list) else ():
        name = prefix + item["name"]
        kind = item.get("type") or ""
        out.append((name, kind[:200] if isinstance(kind, str) else str(kind)[:200]))
        nested = item.get("fields")
        if nested:
            _flat_fields(nested, name + ".", out)
    return out


def _tag(key: str, value: str) -> str | None:
    key = key.strip().lower()
    value = value.strip().lower()
    if not _TAG_VALUE.match(key):
        return None
    if value in ("", "true", "yes", "1"):
        return key
    return f"{key}:{value}" if _TAG_VALUE.match(value) and len(key) + len(value) < 100 else key


def _dataset(raw: Mapping[str, Any], role: str) -> SeenDataset:
    facets = raw.get("facets") or {}
    stats: Mapping[str, Any] = {}
    if role == "input":
        facets_in = raw.get("inputFacets") or {}
        stats = facets_in.get("inputStatistics") or facets_in.get("dataQualityMetrics") or {}
    elif role == "output":
        stats = (raw.get("outputFacets") or {}).get("outputStatistics") or {}
    fields = tuple(_flat_fields((facets.get("schema") or {}).get("fields")))[:MAX_FIELDS]
    tags: set[str] = set()
    column_tags: dict[str, set[str]] = {}
    for item in (facets.get("tags") or {}).get("tags") or ():
        tag = _tag(item["key"], item["value"])
        if tag is None:
            continue
        column = item.get("field")
        if column:
            column_tags.setdefault(column[:500], set()).add(tag)
        else:
            tags.add(tag)
    edges = []
    for out_field, spec in ((facets.get("columnLineage") or {}).get("fields") or {}).items():
        for source in spec["inputFields"]:
            edges.append(
                ColumnEdge(f"{source['namespace']}/{source['name']}", source["field"], out_field[:500])
            )
            if len(edges) >= MAX_COLUMN_EDGES:
                break
    return SeenDataset(
        namespace=raw["namespace"],
        name=raw["name"],
        role=role,
        fields=fields,
        tags=frozenset(tags),
        column_tags={k: frozenset(v) for k, v in column_tags.items()},
        row_count=_int(stats.get("rowCount")),
        bytes=_int(stats.get("size", stats.get("bytes"))),
        column_edges=tuple(edges),
    )


def _str(value: Any, limit: int = 500) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _run_ids(run: Mapping[str, Any]) -> RunIds:
    facets = run.get("facets") or {}
    airflow = facets.get("airflow") or facets.get("airflowDagRun") or {}
    dag = _obj(airflow.get("dag"))
    dag_run = _obj(airflow.get("dagRun"))
    task = _obj(airflow.get("task"))
    ti = _obj(airflow.get("taskInstance"))
    parent = facets.get("parent") or {}
    root = parent.get("root") or {}
    parent_job = parent.get("job")
    return RunIds(
        dag_id=_str(dag.get("dag_id")) or _str(dag_run.get("dag_id")),
        dag_run_id=_str(dag_run.get("run_id")),
        task_id=_str(task.get("task_id")),
        try_number=_int(ti.get("try_number")),
        map_index=_int(ti.get("map_index")),
        # lower-cased as the event's own runId is: a parent named in capitals is the same run
        parent_run_id=_lower(_str(parent.get("run", {}).get("runId"), 64)),
        parent_job=f"{parent_job['namespace']}/{parent_job['name']}" if parent_job else None,
        root_run_id=_lower(_str((root.get("run") or {}).get("runId"), 64)),
    )


def _time(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidOpenLineageEvent(f"eventTime {text[:64]!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise InvalidOpenLineageEvent("eventTime needs a timezone offset (the spec requires one)")
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise InvalidOpenLineageEvent("eventTime is out of range") from None


def reduce(event: Mapping[str, Any], kind: str, facts: BodyFacts | None = None) -> SeenEvent:
    """An event already validated, reduced to what may be stored (see the module docstring);
    InvalidOpenLineageEvent if what is kept holds text no store can keep (``facts`` of the body
    it came from: without a backslash-u escape, it cannot)."""
    seen = _reduce(event, kind)
    problem = _no_bad_text(_kept_text(seen)) if facts is None or facts.escapes else None
    if problem:
        raise InvalidOpenLineageEvent(problem)
    return seen


def _reduce(event: Mapping[str, Any], kind: str) -> SeenEvent:
    at = _time(event["eventTime"])
    if kind == "DatasetEvent":
        return SeenEvent(
            kind, "DATASET", at, None, "", "", RunIds(), (_dataset(event["dataset"], "dataset"),)
        )
    datasets = tuple(
        [_dataset(d, "input") for d in event.get("inputs") or ()]
        + [_dataset(d, "output") for d in event.get("outputs") or ()]
    )
    if len(datasets) > MAX_DATASETS:
        raise InvalidOpenLineageEvent(f"an event names at most {MAX_DATASETS} datasets")
    job = event["job"]
    if kind == "JobEvent":
        return SeenEvent(kind, "JOB", at, None, job["namespace"], job["name"], RunIds(), datasets)
    run = event["run"]
    return SeenEvent(
        kind,
        str(event.get("eventType") or "OTHER"),
        at,
        run["runId"].lower(),  # the schema's pattern admits only the canonical 8-4-4-4-12 form
        job["namespace"],
        job["name"],
        _run_ids(run),
        datasets,
    )
