"""The console page /console/lineage: the same four questions as the CLI and REST API, for people.

The console is the gate service's Starlette sub-app; this page joins it (same session, sign-in,
CSRF token, security headers and error pages) by adding one route to it and one template
directory to its Jinja environment, and a "Lineage" link to its navigation. Read-only: no forms
that change anything, so no CSRF check is needed.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI
from jinja2 import BaseLoader, ChoiceLoader, PackageLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from gate_core.service._console import PREFIX, Console
from lineage._errors import LineageInputError
from lineage._queries import AccessRows, LineageGraph
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


def _console_of(app: FastAPI) -> tuple[Starlette, Console] | None:
    """The console mounted at /console and the Console object serving it."""
    for route in app.router.routes:
        if isinstance(route, Mount) and route.path == PREFIX and isinstance(route.app, Starlette):
            for inner in route.app.routes:
                owner = getattr(getattr(inner, "endpoint", None), "__self__", None)
                if isinstance(owner, Console):
                    return route.app, owner
    return None


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
        viewer = self.console._require_viewer(request)
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
        return self.console._render(
            request, "lineage.html", viewer, status=status, nav="lineage", error=error, link=link, **context
        )


def install_page(app: FastAPI) -> None:
    found = _console_of(app)
    if found is None:
        log.warning("lineage console page not installed: no console mounted at %s", PREFIX)
        return
    console_app, console = found
    loaders: list[BaseLoader] = [PackageLoader("lineage", "templates")]
    if console.env.loader is not None:
        loaders.insert(0, console.env.loader)
    console.env.loader = ChoiceLoader(loaders)
    links = console.env.globals.get("nav_plugins")
    console.env.globals["nav_plugins"] = [
        *(links if isinstance(links, list) else []),
        {"path": "/lineage", "label": "Lineage", "key": "lineage"},
    ]
    page = LineagePage(console, app.state.gatehouse_lineage)
    # First, so no catch-all of the console's can shadow it.
    console_app.router.routes.insert(0, Route("/lineage", page.render, methods=["GET"]))
