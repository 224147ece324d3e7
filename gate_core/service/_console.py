"""The web console under /console: pending gates, one gate with its decisions, the audit trail.

Sign-in, in the order a request is identified:

    proxy header   ``config.proxy``: every request from a trusted IP carrying the header is
                   that person (Authenticator.from_proxy); the header from anywhere else is refused
    session        a signed cookie (``config.session_secret``; HttpOnly, SameSite=Lax, path
                   /console) holding the principal id and how it was established:
                     console-local  pick a human principal from the directory; only when
                                    ``app.state.local_signin`` (the embedded default on loopback)
                     oidc           authorization-code flow with PKCE and a nonce; the id_token is
                                    checked by the service's OidcVerifier (signature via JWKS,
                                    iss, aud, exp) and mapped by gate_core.identity's
                                    caller_from_oidc_claims

Every form POST carries a per-session CSRF token (compared in constant time) and, when the browser
sends Origin or Referer, must come from this host. Decisions go through ``Gatekeeper.decide`` —
the console only explains in advance why someone may not decide; the core is the authority and
its refusal is shown as it is. Templates autoescape everything.

The console is a Starlette app mounted on the service, so its error pages are HTML while the
REST API keeps answering problem+json, and the session cookie never reaches /v1.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI
from jinja2 import BaseLoader, ChoiceLoader, Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gate_core._audit import VerifyReport, redact_parameters
from gate_core._errors import (
    AuthenticationFailed,
    DecisionRefused,
    GateExpired,
    GatehouseError,
    UnknownPrincipal,
)
from gate_core._gatekeeper import principal_may_decide
from gate_core._models import Actor, AuthMethod, Gate, GateStatus, Principal, PrincipalKind, Verdict
from gate_core._ports import GateFilter
from gate_core.identity import caller_from_oidc_claims
from gate_core.service._console_audit import AUDIT_EVENTS, AuditPage, read_audit_page
from gate_core.service._oidc_client import OidcClient, token_groups
from gate_core.service._problems import status_for
from gate_core.service._state import ServiceState

PREFIX = "/console"
Endpoint = Callable[[Request], Awaitable[Response]]
SESSION_COOKIE = "gatehouse_console"
SESSION_MAX_AGE_S = 8 * 60 * 60  # a working day; the cookie's signature carries its age
MAX_TEXT = 4000  # the same limit the REST API puts on comments
GATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


# ---------------------------------------------------------------- who is looking


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in person and how the console knows it is them (recorded as the audit's ``via``)."""

    principal: Principal
    via: AuthMethod

    @property
    def actor(self) -> Actor:
        return Actor(principal_id=self.principal.id, via=self.via, email=self.principal.email)


class PageError(Exception):
    """Rendered as an HTML error page with this status; nothing was changed."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


# ---------------------------------------------------------------- small pure helpers


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison; bytes, because compare_digest refuses non-ASCII str (a 500)."""
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


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


def _base(scope: Scope) -> str:
    """The console's URL path, behind any root path the service is served under."""
    return str(scope.get("app_root_path", scope.get("root_path", ""))) + PREFIX


# ---------------------------------------------------------------- response hardening


class SecurityHeaders:
    """No framing, no sniffing, same-origin Referer (our own CSRF check reads it), and a CSP that
    allows only this origin's stylesheet: nothing inline runs even if escaping were ever bypassed."""

    HEADERS = (
        ("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; "
         "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
    )  # fmt: skip

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ---------------------------------------------------------------- the console


class Console:
    """The console's pages and sign-in flows over one ServiceState, as a mountable Starlette app."""

    def __init__(self, state: ServiceState, *, local_signin: bool) -> None:
        self.state = state
        self.gatekeeper = state.gatekeeper
        self.local_signin = local_signin
        self.oidc = OidcClient(state.config.oidc) if state.config.oidc else None
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
            expires_in=expires_in, statuses=[s.value for s in GateStatus], nav_plugins=self.nav_pages
        )
        self._app: Starlette | None = None

    def asgi_app(self) -> Starlette:
        secret = self.state.config.session_secret.get_secret_value()
        self._app = Starlette(
            routes=[
                Route("/", self.gates_page, methods=["GET"]),
                Route("/gates/{gate_id}", self.gate_page, methods=["GET"]),
                Route("/gates/{gate_id}/decide", self.decide, methods=["POST"]),
                Route("/audit", self.audit_page, methods=["GET"]),
                Route("/login", self.login_page, methods=["GET"]),
                Route("/login/local", self.login_local, methods=["POST"]),
                Route("/login/oidc", self.login_oidc, methods=["GET"]),
                Route("/oidc/callback", self.oidc_callback, methods=["GET"]),
                Route("/logout", self.logout, methods=["POST"]),
                Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
            ],
            middleware=[
                Middleware(SecurityHeaders),
                Middleware(
                    SessionMiddleware,
                    secret_key=secret,
                    session_cookie=SESSION_COOKIE,
                    max_age=SESSION_MAX_AGE_S,
                    path=PREFIX,
                    same_site="lax",
                    https_only=self.state.config.public_url.startswith("https://"),
                ),
            ],
            exception_handlers={
                PageError: self._page_error,
                SignInRequired: self._sign_in_required,
                GatehouseError: self._gatehouse_error,
                HTTPException: self._http_error,
                Exception: _unexpected,
            },
        )
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

    # ------------------------------------------------------------ identity

    def _viewer(self, request: Request) -> Viewer | None:
        """The signed-in person, or None. The proxy header wins (and re-signs on a new user)."""
        proxied = self.state.auth.from_proxy(request)  # raises when the header comes from elsewhere
        session = request.session
        if proxied is not None:
            if proxied.principal.kind is not PrincipalKind.HUMAN:
                raise PageError(403, "Service principal", "service principals cannot use the console")
            if session.get("pid") != proxied.principal.id or session.get("via") != AuthMethod.PROXY_HEADER:
                self._start_session(request, proxied.principal, AuthMethod.PROXY_HEADER)
            return Viewer(proxied.principal, AuthMethod.PROXY_HEADER)
        viewer = self._from_session(session)
        if viewer is None and "pid" in session:
            session.clear()  # a session this server no longer honours: start over
        return viewer

    def _from_session(self, session: dict[str, Any]) -> Viewer | None:
        via = session.get("via")
        # A proxy session only carries the CSRF token: the proxy's header is the identity on every
        # request, so without it (not through the proxy any more) nobody is signed in. A mode that
        # was switched off no longer honours the sessions it created.
        if not (
            (via == AuthMethod.CONSOLE_LOCAL and self.local_signin) or (via == AuthMethod.OIDC and self.oidc)
        ):
            return None
        via = AuthMethod(via)
        principal = self._session_principal(session, via)
        if principal is None or principal.kind is not PrincipalKind.HUMAN:
            return None
        return Viewer(principal, via)

    def _session_principal(self, session: dict[str, Any], via: AuthMethod) -> Principal | None:
        pid = str(session.get("pid", ""))
        known = self.gatekeeper.directory.find(pid) if pid else None
        if via is not AuthMethod.OIDC:
            return known
        groups = frozenset(str(g) for g in session.get("groups", []))
        if known is not None:
            return known.model_copy(update={"groups": known.groups | groups})
        email, name = session.get("email"), str(session.get("name", ""))
        return Principal(id=pid, email=email, display_name=name, groups=groups)

    def require_viewer(self, request: Request) -> Viewer:
        viewer = self._viewer(request)
        if viewer is None:
            # Back to this page after signing in; a form's target cannot be re-sent, so its list instead.
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(target if request.method == "GET" else _base(request.scope) + "/")
        return viewer

    def _start_session(
        self, request: Request, principal: Principal, via: AuthMethod, **extra: object
    ) -> None:
        """A fresh session (and CSRF token) at every sign-in, so nothing from before carries over."""
        request.session.clear()
        request.session.update(
            pid=principal.id, via=via.value, csrf=secrets.token_urlsafe(32), at=int(time.time()), **extra
        )

    # ------------------------------------------------------------ CSRF

    def _csrf_token(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return token

    def _check_form(self, request: Request, form: FormData) -> None:
        """Refuse a POST that this session's page did not produce (token) or that another site sent."""
        expected = request.session.get("csrf")
        sent = _text(form, "csrf_token")
        if not isinstance(expected, str) or not same_secret(sent, expected):
            raise PageError(
                403,
                "Form expired or forged",
                "The form could not be verified (missing or wrong CSRF token); nothing was changed. "
                "Reload the page and try again.",
            )
        if not self._same_origin(request):
            raise PageError(
                403, "Cross-site request refused", "This form came from another site; nothing was changed."
            )

    def _same_origin(self, request: Request) -> bool:
        source = request.headers.get("origin")
        if source is None:
            source = request.headers.get("referer")
        if source is None:
            return True  # clients that send neither rely on the token alone
        allowed = {request.url.netloc, urlsplit(self.state.config.public_url).netloc}
        parsed = urlsplit(source)
        return parsed.scheme in ("http", "https") and parsed.netloc in allowed

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
        flashes = request.session.pop("flash", [])
        html = self.env.get_template(template).render(
            base=_base(request.scope),
            viewer=viewer,
            csrf=self._csrf_token(request),
            flashes=flashes,
            nav=nav,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def _flash(self, request: Request, level: str, text: str) -> None:
        request.session["flash"] = [*request.session.get("flash", []), [level, text]]

    def _redirect(self, request: Request, path: str) -> RedirectResponse:
        return RedirectResponse(_base(request.scope) + path, status_code=303)

    def _safe_next(self, request: Request, target: str) -> str:
        """Only back into the console: ``next`` must never send a signed-in user elsewhere."""
        base = _base(request.scope)
        if target.startswith(base + "/") and not target.startswith("//") and "\\" not in target:
            return target
        return base + "/"

    def _quiet_viewer(self, request: Request) -> Viewer | None:
        try:
            return self._viewer(request)
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
        return RedirectResponse(f"{_base(request.scope)}/login?{query}", status_code=303)

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
        self._check_form(request, form)
        viewer = self.require_viewer(request)
        gate_id = self._gate_id(request)
        verdict_text, comment = _text(form, "verdict"), _text(form, "comment").strip()
        if verdict_text not in (Verdict.APPROVE.value, Verdict.REJECT.value):
            raise PageError(400, "Unknown decision", "A decision is either approve or reject.")
        verdict = Verdict(verdict_text)
        if len(comment) > MAX_TEXT:
            self._flash(request, "error", f"Comments are limited to {MAX_TEXT} characters; nothing recorded.")
        elif verdict is Verdict.REJECT and not comment:
            self._flash(request, "error", "A rejection needs a reason; nothing was recorded.")
        else:
            level, message = await run_in_threadpool(self._decide, gate_id, viewer, verdict, comment)
            self._flash(request, level, message)
        return self._redirect(request, f"/gates/{gate_id}")

    def _decide(self, gate_id: str, viewer: Viewer, verdict: Verdict, comment: str) -> tuple[str, str]:
        """Blocking: the core decides; the console reports what it said and wakes waiters at once."""
        try:
            gate = self.gatekeeper.decide(
                gate_id, actor=viewer.actor, verdict=verdict, comment=comment, principal=viewer.principal
            )
        except GateExpired as refusal:
            self.state.changed(self.gatekeeper.get(gate_id))  # the refusal expired it: tell the waiters
            return "error", f"Refused: {refusal}"
        except (DecisionRefused, UnknownPrincipal) as refusal:
            return "error", f"Refused: {refusal}"
        self.state.changed(gate)
        if gate.status is GateStatus.PENDING:
            return "ok", f"Your approval is recorded; {gate.approvals_missing()} more needed."
        return "ok", f"Recorded: the gate is now {gate.status.value}."

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
        return self.gatekeeper.verify_audit(), read_audit_page(self.state, page, event, gate_id)

    # ------------------------------------------------------------ sign-in and sign-out

    async def login_page(self, request: Request) -> Response:
        next_path = self._safe_next(request, request.query_params.get("next", ""))
        if self._viewer(request) is not None:
            return RedirectResponse(next_path, status_code=303)
        humans = sorted(
            (p for p in self.gatekeeper.directory if p.kind is PrincipalKind.HUMAN), key=lambda p: p.id
        )
        return self.render(
            request,
            "login.html",
            None,
            next_path=next_path,
            local_signin=self.local_signin,
            principals=humans if self.local_signin else [],
            oidc=self.oidc is not None,
            proxy=self.state.config.proxy,
        )

    async def login_local(self, request: Request) -> Response:
        if not self.local_signin:  # refused before anything else: there is no form to forge
            raise PageError(
                403,
                "Local sign-in is disabled",
                "This server does not offer local sign-in; use your identity provider or proxy.",
            )
        form = await request.form()
        self._check_form(request, form)
        principal = self.gatekeeper.directory.find(_text(form, "principal"))
        if principal is None or principal.kind is not PrincipalKind.HUMAN:
            raise PageError(403, "Cannot sign in", "Only people in the directory sign in; services cannot.")
        self._start_session(request, principal, AuthMethod.CONSOLE_LOCAL)
        return RedirectResponse(self._safe_next(request, _text(form, "next")), status_code=303)

    def _redirect_uri(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{_base(request.scope)}/oidc/callback"

    async def login_oidc(self, request: Request) -> Response:
        oidc = self._oidc_client()
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        redirect_uri = self._redirect_uri(request)
        url = await run_in_threadpool(oidc.authorization_url, redirect_uri, state, nonce, verifier)
        request.session["oidc"] = {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "next": self._safe_next(request, request.query_params.get("next", "")),
        }
        return RedirectResponse(url, status_code=303)

    async def oidc_callback(self, request: Request) -> Response:
        oidc = self._oidc_client()
        pending = request.session.pop("oidc", None)
        params = request.query_params
        if not isinstance(pending, dict) or not same_secret(
            params.get("state", ""), str(pending.get("state", ""))
        ):
            raise PageError(401, "Sign-in failed", "The sign-in response does not belong to this browser.")
        if "error" in params or "code" not in params:
            error = params.get("error_description") or params.get("error") or "no code returned"
            raise PageError(401, "Sign-in failed", f"The identity provider said: {error}")
        principal, groups = await run_in_threadpool(
            self._verified_principal, oidc, params["code"], self._redirect_uri(request), pending
        )
        self._start_session(
            request,
            principal,
            AuthMethod.OIDC,
            groups=groups,
            email=principal.email,
            name=principal.display_name,
        )
        return RedirectResponse(self._safe_next(request, str(pending.get("next", ""))), status_code=303)

    def _verified_principal(
        self, oidc: OidcClient, code: str, redirect_uri: str, pending: Mapping[str, Any]
    ) -> tuple[Principal, list[str]]:
        """Blocking: exchange the code, verify the id_token (the service's verifier) and its nonce."""
        id_token = oidc.exchange(code, redirect_uri, str(pending.get("verifier", "")))
        verifier = self.state.auth.oidc
        assert verifier is not None  # built from the same config as self.oidc
        claims = verifier.claims(id_token)
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not same_secret(nonce, str(pending.get("nonce", ""))):
            raise AuthenticationFailed("the identity token's nonce does not match this sign-in (replayed?)")
        principal = caller_from_oidc_claims(self.gatekeeper.directory, claims, oidc.config).principal
        if principal.kind is not PrincipalKind.HUMAN:
            raise AuthenticationFailed(f"{principal.id} is a service principal; services cannot sign in")
        return principal, token_groups(claims, oidc.config)

    def _oidc_client(self) -> OidcClient:
        if self.oidc is None:
            raise PageError(404, "Not found", "This server does not use an OpenID Connect identity provider.")
        return self.oidc

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        self._check_form(request, form)
        request.session.clear()
        self._flash(request, "ok", "Signed out.")
        return self._redirect(request, "/login")


def _unexpected(_request: Request, _exc: Exception) -> Response:
    # Plain markup on purpose: the templates may be what failed. The service logs the traceback.
    body = (
        "<!doctype html><title>Error</title><h1>Something went wrong</h1>"
        "<p>The console failed unexpectedly; the service log has the details.</p>"
    )
    return HTMLResponse(body, status_code=500)


def _to_console(request: Request) -> RedirectResponse:
    return RedirectResponse(_base(request.scope) + "/", status_code=307)


def install(app: FastAPI, state: ServiceState) -> None:
    """Mount the console at /console and send / there. Reads ``app.state.local_signin``."""
    console = Console(state, local_signin=bool(getattr(app.state, "local_signin", False)))
    app.mount(PREFIX, console.asgi_app(), name="console")
    app.state.gatehouse_console = console
    for path in ("/", PREFIX):
        app.add_api_route(path, _to_console, methods=["GET"], include_in_schema=False)


def console_of(app: FastAPI) -> Console | None:
    """The console mounted on a gate service app (``create_app``), or None when it has none."""
    console = getattr(app.state, "gatehouse_console", None)
    return console if isinstance(console, Console) else None


__all__ = ["Console", "Viewer", "console_of", "install"]
