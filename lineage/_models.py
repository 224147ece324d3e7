"""What a step did with data — metadata, never contents.

An AccessEvent says which dataset (OpenLineage naming), what operation, the schema (column
names, types and classification tags), how many rows and bytes, an optional content
fingerprint (a hash — never values), where it ran (orchestrator, pipeline, run, task, try),
who ran it, under which gate, and when. Nothing in it can carry a cell value: the types leave no
field for one.

Every text field is bounded and checked for what no store can keep (NUL, lone surrogates), so an
event that validates here is one both SQLite and PostgreSQL store faithfully.
"""

from __future__ import annotations

import base64
import enum
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gate_core import DatasetRef, RunContext
from lineage._errors import MalformedDataset, UnknownOperation
from lineage._schema import MAX_DATASET_BYTES

MAX_TAG = 100
MAX_BIGINT = 2**63 - 1  # row counts and bytes are BIGINT on PostgreSQL
# RFC 4648 base32 → Crockford's alphabet, digit for digit (value order = text order).
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ")
# Bounds on the run context (RunContext itself leaves them open): these columns are indexed.
_RUN_LIMITS = {"orchestrator": 100, "pipeline": 500, "run_id": 500, "task_id": 500, "url": 2000}


def new_event_id() -> str:
    """Sortable, unguessable ids (ULID layout: 48-bit milliseconds then 80 random bits, in
    Crockford base32 so that text order is time order), prefixed ``e``."""
    raw = (time.time_ns() // 1_000_000).to_bytes(6, "big") + secrets.token_bytes(10)
    return "e" + base64.b32encode(raw).decode("ascii")[:26].translate(_CROCKFORD)


def storable(text: str) -> str:
    """Refuse NUL (PostgreSQL text cannot hold it) and lone surrogates (not UTF-8). Hot path:
    ASCII text, the common case, costs two C-level scans."""
    if "\x00" in text:
        raise ValueError("text must not contain NUL (\\x00) characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text is not valid Unicode (lone surrogate)") from None
    return text


def check_storable(value: Any) -> None:
    """``storable`` at any depth of JSON-like data (query parameters, request bodies)."""
    if isinstance(value, str):
        storable(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key)
            check_storable(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            check_storable(item)


def _clean_tags(tags: frozenset[str]) -> frozenset[str]:
    cleaned = frozenset(t.strip().lower() for t in tags if t.strip())
    for tag in cleaned:
        if len(tag) > MAX_TAG:
            raise ValueError(f"tags are at most {MAX_TAG} characters")
        storable(tag)
    return cleaned


class Operation(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    EXPORT = "export"
    DELETE = "delete"


class ColumnInfo(BaseModel):
    """One column: its name, its type as the source reports it (``int64``, ``varchar(20)``) and
    classification tags (``pii``, ``email``…), from the catalog or from name detectors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=500)
    type: str = Field(default="", max_length=200)
    tags: frozenset[str] = frozenset()

    @field_validator("tags")
    @classmethod
    def _normalise_tags(cls, tags: frozenset[str]) -> frozenset[str]:
        return _clean_tags(tags)

    @field_validator("name", "type")
    @classmethod
    def _storable(cls, text: str) -> str:
        return storable(text)


class AccessEvent(BaseModel):
    """One access of one dataset by one step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=new_event_id, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    dataset: DatasetRef
    operation: Operation
    columns: tuple[ColumnInfo, ...] = Field(default=(), max_length=10_000)
    row_count: int | None = Field(default=None, ge=0, le=MAX_BIGINT)
    bytes: int | None = Field(default=None, ge=0, le=MAX_BIGINT)
    fingerprint: str | None = Field(default=None, pattern=r"^[a-z0-9]+:[0-9a-f]{16,128}$")
    run: RunContext = Field(default_factory=RunContext)
    actor: str = Field(
        min_length=1, max_length=200, description="principal id, or the OS user outside a pipeline"
    )
    gate_id: str | None = Field(default=None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    submitted_by: str | None = Field(
        default=None,
        max_length=200,
        description="who handed the event in, when not the actor (a service token)",
    )

    @model_validator(mode="before")
    @classmethod
    def _dataset_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("dataset"), str):
            data = {**data, "dataset": DatasetRef.parse(data["dataset"])}
        return data

    @field_validator("id", "actor", "gate_id", "submitted_by")
    @classmethod
    def _storable(cls, text: str | None) -> str | None:
        return None if text is None else storable(text)

    @field_validator("at")
    @classmethod
    def _aware_utc(cls, at: datetime) -> datetime:
        if at.tzinfo is None:
            raise ValueError("a naive time is ambiguous; give a timezone (UTC)")
        try:
            return at.astimezone(UTC)
        except OverflowError:
            raise ValueError("time is out of range") from None

    @field_validator("dataset")
    @classmethod
    def _dataset_bounds(cls, dataset: DatasetRef) -> DatasetRef:
        storable(dataset.namespace)
        storable(dataset.name)
        _clean_tags(dataset.tags)
        if len(dataset.qualified_name.encode("utf-8")) > MAX_DATASET_BYTES:
            raise ValueError(f"dataset name is longer than {MAX_DATASET_BYTES} bytes")
        return dataset

    @field_validator("run")
    @classmethod
    def _bounded_run(cls, run: RunContext) -> RunContext:
        for name, limit in _RUN_LIMITS.items():
            value = getattr(run, name)
            if value is not None:
                if len(value) > limit:
                    raise ValueError(f"run.{name} is at most {limit} characters")
                storable(value)
        if not 0 <= run.try_number <= 1_000_000:
            raise ValueError("run.try_number must be between 0 and 1000000")
        return run

    @property
    def tags(self) -> frozenset[str]:
        """Dataset tags plus every column tag: what policy rules match on."""
        return self.dataset.tags.union(*(c.tags for c in self.columns)) if self.columns else self.dataset.tags


def parse_dataset(text: str | DatasetRef) -> DatasetRef:
    """``NAMESPACE/NAME[#tag,tag]`` (OpenLineage naming) → DatasetRef, or MalformedDataset."""
    if isinstance(text, DatasetRef):
        return text
    if not isinstance(text, str):
        raise MalformedDataset(repr(text), "expected a string")
    if text != text.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise MalformedDataset(text, "no surrounding spaces or control characters")
    try:
        check_storable(text)
        dataset = DatasetRef.parse(text)
    except ValueError as exc:
        problem = str(exc) if "NUL" in str(exc) or "Unicode" in str(exc) else ""
        raise MalformedDataset(text, problem) from None
    if len(dataset.qualified_name.encode("utf-8")) > MAX_DATASET_BYTES:
        raise MalformedDataset(text[:80] + "…", f"longer than {MAX_DATASET_BYTES} bytes")
    return dataset


def parse_operation(value: str | Operation) -> Operation:
    if isinstance(value, Operation):
        return value
    try:
        return Operation(str(value).strip().lower())
    except ValueError:
        raise UnknownOperation(value, tuple(o.value for o in Operation)) from None
