"""Signing in to the console and out again.

    console-local  pick a human principal from the directory; only when ``app.state.local_signin``
                   (the embedded default: a sandbox home on loopback) and only for a request
                   ``Sessions.local_signin_refusal`` does not refuse (loopback peer, loopback Host,
                   not forwarded by a proxy)
    oidc           authorization-code flow with PKCE and a nonce; the id_token is checked by the
                   service's OidcVerifier (signature via JWKS, iss, aud, exp) and mapped by
                   gate_core.identity's caller_from_oidc_claims (subject link or verified e-mail);
                   an identity linked to nobody signs in to read, and is told what to configure
    proxy header   nothing to do here: _console_session reads the header on every request

Each sign-in starts a fresh session (Sessions.start); ``next`` only ever leads back into the console.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gate_core._errors import AuthenticationFailed
from gate_core._models import AuthMethod, PrincipalKind
from gate_core.identity import Caller, caller_from_oidc_claims, claim_groups
from gate_core.service._console_session import PageError, console_base, form_text, redirect, same_secret
from gate_core.service._oidc_client import OidcClient

if TYPE_CHECKING:
    from gate_core.service._console import Console


def safe_next(request: Request, target: str) -> str:
    """Only back into the console: ``next`` must never send a signed-in user elsewhere."""
    base = console_base(request.scope)
    if target.startswith(base + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return base + "/"


class SignIn:
    """The sign-in page, local and OIDC sign-in, sign-out: routes of the console they belong to."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.state = console.state
        self.sessions = console.sessions
        self.oidc = OidcClient(self.state.config.oidc) if self.state.config.oidc else None

    def routes(self) -> list[Route]:
        return [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login/local", self.login_local, methods=["POST"]),
            Route("/login/oidc", self.login_oidc, methods=["GET"]),
            Route("/oidc/callback", self.oidc_callback, methods=["GET"]),
            Route("/logout", self.logout, methods=["POST"]),
        ]

    async def login_page(self, request: Request) -> Response:
        next_path = safe_next(request, request.query_params.get("next", ""))
        if self.sessions.viewer(request) is not None:
            return RedirectResponse(next_path, status_code=303)
        refusal = self.sessions.local_signin_refusal(request)
        humans = sorted(
            (p for p in self.state.gatekeeper.directory if p.kind is PrincipalKind.HUMAN), key=lambda p: p.id
        )
        return self.console.render(
            request,
            "login.html",
            None,
            next_path=next_path,
            local_signin=refusal is None,
            local_refusal=refusal if self.sessions.local_signin else None,
            principals=humans if refusal is None else [],
            oidc=self.oidc is not None,
            proxy=self.state.config.proxy,
        )

    async def login_local(self, request: Request) -> Response:
        refusal = self.sessions.local_signin_refusal(request)
        if refusal is not None:  # refused before anything else: there is no form to forge
            title = "Local sign-in is disabled" if not self.sessions.local_signin else "Local sign-in refused"
            raise PageError(403, title, f"{refusal} Use your identity provider or proxy.")
        form = await request.form()
        self.sessions.check_form(request, form)
        principal = self.state.gatekeeper.directory.find(form_text(form, "principal"))
        if principal is None or principal.kind is not PrincipalKind.HUMAN:
            raise PageError(403, "Cannot sign in", "Only people in the directory sign in; services cannot.")
        self.sessions.start(request, principal, AuthMethod.CONSOLE_LOCAL)
        return RedirectResponse(safe_next(request, form_text(form, "next")), status_code=303)

    def _redirect_uri(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{console_base(request.scope)}/oidc/callback"

    async def login_oidc(self, request: Request) -> Response:
        oidc = self._oidc_client()
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        redirect_uri = self._redirect_uri(request)
        url = await run_in_threadpool(oidc.authorization_url, redirect_uri, state, nonce, verifier)
        request.session["oidc"] = {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "next": safe_next(request, request.query_params.get("next", "")),
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
        caller, claims = await run_in_threadpool(
            self._verified_caller, oidc, params["code"], self._redirect_uri(request), pending
        )
        link = caller.subject
        assert link is not None  # caller_from_oidc_claims always names the subject
        groups_claim = oidc.config.groups_claim
        extra: dict[str, object] = {"iss": link.issuer, "sub": link.subject, "name": caller.principal.label}
        if caller.unlinked is not None:
            extra["unlinked"] = caller.unlinked
        elif self.state.gatekeeper.directory.by_subject(link.issuer, link.subject) is None:
            extra["verified_email"] = str(claims.get(oidc.config.email_claim, ""))  # linked by that e-mail
        if groups_claim and groups_claim in claims:
            extra["idp_groups"] = sorted(claim_groups(claims, groups_claim))
        self.sessions.start(request, caller.principal, AuthMethod.OIDC, **extra)
        if caller.unlinked is not None:
            self.sessions.flash(request, "error", f"You may read, not decide: {caller.unlinked}.")
        return RedirectResponse(safe_next(request, str(pending.get("next", ""))), status_code=303)

    def _verified_caller(
        self, oidc: OidcClient, code: str, redirect_uri: str, pending: Mapping[str, Any]
    ) -> tuple[Caller, dict[str, Any]]:
        """Blocking: exchange the code, verify the id_token (the service's verifier) and its nonce."""
        id_token = oidc.exchange(code, redirect_uri, str(pending.get("verifier", "")))
        verifier = self.state.auth.oidc
        assert verifier is not None  # built from the same config as self.oidc
        claims = verifier.claims(id_token)
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not same_secret(nonce, str(pending.get("nonce", ""))):
            raise AuthenticationFailed("the identity token's nonce does not match this sign-in (replayed?)")
        caller = caller_from_oidc_claims(self.state.gatekeeper.directory, claims, oidc.config)
        if caller.principal.kind is not PrincipalKind.HUMAN:
            raise AuthenticationFailed(
                f"{caller.principal.id} is a service principal; services cannot sign in"
            )
        return caller, claims

    def _oidc_client(self) -> OidcClient:
        if self.oidc is None:
            raise PageError(404, "Not found", "This server does not use an OpenID Connect identity provider.")
        return self.oidc

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        self.sessions.check_form(request, form)
        request.session.clear()
        self.sessions.flash(request, "ok", "Signed out.")
        return redirect(request, "/login")
