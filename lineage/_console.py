"""The console page /console/lineage: the same four questions as the CLI and REST API, for people.

The page joins the gate service's console through ``Console.add_page`` from the public extension
API (same session, sign-in, security headers and error pages, a "Lineage" link in the
navigation). Read-only: no forms that change anything, so no CSRF check is needed.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI
from jinja2 import PackageLoader
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from gate_core.service.extension import Console, console_of
from lineage._errors import LineageInputError
from lineage._queries import AccessRows, LineageGraph, Violations
from lineage._store import LineageStore
from lineage._time import parse_since

log = logging.getLogger("gatehouse.lineage")
QUESTIONS = (
    ("exports", "Exports of datasets tagged…"),
    ("accessed", "Who accessed dataset…"),
    ("run", "What did run … touch"),
    ("gate", "What did gate … approve"),
    ("graph", "Upstream / downstream of dataset…"),
)


class LineagePage:
    def __init__(self, console: Console, store: LineageStore) -> None:
        self.console = console
        self.store = store

    def _ask(self, form: dict[str, str]) -> tuple[AccessRows | None, LineageGraph | None]:
        q, subject = form["q"], form["subject"]
        since = parse_since(form["since"]) if form["since"] else None
        if q == "exports":
            return self.store.exports(subject, since=since, limit=500), None
        if q == "accessed":
            return self.store.accessed(subject, since=since, limit=500), None
        if q == "run":
            return self.store.run(subject, limit=500), None
        if q == "gate":
            return self.store.gate(subject, limit=500), None
        depth = int(form["depth"]) if form["depth"].isdigit() else 0
        direction = form["direction"] if form["direction"] in ("upstream", "downstream") else "both"
        return None, self.store.graph(subject, direction=direction, depth=depth)  # type: ignore[arg-type]

    async def render(self, request: Request) -> Response:
        viewer = self.console.require_viewer(request)
        params = request.query_params
        form = {
            "q": params.get("q", "exports"),
            "subject": params.get("subject", "pii" if "q" not in params else "").strip()[:1600],
            "since": params.get("since", "30d" if "q" not in params else "").strip()[:64],
            "direction": params.get("direction", "both"),
            "depth": params.get("depth", "3").strip()[:2],
        }
        if form["q"] not in dict(QUESTIONS):
            form["q"] = "exports"
        rows: AccessRows | None = None
        graph: LineageGraph | None = None
        error, status = "", 200
        if form["subject"]:
            try:
                rows, graph = await run_in_threadpool(self._ask, form)
            except LineageInputError as exc:
                error, status = str(exc), 400

        def link(q: str, subject: str) -> str:
            return urlencode({"q": q, "subject": subject})

        context: dict[str, Any] = {"questions": QUESTIONS, "form": form, "rows": rows, "graph": graph}
        return self.console.render(
            request, "lineage.html", viewer, status=status, nav="lineage", error=error, link=link, **context
        )


class ViolationsPage:
    """/console/lineage/violations: out-of-scope findings (``lineage._scope``), newest first."""

    def __init__(self, console: Console, store: LineageStore) -> None:
        self.console = console
        self.store = store

    async def render(self, request: Request) -> Response:
        viewer = self.console.require_viewer(request)
        since = request.query_params.get("since", "30d").strip()[:64]
        found: Violations | None = None
        error, status = "", 200
        try:
            when = parse_since(since) if since else None
            found = await run_in_threadpool(lambda: self.store.violations(since=when, limit=500))
        except LineageInputError as exc:
            error, status = str(exc), 400

        def link(q: str, subject: str) -> str:
            return urlencode({"q": q, "subject": subject})

        return self.console.render(
            request,
            "lineage_violations.html",
            viewer,
            status=status,
            nav="lineage/violations",
            error=error,
            link=link,
            since=since,
            found=found,
        )


def install_page(app: FastAPI) -> None:
    console = console_of(app)
    if console is None:
        log.warning("lineage console page not installed: the service has no console")
        return
    page = LineagePage(console, app.state.gatehouse_lineage)
    console.add_page("/lineage", "Lineage", page.render, PackageLoader("lineage", "templates"))
    violations = ViolationsPage(console, app.state.gatehouse_lineage)
    console.add_page(
        "/lineage/violations", "Out of scope", violations.render, PackageLoader("lineage", "templates")
    )
