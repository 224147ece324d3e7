"""The web console under /console: pending gates, one gate with its decisions, the audit trail,
and the pages plugins add (``Console.add_page``).

    _console_session   who is looking (proxy header, signed session), CSRF, security headers
    _console_login     the sign-in page, local and OIDC sign-in, sign-out
    _console_tokens    the Tokens page: your own API tokens; service tokens for gatehouse-admins
    _console_audit     the audit page's rows, read through the AuditService
    _console (here)    the pages, rendering, error pages and the plugin page registry

Decisions go through ``Gatekeeper.decide`` — the console only explains in advance why someone may
not decide; the core is the authority and its refusal is shown as it is. Templates autoescape
everything.

The console is a Starlette app mounted on the service, so its error pages are HTML while the
REST API keeps answering problem+json, and the session cookie never reaches /v1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI
from jinja2 import BaseLoader, ChoiceLoader, Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gate_core._audit import VerifyReport, redact_parameters
from gate_core._errors import DecisionRefused, GateExpired, GatehouseError, UnknownPrincipal
from gate_core._gatekeeper import principal_may_decide
from gate_core._models import Gate, GateStatus, Verdict
from gate_core._passkeys import PasskeyAssertion
from gate_core._ports import GateFilter
from gate_core.service._console_audit import AUDIT_EVENTS, AuditPage, read_audit_page
from gate_core.service._console_login import SignIn
from gate_core.service._console_passkeys import ConsolePasskeys
from gate_core.service._console_session import (
    PREFIX,
    PageError,
    Sessions,
    SignInRequired,
    Viewer,
    console_base,
    form_text,
    redirect,
)
from gate_core.service._console_tokens import TokensPage
from gate_core.service._problems import status_for
from gate_core.service._state import ServiceState

Endpoint = Callable[[Request], Awaitable[Response]]
MAX_TEXT = 4000  # the same limit the REST API puts on comments
GATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


# ---------------------------------------------------------------- small pure helpers


def safe_url(url: str | None) -> str | None:
    """Only http(s) links are rendered as links: a run URL is caller-supplied, never ``javascript:``."""
    if url and urlsplit(url).scheme in ("http", "https"):
        return url
    return None


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def duration(seconds: float) -> str:
    seconds = int(abs(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def expires_in(gate: Gate, now: datetime) -> str:
    if not gate.status.is_open:
        return "—"
    left = (gate.expires_at - now).total_seconds()
    return f"in {duration(left)}" if left > 0 else f"expired {duration(left)} ago"


# ---------------------------------------------------------------- the console


class Console:
    """The console's pages and sign-in flows over one ServiceState, as a mountable Starlette app."""

    def __init__(self, state: ServiceState, *, local_signin: bool) -> None:
        self.state = state
        self.gatekeeper = state.gatekeeper
        self.sessions = Sessions(state, local_signin=local_signin)
        self.sign_in = SignIn(self)
        self.passkeys = ConsolePasskeys(self)
        self.tokens_page = TokensPage(self)
        self.env = Environment(
            loader=PackageLoader("gate_core.service", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(when=when, safe_url=safe_url, short=lambda h: (h or "")[:12])
        self.nav_pages: list[dict[str, str]] = []  # pages added by plugins (add_page)
        self.env.globals.update(
            expires_in=expires_in,
            statuses=[s.value for s in GateStatus],
            nav_plugins=self.nav_pages,
            sandbox=state.sandbox,
        )
        self._app: Starlette | None = None

    def asgi_app(self) -> Starlette:
        self._app = Starlette(
            routes=[
                Route("/", self.gates_page, methods=["GET"]),
                Route("/gates/{gate_id}", self.gate_page, methods=["GET"]),
                Route("/gates/{gate_id}/decide", self.decide, methods=["POST"]),
                Route("/audit", self.audit_page, methods=["GET"]),
                *self.sign_in.routes(),
                *self.passkeys.routes(),
                *self.tokens_page.routes(),
                Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
            ],
            middleware=self.sessions.middleware(),
            exception_handlers={
                PageError: self._page_error,
                SignInRequired: self._sign_in_required,
                GatehouseError: self._gatehouse_error,
                HTTPException: self._http_error,
                Exception: _unexpected,
            },
        )
        self._app.state.sandbox = self.state.sandbox  # read by the plain 500 page
        return self._app

    def add_page(self, path: str, label: str, endpoint: Endpoint, templates: BaseLoader) -> None:
        """Join a page to the console (plugins do: ``gatehouse lineage``'s page is one): a GET route
        at ``path`` under /console, a link labelled ``label`` in the navigation, and ``templates``
        searched after the console's own, so a page template can extend ``base.html``.

        The page shares the console's session, sign-in, security headers and error pages; its
        endpoint calls ``require_viewer`` and ``render`` like the console's own pages. GET only: a
        form that changes something must also carry the console's CSRF check, which is not offered
        to pages added here.
        """
        if self._app is None:
            raise RuntimeError("add pages after asgi_app() has built the console")
        self.env.loader = ChoiceLoader([loader for loader in (self.env.loader, templates) if loader])
        key = path.strip("/")
        self.nav_pages.append({"path": path, "label": label, "key": key})
        # First, so that no route of the console's own can shadow it.
        self._app.router.routes.insert(0, Route(path, endpoint, methods=["GET"]))

    def require_viewer(self, request: Request) -> Viewer:
        """The signed-in person; anyone else is sent to sign in and brought back to this page."""
        return self.sessions.require_viewer(request)

    # ------------------------------------------------------------ rendering

    def render(
        self,
        request: Request,
        template: str,
        viewer: Viewer | None,
        status: int = 200,
        nav: str = "",
        **context: Any,
    ) -> HTMLResponse:
        flashes = self.sessions.pop_flashes(request)
        html = self.env.get_template(template).render(
            base=console_base(request.scope),
            viewer=viewer,
            csrf=self.sessions.csrf_token(request),
            flashes=flashes,
            nav=nav,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def _quiet_viewer(self, request: Request) -> Viewer | None:
        try:
            return self.sessions.viewer(request)
        except (GatehouseError, PageError):
            return None

    def _error_page(self, request: Request, status: int, title: str, message: str) -> HTMLResponse:
        viewer = self._quiet_viewer(request) if status != 401 else None
        return self.render(request, "error.html", viewer, status=status, title=title, message=message)

    async def _page_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return self._error_page(request, exc.status, exc.title, exc.message)

    async def _sign_in_required(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        query = urlencode({"next": exc.next_path})
        return RedirectResponse(f"{console_base(request.scope)}/login?{query}", status_code=303)

    async def _gatehouse_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatehouseError)
        status = status_for(exc)
        titles = {401: "Not signed in", 403: "Not allowed", 404: "Not found", 503: "Unavailable"}
        return self._error_page(request, status, titles.get(status, "Error"), str(exc))

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return self._error_page(request, 404, "Not found", "There is no such page.")
        return self._error_page(request, exc.status_code, "Error", str(exc.detail))

    # ------------------------------------------------------------ gates

    async def gates_page(self, request: Request) -> Response:
        viewer = self.require_viewer(request)
        params = request.query_params
        status_text = params.get("status", GateStatus.PENDING.value)
        if status_text not in ("any", *(s.value for s in GateStatus)):
            raise PageError(400, "Unknown status", f"{status_text!r} is not a gate status")
        action = params.get("action", "").strip()[:100]
        dataset = params.get("dataset", "").strip()[:1600]
        query = GateFilter(
            status=None if status_text == "any" else GateStatus(status_text),
            action=action or None,
            dataset=dataset or None,
        )
        gates = await run_in_threadpool(self.gatekeeper.list, query)
        return self.render(
            request,
            "gates.html",
            viewer,
            nav="gates",
            gates=gates,
            limit=query.limit,
            now=self.gatekeeper.clock.now(),
            filters={"status": status_text, "action": action, "dataset": dataset},
        )

    def _gate_id(self, request: Request) -> str:
        gate_id = str(request.path_params["gate_id"])
        if not GATE_ID.match(gate_id):
            raise PageError(404, "Not found", "There is no gate with that id.")
        return gate_id

    async def gate_page(self, request: Request) -> Response:
        viewer = self.require_viewer(request)
        gate = await run_in_threadpool(self.gatekeeper.get, self._gate_id(request))
        now = self.gatekeeper.clock.now()
        why_not = principal_may_decide(gate, viewer.principal, now) if gate.status.is_open else None
        return self.render(
            request,
            "gate.html",
            viewer,
            nav="gates",
            gate=gate,
            now=now,
            why_not=why_not,
            parameters=json.dumps(redact_parameters(gate.request.parameters), indent=2, sort_keys=True),
        )

    async def decide(self, request: Request) -> Response:
        form = await request.form()
        self.sessions.check_form(request, form)
        viewer = self.require_viewer(request)
        gate_id = self._gate_id(request)
        verdict_text, comment = form_text(form, "verdict"), form_text(form, "comment").strip()
        if verdict_text not in (Verdict.APPROVE.value, Verdict.REJECT.value):
            raise PageError(400, "Unknown decision", "A decision is either approve or reject.")
        verdict = Verdict(verdict_text)
        assertion = self._assertion(form_text(form, "assertion"))
        if len(comment) > MAX_TEXT:
            self.sessions.flash(
                request, "error", f"Comments are limited to {MAX_TEXT} characters; nothing recorded."
            )
        elif verdict is Verdict.REJECT and not comment:
            self.sessions.flash(request, "error", "A rejection needs a reason; nothing was recorded.")
        else:
            level, message = await run_in_threadpool(
                self._decide, gate_id, viewer, verdict, comment, assertion
            )
            self.sessions.flash(request, level, message)
        return redirect(request, f"/gates/{gate_id}")

    @staticmethod
    def _assertion(text: str) -> PasskeyAssertion | None:
        """The passkey assertion the gate page's script put in the form (signed gates), if any."""
        if not text:
            return None
        try:
            return PasskeyAssertion.from_json(json.loads(text))
        except ValueError:
            raise PageError(
                400, "Bad signature", "The passkey assertion is not JSON; nothing was recorded."
            ) from None

    def _decide(
        self,
        gate_id: str,
        viewer: Viewer,
        verdict: Verdict,
        comment: str,
        assertion: PasskeyAssertion | None = None,
    ) -> tuple[str, str]:
        """Blocking: the core decides; the console reports what it said and wakes waiters at once."""
        try:
            gate = self.gatekeeper.decide(
                gate_id,
                actor=viewer.actor,
                verdict=verdict,
                comment=comment,
                principal=viewer.principal,
                assertion=assertion,
            )
        except GateExpired as refusal:
            self.state.changed(self.gatekeeper.get(gate_id))  # the refusal expired it: tell the waiters
            return "error", f"Refused: {refusal}"
        except (DecisionRefused, UnknownPrincipal) as refusal:
            return "error", f"Refused: {refusal}"
        self.state.changed(gate)
        signed = " (signed with your passkey)" if assertion is not None else ""
        if gate.status is GateStatus.PENDING:
            return "ok", f"Your approval is recorded{signed}; {gate.approvals_missing()} more needed."
        return "ok", f"Recorded{signed}: the gate is now {gate.status.value}."

    # ------------------------------------------------------------ audit

    async def audit_page(self, request: Request) -> Response:
        viewer = self.require_viewer(request)
        params = request.query_params
        event = params.get("event", "")
        if event and event not in AUDIT_EVENTS:
            raise PageError(400, "Unknown event", f"{event!r} is not an audit event")
        gate_id = params.get("gate", "").strip()
        if gate_id and not GATE_ID.match(gate_id):
            raise PageError(400, "Bad gate id", "A gate id is letters, digits, '-' and '_'.")
        page_text = params.get("page", "0")
        page = int(page_text) if page_text.isdigit() and len(page_text) < 7 else 0
        report, listing = await run_in_threadpool(self._audit, page, event, gate_id)
        return self.render(
            request,
            "audit.html",
            viewer,
            nav="audit",
            report=report,
            listing=listing,
            events=AUDIT_EVENTS,
            filters={"event": event, "gate": gate_id},
            page_query=lambda p: urlencode({"event": event, "gate": gate_id, "page": p}),
        )

    def _audit(self, page: int, event: str, gate_id: str) -> tuple[VerifyReport, AuditPage]:
        return self.gatekeeper.audit.verify(), read_audit_page(self.state, page, event, gate_id)


SANDBOX_NOTE = "<p><strong>SANDBOX</strong>: this home is a sandbox; identities here are unverified.</p>"


def _unexpected(request: Request, _exc: Exception) -> Response:
    # Plain markup on purpose: the templates may be what failed. The service logs the traceback.
    sandbox = getattr(request.app.state, "sandbox", False)
    body = (
        "<!doctype html><title>Error</title>"
        + (SANDBOX_NOTE if sandbox else "")
        + "<h1>Something went wrong</h1>"
        "<p>The console failed unexpectedly; the service log has the details.</p>"
    )
    return HTMLResponse(body, status_code=500)


def _to_console(request: Request) -> RedirectResponse:
    return RedirectResponse(console_base(request.scope) + "/", status_code=307)


def install(app: FastAPI, state: ServiceState) -> None:
    """Mount the console at /console and send / there. Reads ``app.state.local_signin``."""
    console = Console(state, local_signin=bool(getattr(app.state, "local_signin", False)))
    # Refusals of unsigned decisions on signed gates (Slack, Teams, API, CLI via the service) link here.
    state.gatekeeper.console_url = state.config.public_url.rstrip("/") + PREFIX
    app.mount(PREFIX, console.asgi_app(), name="console")
    app.state.gatehouse_console = console
    for path in ("/", PREFIX):
        app.add_api_route(path, _to_console, methods=["GET"], include_in_schema=False)


def console_of(app: FastAPI) -> Console | None:
    """The console mounted on a gate service app (``create_app``), or None when it has none."""
    console = getattr(app.state, "gatehouse_console", None)
    return console if isinstance(console, Console) else None


__all__ = ["Console", "Viewer", "console_of", "install"]
