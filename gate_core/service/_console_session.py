"""Who is looking at the console, and proof that a form came from them.

Before anything else, ``HostCheck`` refuses a request whose ``Host`` is not one the console answers
to (loopback names, ``public_url``'s host, ``console.allowed_hosts``): a page whose name was
rebound to this machine (DNS rebinding) gets a 400 and no page, cookie or CSRF token. Then, in the
order a request is identified:

    proxy header   ``config.proxy``: every request whose connection comes from a trusted proxy
                   (the socket peer) carrying the header is that person (Authenticator.from_proxy);
                   the header from anywhere else is refused
    session        a signed cookie (``config.session_secret``; HttpOnly, SameSite=Lax, path
                   /console) holding the principal id, how it was established (console-local or
                   oidc — see _console_login) and when; it ends ``console.session_lifetime`` after
                   sign-in however busy it is. A mode switched off no longer honours its sessions;
                   a console-local session is honoured only where local sign-in is offered (below)

Local sign-in (pick a person) is offered only when it is enabled *and* the connection comes from
this machine (the socket peer is loopback) *and* the browser addressed the console by a loopback
name *and* no proxy forwarded the request. An OIDC session keeps the IdP subject; the person's
groups are the directory's at every request (narrowed by the IdP's groups claim when configured),
so a decision is judged on the groups they have now, not those they had at sign-in.

Every form POST carries a per-session CSRF token (compared in constant time) and, when the browser
sends Origin or Referer, must come from this host. Every response gets the SecurityHeaders.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import FormData, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gate_core._errors import PrincipalDeparted
from gate_core._models import Actor, AuthMethod, Principal, PrincipalKind
from gate_core.identity import IdpSubject, has_departed, narrowed
from gate_core.identity._canonical import canonical_email
from gate_core.service._config import LOOPBACK_NAMES, address_in
from gate_core.service._peer import socket_peer
from gate_core.service._state import ServiceState

PREFIX = "/console"
SESSION_COOKIE = "gatehouse_console"
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in person and how the console knows it is them (recorded as the audit's ``via``).
    ``unlinked`` (an IdP identity no principal is linked to) says why they may only read."""

    principal: Principal
    via: AuthMethod
    subject: IdpSubject | None = None
    unlinked: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(
            principal_id=self.principal.id,
            via=self.via,
            email=self.principal.email,
            issuer=self.subject.issuer if self.subject else None,
            subject=self.subject.subject if self.subject else None,
        )


def host_name(header: str) -> str:
    """The name in a ``Host`` header: without the port, lower-case, IPv6 without brackets."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    name, colon, port = value.rpartition(":")
    name = name if colon and port.isdigit() else value
    return name.rstrip(".")


def host_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    with contextlib.suppress(ValueError):  # an IP address in its one spelling
        name = str(ipaddress.ip_address(name))
    return any(
        name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:]) and name != pattern[2:])
        for pattern in allowed
    )


class HostCheck:
    """Refuse, before any page renders, a request addressed to a host the console does not answer
    to (Starlette's TrustedHostMiddleware, with a page that says what to configure)."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        name = host_name(raw)
        if name and host_allowed(name, self.allowed):
            await self.app(scope, receive, send)
            return
        body = (
            "<!doctype html><title>Host not allowed</title><h1>Host not allowed</h1>"
            f"<p>{escape(name or '(no Host header)')} is not an allowed host for this console. "
            "If this is your server's name, add it to <code>console.allowed_hosts</code> (or set "
            "<code>public_url</code>) in service.yaml.</p>"
        )
        await HTMLResponse(body, status_code=400, headers={"Cache-Control": "no-store"})(scope, receive, send)


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


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison; bytes, because compare_digest refuses non-ASCII str (a 500)."""
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def form_text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def console_base(scope: Scope) -> str:
    """The console's URL path, behind any root path the service is served under."""
    return str(scope.get("app_root_path", scope.get("root_path", ""))) + PREFIX


def redirect(request: Request, path: str) -> RedirectResponse:
    """See other: ``path`` under the console."""
    return RedirectResponse(console_base(request.scope) + path, status_code=303)


class SecurityHeaders:
    """No framing, no sniffing, same-origin Referer (our own CSRF check reads it), and a CSP that
    allows only this origin's stylesheet and script (the passkey ceremonies, static/passkeys.js):
    nothing inline runs even if escaping were ever bypassed."""

    HEADERS = (
        ("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; "
         "script-src 'self'; connect-src 'self'; "
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


class Sessions:
    """The console's sessions: who is signed in, sign-in itself, CSRF tokens and flash messages."""

    def __init__(self, state: ServiceState, *, local_signin: bool) -> None:
        self.state = state
        self.local_signin = local_signin
        self.oidc = state.config.oidc is not None
        self.lifetime_s = state.config.console.session_lifetime_s

    def middleware(self) -> list[Middleware]:
        return [
            Middleware(SecurityHeaders),
            Middleware(HostCheck, allowed=self.state.config.console_hosts),
            Middleware(
                SessionMiddleware,
                secret_key=self.state.config.session_secret.get_secret_value(),
                session_cookie=SESSION_COOKIE,
                max_age=int(self.lifetime_s),
                path=PREFIX,
                same_site="lax",
                https_only=self.state.config.public_url.startswith("https://"),
            ),
        ]

    # ------------------------------------------------------------ local sign-in

    def local_signin_refusal(self, request: Request) -> str | None:
        """Why local sign-in is not offered to this request, or None when it is."""
        if not self.local_signin:
            return "Local sign-in is disabled on this server."
        peer = socket_peer(request.scope)
        if not address_in(peer, LOOPBACK_NETWORKS):
            return (
                f"Local sign-in is only for a browser on the server's own machine; this connection "
                f"comes from {peer or 'an unknown address'}."
            )
        if host_name(request.headers.get("host", "")) not in LOOPBACK_NAMES:
            return (
                "Local sign-in is only for a browser on the server's own machine that opens the console "
                "as localhost, 127.0.0.1 or [::1]; this page was addressed to another name."
            )
        if any(name in request.headers for name in FORWARDING_HEADERS):
            return (
                "Local sign-in is only for a browser on the server's own machine; this request came "
                "through a proxy."
            )
        return None

    # ------------------------------------------------------------ who is looking

    def viewer(self, request: Request) -> Viewer | None:
        """The signed-in person, or None. The proxy header wins (and re-signs on a new user)."""
        proxied = self.state.auth.from_proxy(request)  # raises when the header comes from elsewhere
        session = request.session
        if proxied is not None:
            if proxied.principal.kind is not PrincipalKind.HUMAN:
                raise PageError(403, "Service principal", "service principals cannot use the console")
            if session.get("pid") != proxied.principal.id or session.get("via") != AuthMethod.PROXY_HEADER:
                self.start(request, proxied.principal, AuthMethod.PROXY_HEADER)
            return Viewer(proxied.principal, AuthMethod.PROXY_HEADER)
        viewer = self._from_session(request, session)
        if viewer is None and "pid" in session:
            session.clear()  # a session this server no longer honours: start over
        return viewer

    def _from_session(self, request: Request, session: dict[str, Any]) -> Viewer | None:
        via = session.get("via")
        # A proxy session only carries the CSRF token: the proxy's header is the identity on every
        # request, so without it (not through the proxy any more) nobody is signed in. A mode that
        # was switched off no longer honours the sessions it created, and a local session only
        # where local sign-in is offered to this very request.
        if not (
            (via == AuthMethod.CONSOLE_LOCAL and self.local_signin_refusal(request) is None)
            or (via == AuthMethod.OIDC and self.oidc)
        ):
            return None
        via = AuthMethod(via)
        signed_in_at = session.get("at")
        if not isinstance(signed_in_at, int) or time.time() - signed_in_at > self.lifetime_s:
            return None  # however busy: a session lasts console.session_lifetime from sign-in
        for name in (session.get("pid"), session.get("email"), session.get("verified_email")):
            if isinstance(name, str) and name and has_departed(self.state.gatekeeper.directory, name):
                # They left the directory: the session ends here, and the attempt is on record.
                self.state.gatekeeper.refuse_departed(
                    PrincipalDeparted(name, via.value),
                    f"{request.method} {request.url.path} (console session)",
                )
                return None
        if via == AuthMethod.OIDC:
            return self._oidc_viewer(session)
        principal = self.state.gatekeeper.directory.find(str(session.get("pid", "")))
        if principal is None or principal.kind is not PrincipalKind.HUMAN:
            return None
        return Viewer(principal, AuthMethod.CONSOLE_LOCAL)

    def _oidc_viewer(self, session: dict[str, Any]) -> Viewer | None:
        """The person an OIDC session stands for, with the directory's groups *now* (narrowed by
        the IdP's groups at sign-in, when that claim is configured). A link or e-mail removed from
        the directory since sign-in leaves an unlinked viewer, who only reads."""
        issuer, sub = session.get("iss"), session.get("sub")
        if not isinstance(issuer, str) or not isinstance(sub, str):
            return None
        link = IdpSubject.of(issuer, sub)
        directory = self.state.gatekeeper.directory
        principal = directory.by_subject(link.issuer, link.subject)
        email = session.get("verified_email")
        if principal is None and isinstance(email, str):
            known = directory.find(str(session.get("pid", "")))
            if (
                known is not None
                and known.email
                and canonical_email(known.email) == canonical_email(email)
                and not [s for s in directory.subjects_of(known.id) if s.issuer == link.issuer]
            ):
                principal = known
        if principal is not None:
            if principal.kind is not PrincipalKind.HUMAN:
                return None
            groups = session.get("idp_groups")
            asserted = [str(g) for g in groups] if isinstance(groups, list) else None
            return Viewer(narrowed(principal, asserted), AuthMethod.OIDC, link)
        unlinked = session.get("unlinked")
        name = str(session.get("name") or link.subject)
        return Viewer(
            Principal(id=f"oidc:{link.subject}", display_name=name),
            AuthMethod.OIDC,
            link,
            unlinked=str(unlinked) if unlinked else f"IdP identity {link} is linked to no principal",
        )

    def require_viewer(self, request: Request) -> Viewer:
        viewer = self.viewer(request)
        if viewer is None:
            # Back to this page after signing in; a form's target cannot be re-sent, so its list instead.
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(target if request.method == "GET" else console_base(request.scope) + "/")
        return viewer

    def start(self, request: Request, principal: Principal, via: AuthMethod, **extra: object) -> None:
        """A fresh session (and CSRF token) at every sign-in, so nothing from before carries over."""
        request.session.clear()
        request.session.update(
            pid=principal.id, via=via.value, csrf=secrets.token_urlsafe(32), at=int(time.time()), **extra
        )

    # ------------------------------------------------------------ CSRF

    def csrf_token(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return token

    def check_form(self, request: Request, form: FormData) -> None:
        """Refuse a POST that this session's page did not produce (token) or that another site sent."""
        expected = request.session.get("csrf")
        sent = form_text(form, "csrf_token")
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

    # ------------------------------------------------------------ flash messages

    def flash(self, request: Request, level: str, text: str) -> None:
        """A message for the next page this session renders."""
        request.session["flash"] = [*request.session.get("flash", []), [level, text]]

    def pop_flashes(self, request: Request) -> list[list[str]]:
        flashes: list[list[str]] = request.session.pop("flash", [])
        return flashes
