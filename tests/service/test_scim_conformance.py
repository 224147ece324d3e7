"""scim2-tester — the python-scim project's RFC 7643/7644 conformance checker, a third party —
against a real ``gatehouse serve`` subprocess over a socket, on SQLite and PostgreSQL.

It discovers what the service advertises (/ServiceProviderConfig, /ResourceTypes, /Schemas) and
checks it: the discovery endpoints and their read-only methods, creating, reading, listing,
filtering (and ``attributes``/``excludedAttributes``), replacing and deleting Users and Groups, and
PATCH add/replace/remove on every attribute of the User (with the Enterprise extension) and Group
schemas, unknown URLs answered as SCIM errors. Every check must succeed: none may fail, error or
be skipped as unsupported for a feature we advertise.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
from scim2_tester import Status, check_server

from gate_core import Scope, Settings, open_gatekeeper
from gate_core.testing import actor
from tests.service.conftest import launch_server, stop_server
from tests.service.scim_engine import HttpxSCIMClient


def test_scim2_tester_finds_no_failure_against_gatehouse_serve(
    service_settings: Settings, tmp_path: Path
) -> None:
    (service_settings.home / "service.yaml").write_text("scim: {}\n", encoding="utf-8")
    gatekeeper = open_gatekeeper(service_settings)
    _, token = gatekeeper.tokens.create("frank", Scope.SCIM, created_by=actor("frank"))
    gatekeeper.store.close()
    server = launch_server(service_settings, tmp_path / "serve.log")
    try:
        with httpx.Client(
            base_url=f"{server.base_url}/scim/v2", headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as http:
            advertised = http.get("/ServiceProviderConfig").json()
            results = check_server(HttpxSCIMClient(http))
    finally:
        stop_server(server)
    # what we advertise, honestly: PATCH and filters yes; bulk, sort, ETags, passwords no
    assert advertised["patch"]["supported"] is True and advertised["filter"]["supported"] is True
    assert not any(advertised[k]["supported"] for k in ("bulk", "sort", "etag", "changePassword"))
    not_passed = [(r.title, r.status.name, r.reason) for r in results if r.status is not Status.SUCCESS]
    assert not not_passed, not_passed
    checked = Counter(r.title for r in results)
    for title in (
        "service_provider_config_endpoint",
        "query_all_resource_types",
        "query_all_schemas",
        "object_creation",
        "object_query",
        "object_query_without_id",
        "object_list_with_attributes",
        "search_with_attributes",
        "object_replacement",
        "object_deletion",
        "check_add_attribute",
        "check_replace_attribute",
        "check_remove_attribute",
        "random_url",
    ):
        assert checked[title] >= 1, (title, checked)
    assert len(results) >= 130
