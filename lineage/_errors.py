"""Every error the lineage package raises, in one tree. All are ``gate_core.GatehouseError``s,
so the CLI prints them as one line and the service maps them to a problem+json status through
the core class each one also is (InvalidInput → 422, ConfigError → 500, StoreError → 503…).

    GatehouseError                      (gate_core)
    └── LineageError
        ├── LineageInputError           also InvalidInput: an event or query argument that cannot be used
        │   ├── MalformedDataset        not NAMESPACE/NAME (OpenLineage naming)
        │   ├── UnknownOperation        not one of read, write, export, delete
        │   └── BadTimeWindow           a --since / retention that is not 30d, a date or an ISO time
        ├── CatalogError                also ConfigError: the catalog file is unusable; names file and field
        ├── NoDestination               also ConfigError: record_access() has nowhere to record
        └── EmitFailed                  an OpenLineage transport (or another sink) could not deliver

Messages never contain dataset contents: they name datasets, columns, fields and files only.
"""

from __future__ import annotations

from gate_core import ConfigError, GatehouseError, InvalidInput


class LineageError(GatehouseError):
    code = "lineage_error"


class LineageInputError(LineageError, InvalidInput):
    code = "lineage_invalid_input"


class MalformedDataset(LineageInputError):
    code = "lineage_malformed_dataset"

    def __init__(self, text: str, problem: str = "") -> None:
        self.text = text
        detail = f": {problem}" if problem else ""
        super().__init__(
            f"dataset {text!r} is not NAMESPACE/NAME{detail} (OpenLineage naming, e.g. "
            "warehouse/customers or postgres://db:5432/public.customers)"
        )


class UnknownOperation(LineageInputError):
    code = "lineage_unknown_operation"

    def __init__(self, text: object, allowed: tuple[str, ...]) -> None:
        self.text = text
        super().__init__(f"unknown operation {text!r}: expected one of {', '.join(allowed)}")


class BadTimeWindow(LineageInputError):
    code = "lineage_bad_time"


class CatalogError(LineageError, ConfigError):
    code = "lineage_catalog_invalid"

    def __init__(self, source: str, field_path: str, problem: str) -> None:
        self.source = source
        self.field_path = field_path
        self.problem = problem
        where = f"{source}: {field_path}" if field_path else source
        super().__init__(f"{where}: {problem}")


class NoDestination(LineageError, ConfigError):
    code = "lineage_no_destination"


class EmitFailed(LineageError):
    code = "lineage_emit_failed"
