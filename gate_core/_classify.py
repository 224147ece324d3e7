"""Tags the server knows: the port through which datasets are classified when a gate opens.

A caller's tags are a claim; the catalog and what lineage has recorded about a dataset's columns
are the server's knowledge. Every dataset in a request is classified on the service's side by
each ``DatasetClassifier`` the gatekeeper holds; its tags are the union of the caller's and every
classifier's, so a caller's tags can add to what is known and never remove from it. Each tag on a
gate records where it came from (``Gate.tag_sources``: dataset → tag → sources, ``caller``
among them), and every reader of the gate shows that.

gate_core never imports a classifier: ``lineage`` provides one (catalog + recorded columns)
through its ``gatehouse.service`` plugin install, calling ``Gatekeeper.add_classifier``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from gate_core._models import DatasetRef, GateRequest
from gate_core._terms import normalise_term

CALLER = "caller"
TagSources = dict[str, dict[str, tuple[str, ...]]]


class DatasetClassifier(Protocol):
    def tags_for(self, dataset: DatasetRef) -> Mapping[str, str]:
        """The tags this classifier knows for ``dataset`` (ignore its caller-given tags), each
        with the source it came from (``catalog``, ``lineage``…). May raise: opening fails closed."""
        ...


def classify_request(
    request: GateRequest, classifiers: Sequence[DatasetClassifier]
) -> tuple[GateRequest, TagSources]:
    """The request with every dataset's tags completed, and where each tag came from."""
    sources: TagSources = {}
    datasets = []
    for dataset in request.datasets:
        found: dict[str, set[str]] = {tag: {CALLER} for tag in dataset.tags}
        for classifier in classifiers:
            for tag, source in classifier.tags_for(dataset).items():
                term = normalise_term(tag)
                if term:
                    found.setdefault(term, set()).add(source)
        sources[dataset.qualified_name] = {tag: tuple(sorted(found[tag])) for tag in sorted(found)}
        tags = frozenset(found)
        datasets.append(dataset if tags == dataset.tags else dataset.model_copy(update={"tags": tags}))
    if datasets and tuple(datasets) != request.datasets:
        request = request.model_copy(update={"datasets": tuple(datasets)})
    return request, sources
