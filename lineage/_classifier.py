"""The dataset classifier lineage gives the gate service (gate_core._classify's port): what the
catalog declares for a dataset and its columns, and every tag lineage has recorded on accesses
to it. ``for_gatekeeper`` is lineage's ``gatehouse.classifiers`` entry point: every gatekeeper
``open_gatekeeper`` builds (the CLI's and the service's) classifies with it; gate_core never
imports this module."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from gate_core import DatasetRef, Gatekeeper, Settings, SqlStore
from lineage._catalog import Catalog
from lineage._schema import event_tags, events
from lineage._store import LineageStore


class LineageClassifier:
    def __init__(self, catalog: Catalog, store: LineageStore | None = None) -> None:
        self.catalog = catalog
        self.store = store

    def tags_for(self, dataset: DatasetRef) -> Mapping[str, str]:
        found = dict.fromkeys(self.catalog.declared_tags(dataset.qualified_name), "catalog")
        if self.store is not None:
            for tag in self._recorded(dataset.qualified_name):
                found.setdefault(tag, "lineage")
        return found

    def _recorded(self, qualified_name: str) -> list[str]:
        """Tags recorded on any access to the dataset (its own and its columns'), via the
        (dataset, at) index."""
        stmt = (
            select(event_tags.c.tag)
            .distinct()
            .join(events, events.c.id == event_tags.c.event_id)
            .where(events.c.dataset == qualified_name)
        )
        with self.store.db.read() as conn:  # type: ignore[union-attr]
            return list(conn.execute(stmt).scalars())


def for_gatekeeper(gatekeeper: Gatekeeper, settings: Settings) -> LineageClassifier:
    """The ``gatehouse.classifiers`` entry point: the home's catalog, and lineage's records when
    the gate store is SQL (lineage keeps its tables in the same database)."""
    store = LineageStore.for_gate_store(gatekeeper.store) if isinstance(gatekeeper.store, SqlStore) else None
    return LineageClassifier(Catalog.from_settings(settings), store)
