"""The console's Tokens page: a signed-in person lists, creates and revokes their own API tokens;
members of ``gatehouse-admins`` also manage service principals' tokens (optionally limited to
pipeline globs).

    GET  /console/tokens               your tokens (and, for admins, every service token)
    POST /console/tokens               create one; the secret is on the answer, once, never again
    POST /console/tokens/{id}/revoke   revoke one

The console decides nothing here: ``gatekeeper.tokens`` (TokenService) checks every issue and
revocation against the signed-in actor — a person's token only by that person, a service token
only by an admin — so a tampered form (another ``principal``, another token id) is refused by the
same rule as the CLI's. Every form carries the console's CSRF token; the audit entry records the
issuer, how they signed in (``issued_via``) and the channel ``console``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gate_core._durations import parse_duration
from gate_core._errors import InvalidInput, PermissionDenied
from gate_core._models import PrincipalKind
from gate_core._token_service import ADMIN_GROUP
from gate_core._tokens import ApiToken, Scope
from gate_core.identity import same_person
from gate_core.service._console_session import PageError, Viewer, form_text, redirect

if TYPE_CHECKING:
    from gate_core.service._console import Console

CHANNEL = "console"
LIFETIMES = ("7d", "30d", "90d", "365d")  # offered in the form; "" is no expiry
MAX_DESCRIPTION = 500  # the column's size
TOKEN_ID = re.compile(r"^[0-9a-f]{12}$")


def is_admin(viewer: Viewer) -> bool:
    return ADMIN_GROUP in viewer.principal.groups


def pipeline_globs(text: str) -> tuple[str, ...] | None:
    """One glob per line or comma-separated; nothing at all is no limit (None)."""
    globs = tuple(g.strip() for line in text.splitlines() for g in line.split(",") if g.strip())
    return globs or None


class TokensPage:
    """The Tokens page's routes, over the console's sessions, rendering and TokenService."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.sessions = console.sessions
        self.tokens = console.gatekeeper.tokens
        self.directory = console.gatekeeper.directory

    def routes(self) -> list[Route]:
        return [
            Route("/tokens", self.page, methods=["GET"]),
            Route("/tokens", self.create, methods=["POST"]),
            Route("/tokens/{token_id}/revoke", self.revoke, methods=["POST"]),
        ]

    # ------------------------------------------------------------ reading

    def _service_ids(self) -> list[str]:
        return sorted(p.id for p in self.directory if p.kind is PrincipalKind.SERVICE)

    def _listing(self, viewer: Viewer) -> tuple[list[ApiToken], list[ApiToken]]:
        """(the viewer's own tokens, every service principal's — for admins only), newest first."""
        me = viewer.principal
        everyone = sorted(self.tokens.list(), key=lambda t: t.created_at, reverse=True)
        own = [t for t in everyone if same_person(t.principal_id, None, me.id, None)]
        services = set(self._service_ids()) if is_admin(viewer) else set()
        return own, [t for t in everyone if t.principal_id in services]

    async def page(self, request: Request) -> Response:
        viewer = self.console.require_viewer(request)
        return await self._render(request, viewer)

    async def _render(
        self, request: Request, viewer: Viewer, created: tuple[ApiToken, str] | None = None
    ) -> Response:
        own, services = await run_in_threadpool(self._listing, viewer)
        return self.console.render(
            request,
            "tokens.html",
            viewer,
            nav="tokens",
            own=own,
            services=services,
            admin=is_admin(viewer),
            service_ids=self._service_ids() if is_admin(viewer) else [],
            scopes=[s.value for s in Scope],
            lifetimes=LIFETIMES,
            created=created,
            now=self.console.gatekeeper.clock.now(),
        )

    # ------------------------------------------------------------ changing

    async def create(self, request: Request) -> Response:
        form = await request.form()
        self.sessions.check_form(request, form)
        viewer = self.console.require_viewer(request)
        principal = form_text(form, "principal").strip() or viewer.principal.id
        scope, description, lifetime, pipelines = _read_create_form(form)
        try:
            created = await run_in_threadpool(
                lambda: self.tokens.create(
                    principal,
                    scope,
                    created_by=viewer.actor,
                    description=description,
                    expires_in=lifetime,
                    pipelines=pipelines,
                    channel=CHANNEL,
                )
            )
        except PermissionDenied as refusal:
            raise PageError(403, "Not allowed", f"No token was created: {refusal}") from None
        except InvalidInput as problem:
            raise PageError(400, "Cannot create this token", str(problem)) from None
        # The answer itself shows the secret (no redirect: a flash would carry it in the cookie).
        return await self._render(request, viewer, created)

    async def revoke(self, request: Request) -> Response:
        form = await request.form()
        self.sessions.check_form(request, form)
        viewer = self.console.require_viewer(request)
        token_id = str(request.path_params["token_id"])
        if not TOKEN_ID.match(token_id):
            raise PageError(404, "Not found", "There is no token with that id.")
        try:
            revoked = await run_in_threadpool(
                lambda: self.tokens.revoke(token_id, actor=viewer.actor, channel=CHANNEL)
            )
        except PermissionDenied as refusal:
            raise PageError(403, "Not allowed", f"Nothing was revoked: {refusal}") from None
        if revoked:
            self.sessions.flash(request, "ok", f"Token {token_id} is revoked; it no longer authenticates.")
        else:
            self.sessions.flash(request, "error", f"No active token {token_id}; nothing was revoked.")
        return redirect(request, "/tokens")


def _read_create_form(form: FormData) -> tuple[Scope, str, timedelta | None, tuple[str, ...] | None]:
    scope_text = form_text(form, "scope") or Scope.REQUEST.value
    if scope_text not in {s.value for s in Scope}:
        raise PageError(400, "Unknown scope", f"{scope_text[:40]!r} is not a token scope.")
    description = form_text(form, "description").strip()
    if len(description) > MAX_DESCRIPTION or not description.isprintable():
        raise PageError(
            400, "Bad description", f"At most {MAX_DESCRIPTION} printable characters, on one line."
        )
    expires = form_text(form, "expires").strip()
    if expires and expires not in LIFETIMES:
        raise PageError(400, "Unknown lifetime", f"Choose one of {', '.join(LIFETIMES)}, or none.")
    lifetime = parse_duration(expires) if expires else None
    return Scope(scope_text), description, lifetime, pipeline_globs(form_text(form, "pipelines"))


__all__ = ["TokensPage"]
