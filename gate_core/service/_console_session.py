"""Who is looking at the console, and proof that a form came from them.

In the order a request is identified:

    proxy header   ``config.proxy``: every request from a trusted IP carrying the header is
                   that person (Authenticator.from_proxy); the header from anywhere else is refused
    session        a signed cookie (``config.session_secret``; HttpOnly, SameSite=Lax, path
                   /console) holding the principal id and how it was established (console-local
                   or oidc — see _console_login); a mode switched off no longer honours its sessions

Every form POST carries a per-session CSRF token (compared in constant time) and, when the browser
sends Origin or Referer, must come from this host. Every response gets the SecurityHeaders.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import FormData, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gate_core._models import Actor, AuthMethod, Principal, PrincipalKind
from gate_core.service._state import ServiceState

PREFIX = "/console"
SESSION_COOKIE = "gatehouse_console"
SESSION_MAX_AGE_S = 8 * 60 * 60  # a working day; the cookie's signature carries its age


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

    def middleware(self) -> list[Middleware]:
        return [
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=self.state.config.session_secret.get_secret_value(),
                session_cookie=SESSION_COOKIE,
                max_age=SESSION_MAX_AGE_S,
                path=PREFIX,
                same_site="lax",
                https_only=self.state.config.public_url.startswith("https://"),
            ),
        ]

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
        known = self.state.gatekeeper.directory.find(pid) if pid else None
        if via is not AuthMethod.OIDC:
            return known
        groups = frozenset(str(g) for g in session.get("groups", []))
        if known is not None:
            return known.model_copy(update={"groups": known.groups | groups})
        email, name = session.get("email"), str(session.get("name", ""))
        return Principal(id=pid, email=email, display_name=name, groups=groups)

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
