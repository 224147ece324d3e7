"""Tags the server knows: the port through which datasets are classified when a gate opens.

A caller's tags are a claim; the catalog and what lineage has recorded about a dataset's columns
are the server's knowledge. Every dataset in a request is classified on the service's side by
each ``DatasetClassifier`` the gatekeeper holds; its tags are the union of the caller's and every
classifier's, so a caller's tags can add to what is known and never remove from it. Each tag on a
gate records where it came from (``Gate.tag_sources``: dataset → tag → sources, ``caller``
among them), and every reader of the gate shows that.

gate_core never imports a classifier: a distribution provides one through the
``gatehouse.classifiers`` entry point — a factory ``(gatekeeper, settings) -> DatasetClassifier |
None`` — which ``open_gatekeeper`` calls for every gatekeeper it builds, so the local CLI and the
service classify alike (``lineage`` provides the catalog + recorded columns this way). A factory
that cannot be loaded or fails stops ``open_gatekeeper``: an unclassified gate could pass a rule
its data should not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol

from gate_core._errors import ConfigError
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


CLASSIFIERS_ENTRY_POINT = "gatehouse.classifiers"


def install_classifiers(gatekeeper: Any, settings: Any) -> None:
    """Add every installed classifier to ``gatekeeper`` (see the module docstring). Raises
    ConfigError naming the plugin when one cannot be loaded or built: fail closed."""
    for plugin in entry_points(group=CLASSIFIERS_ENTRY_POINT):
        try:
            classifier = plugin.load()(gatekeeper, settings)
        except Exception as exc:
            raise ConfigError(
                f"dataset classifier {plugin.name!r} ({plugin.value}) failed: {type(exc).__name__}: {exc}"
            ) from exc
        if classifier is not None:
            gatekeeper.add_classifier(classifier)
