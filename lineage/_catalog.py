"""The classification catalog: declared tags per dataset and per column, and the name detectors.

    # catalog.yaml ($GATEHOUSE_HOME/catalog.yaml, or GATEHOUSE_LINEAGE_CATALOG)
    version: 1
    datasets:
      warehouse/customers:          # NAMESPACE/NAME, or a glob on it: "warehouse/hr_*"
        tags: [pii, customer]
        columns:
          notes: [pii, free_text]   # what no name detector could guess
    builtin_detectors: true         # the default; false switches every built-in off
    detectors:
      name: false                   # switch one built-in off
      employee_id:                  # add one (or replace the built-in of that name)
        pattern: '(^|_)emp(loyee)?_?id$'
        tags: [pii, employee_id]

Classifying merges everything: a column's tags are what the caller gave, what the catalog
declares and what detectors find in its name; the dataset's tags are its own declared tags plus
every column tag, so one pii column makes the dataset pii for policy matching.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gate_core import DatasetRef, Settings
from lineage._detectors import Detector, Detectors, normalise
from lineage._errors import CatalogError
from lineage._models import MAX_TAG, ColumnInfo

_TAG = re.compile(rf"^[a-z0-9][a-z0-9_.:-]{{0,{MAX_TAG - 1}}}$")
Tags = list[str]


def _tag_list(tags: list[str]) -> list[str]:
    cleaned = [t.strip().lower() for t in tags]
    for tag in cleaned:
        if not _TAG.match(tag):
            raise ValueError(f"tag {tag!r} is not lower-case letters, digits, '_', '.', ':' or '-'")
    return cleaned


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _DatasetSpec(_Strict):
    tags: Tags = []
    columns: dict[str, Tags] = {}

    _tags = field_validator("tags")(_tag_list)

    @field_validator("columns")
    @classmethod
    def _column_tags(cls, columns: dict[str, Tags]) -> dict[str, Tags]:
        return {name: _tag_list(tags) for name, tags in columns.items()}


class _DetectorSpec(_Strict):
    pattern: str = Field(min_length=1, max_length=1000)
    tags: Tags = Field(min_length=1)

    _tags = field_validator("tags")(_tag_list)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return pattern


class _CatalogFile(_Strict):
    version: Literal[1] = 1
    datasets: dict[str, _DatasetSpec] = {}
    builtin_detectors: bool = True
    detectors: dict[str, _DetectorSpec | Literal[False]] = {}

    @field_validator("datasets")
    @classmethod
    def _dataset_keys(cls, datasets: dict[str, _DatasetSpec]) -> dict[str, _DatasetSpec]:
        for key in datasets:
            namespace, _, name = key.partition("/")
            if "#" in key or not namespace or not name:
                raise ValueError(f"{key!r} is not NAMESPACE/NAME (a glob like warehouse/hr_* is fine)")
        return datasets


@dataclass(frozen=True, slots=True)
class _Entry:
    tags: frozenset[str]
    columns: Mapping[str, frozenset[str]]  # keyed by normalised column name


@dataclass(frozen=True, slots=True)
class Classification:
    """A dataset and its columns with every tag that applies."""

    dataset: DatasetRef
    columns: tuple[ColumnInfo, ...]

    @property
    def tags(self) -> frozenset[str]:
        return self.dataset.tags


@dataclass(frozen=True)
class Catalog:
    """Declared dataset and column tags plus the detectors in force. ``Catalog()`` is the empty
    catalog with the built-in detectors."""

    exact: Mapping[str, _Entry] = field(default_factory=dict)
    globs: tuple[tuple[str, _Entry], ...] = ()
    detectors: Detectors = field(default_factory=Detectors)
    source: str = "<built-in>"

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogError(str(path), "", f"cannot read catalog file: {exc.strerror or exc}") from exc
        return cls.parse(text, source=str(path))

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, environ: Mapping[str, str] | None = None
    ) -> Catalog:
        """GATEHOUSE_LINEAGE_CATALOG if set (it must exist), else ``$GATEHOUSE_HOME/catalog.yaml``
        if present, else the built-in detectors alone."""
        env = os.environ if environ is None else environ
        if env.get("GATEHOUSE_LINEAGE_CATALOG"):
            return cls.load(env["GATEHOUSE_LINEAGE_CATALOG"])
        settings = settings or Settings.from_env(dict(env))
        path = settings.home / "catalog.yaml"
        return cls.load(path) if path.exists() else cls()

    @classmethod
    def parse(cls, text: str, *, source: str = "<string>") -> Catalog:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise CatalogError(source, where, f"not valid YAML: {problem}") from exc
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise CatalogError(source, "", "a catalog must be a mapping with 'datasets' and/or 'detectors'")
        try:
            spec = _CatalogFile.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            location = ".".join(str(p) for p in first["loc"] if p not in ("_DetectorSpec", "literal[False]"))
            raise CatalogError(source, location, first["msg"].removeprefix("Value error, ")) from None
        return cls._build(spec, source)

    @classmethod
    def _build(cls, spec: _CatalogFile, source: str) -> Catalog:
        exact: dict[str, _Entry] = {}
        globs: list[tuple[str, _Entry]] = []
        for key, item in spec.datasets.items():
            entry = _Entry(
                frozenset(item.tags),
                {normalise(name): frozenset(tags) for name, tags in item.columns.items()},
            )
            if any(ch in key for ch in "*?["):
                globs.append((key, entry))
            else:
                exact[key] = entry
        custom = [
            Detector(name, re.compile(d.pattern), frozenset(d.tags))
            for name, d in spec.detectors.items()
            if d is not False
        ]
        disabled = [name for name, d in spec.detectors.items() if d is False]
        detectors = Detectors.build(builtin=spec.builtin_detectors, disabled=disabled, custom=custom)
        return cls(exact, tuple(globs), detectors, source)

    def _entries(self, qualified_name: str) -> Iterable[_Entry]:
        if qualified_name in self.exact:
            yield self.exact[qualified_name]
        for pattern, entry in self.globs:
            if fnmatch.fnmatchcase(qualified_name, pattern):
                yield entry

    def declared_tags(self, qualified_name: str) -> frozenset[str]:
        """Every tag the catalog declares for the dataset: its own and every declared column's
        (a dataset with a pii column is pii, whichever columns a request names)."""
        entries = list(self._entries(qualified_name))
        return frozenset().union(
            *(e.tags for e in entries), *(t for e in entries for t in e.columns.values())
        )

    def classify(self, dataset: DatasetRef, columns: Sequence[ColumnInfo] = ()) -> Classification:
        entries = list(self._entries(dataset.qualified_name))
        classified = []
        for column in columns:
            key = normalise(column.name)
            declared = frozenset().union(*(e.columns.get(key, frozenset()) for e in entries))
            tags = column.tags | declared | self.detectors.tags_for(column.name)
            classified.append(column if tags == column.tags else column.model_copy(update={"tags": tags}))
        dataset_tags = dataset.tags.union(*(e.tags for e in entries), *(c.tags for c in classified))
        if dataset_tags != dataset.tags:
            dataset = dataset.model_copy(update={"tags": dataset_tags})
        return Classification(dataset, tuple(classified))
