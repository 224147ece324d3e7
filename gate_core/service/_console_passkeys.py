"""Passkeys in the console (issue 19): a signed-in person registers, names and removes the
passkeys that sign their decisions, and the gate page asks the authenticator to sign a decision.

The WebAuthn ceremonies use py_webauthn (``webauthn``): registration options with user
verification required and a resident key preferred, the attestation checked against this
service's relying party id and origin — both taken from ``config.public_url``, never from the
request — and the verified credential handed to ``PasskeyService`` (which audits it with its
public key). For a signed decision the challenge is *derived* from the decision
(``decision_challenge``); the assertion travels with the decide form and the core verifies it.

JSON endpoints carry the session's CSRF token in ``X-CSRF-Token`` and must come from this origin.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gate_core._errors import GatehouseError
from gate_core._models import Verdict
from gate_core._passkeys import Passkey, decision_challenge
from gate_core.service._console_session import PageError, form_text, redirect, same_secret

if TYPE_CHECKING:
    from gate_core.service._console import Console

MAX_JSON = 64 * 1024
CREDENTIAL_ID_MAX = 1400


def relying_party(public_url: str) -> tuple[str, str]:
    """(rp id, origin) of the console: the configured public URL's host, and its origin."""
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"public_url {public_url!r} is not an http(s) URL")
    return parts.hostname, f"{parts.scheme}://{parts.netloc}"


class ConsolePasskeys:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.rp_id, self.origin = relying_party(console.state.config.public_url)

    def routes(self) -> list[Route]:
        return [
            Route("/passkeys", self.page, methods=["GET"]),
            Route("/passkeys/options", self.registration_options, methods=["POST"]),
            Route("/passkeys/register", self.register, methods=["POST"]),
            Route("/passkeys/remove", self.remove, methods=["POST"]),
            Route("/passkeys/rename", self.rename, methods=["POST"]),
            Route("/gates/{gate_id}/sign-options", self.sign_options, methods=["POST"]),
        ]

    @property
    def service(self) -> Any:
        return self.console.gatekeeper.passkeys

    # ------------------------------------------------------------ page and forms

    async def page(self, request: Request) -> Response:
        viewer = self.console.require_viewer(request)
        keys = await run_in_threadpool(self.service.of, viewer.principal.id)
        return self.console.render(
            request, "passkeys.html", viewer, nav="passkeys", passkeys=keys, rp_id=self.rp_id
        )

    async def remove(self, request: Request) -> Response:
        form = await request.form()
        self.console.sessions.check_form(request, form)
        viewer = self.console.require_viewer(request)
        credential_id = form_text(form, "credential_id")[:CREDENTIAL_ID_MAX]
        removed = await run_in_threadpool(
            lambda: self.service.remove(viewer.principal.id, credential_id, actor=viewer.actor)
        )
        self.console.sessions.flash(
            request,
            "ok" if removed else "error",
            "Passkey removed." if removed else "No such passkey of yours.",
        )
        return redirect(request, "/passkeys")

    async def rename(self, request: Request) -> Response:
        form = await request.form()
        self.console.sessions.check_form(request, form)
        viewer = self.console.require_viewer(request)
        credential_id = form_text(form, "credential_id")[:CREDENTIAL_ID_MAX]
        try:
            renamed = await run_in_threadpool(
                self.service.rename, viewer.principal.id, credential_id, form_text(form, "name")
            )
        except GatehouseError as exc:
            self.console.sessions.flash(request, "error", str(exc))
            return redirect(request, "/passkeys")
        self.console.sessions.flash(
            request, "ok" if renamed else "error", "Renamed." if renamed else "No such passkey."
        )
        return redirect(request, "/passkeys")

    # ------------------------------------------------------------ JSON ceremonies

    async def _json(self, request: Request) -> dict[str, Any]:
        """The body of a same-origin, CSRF-checked JSON request from this session's page."""
        expected = request.session.get("csrf")
        if not isinstance(expected, str) or not same_secret(
            request.headers.get("x-csrf-token", ""), expected
        ):
            raise PageError(403, "Form expired or forged", "missing or wrong CSRF token; nothing was changed")
        if request.headers.get("origin") not in (
            None,
            self.origin,
            f"{request.url.scheme}://{request.url.netloc}",
        ):
            raise PageError(403, "Cross-site request refused", "this request came from another site")
        body = await request.body()
        if len(body) > MAX_JSON:
            raise PageError(413, "Too large", "request body too large")
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise PageError(400, "Bad request", "the body is not JSON") from None
        if not isinstance(data, dict):
            raise PageError(400, "Bad request", "the body must be a JSON object")
        return data

    async def registration_options(self, request: Request) -> Response:
        from webauthn import generate_registration_options, options_to_json
        from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
        from webauthn.helpers.structs import (
            AuthenticatorSelectionCriteria,
            PublicKeyCredentialDescriptor,
            ResidentKeyRequirement,
            UserVerificationRequirement,
        )

        viewer = self.console.require_viewer(request)
        await self._json(request)
        existing = await run_in_threadpool(self.service.of, viewer.principal.id)
        challenge = secrets.token_bytes(32)
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name="Gatehouse",
            user_id=viewer.principal.id.encode("utf-8")[:64],
            user_name=viewer.principal.email or viewer.principal.id,
            user_display_name=viewer.principal.label,
            challenge=challenge,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=base64url_to_bytes(k.credential_id)) for k in existing
            ],
        )
        request.session["passkey_challenge"] = bytes_to_base64url(challenge)
        return Response(options_to_json(options), media_type="application/json")

    async def register(self, request: Request) -> Response:
        from webauthn import verify_registration_response
        from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

        viewer = self.console.require_viewer(request)
        data = await self._json(request)
        challenge = request.session.pop("passkey_challenge", None)  # one ceremony per challenge
        if not isinstance(challenge, str):
            return JSONResponse({"error": "no registration in progress; start again"}, status_code=400)
        credential = data.get("credential")
        if not isinstance(credential, dict):
            return JSONResponse({"error": "credential must be a JSON object"}, status_code=400)
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=base64url_to_bytes(challenge),
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                require_user_verification=True,
            )
        except Exception as exc:  # the library raises several types for malformed or wrong input
            return JSONResponse({"error": f"the passkey could not be verified: {exc}"}, status_code=400)
        key = Passkey(
            credential_id=bytes_to_base64url(verified.credential_id),
            principal_id=viewer.principal.id,
            name=str(data.get("name") or "passkey"),
            public_key=bytes_to_base64url(verified.credential_public_key),
            sign_count=int(verified.sign_count),
            rp_id=self.rp_id,
            origin=self.origin,
            created_at=self.console.gatekeeper.clock.now(),
        )
        if len(key.credential_id) > CREDENTIAL_ID_MAX:
            return JSONResponse({"error": "credential id too long"}, status_code=400)
        try:
            await run_in_threadpool(lambda: self.service.register(key, actor=viewer.actor))
        except GatehouseError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        self.console.sessions.flash(request, "ok", f"Passkey {key.name!r} registered.")
        return JSONResponse({"ok": True, "credential_id": key.credential_id})

    async def sign_options(self, request: Request) -> Response:
        """The request options whose challenge is this exact decision, for the viewer's passkeys."""
        from webauthn import generate_authentication_options, options_to_json
        from webauthn.helpers import base64url_to_bytes
        from webauthn.helpers.structs import PublicKeyCredentialDescriptor, UserVerificationRequirement

        viewer = self.console.require_viewer(request)
        data = await self._json(request)
        gate_id = self.console._gate_id(request)
        verdict_text, comment = str(data.get("verdict", "")), str(data.get("comment", "")).strip()
        if verdict_text not in (Verdict.APPROVE.value, Verdict.REJECT.value):
            return JSONResponse({"error": "a decision is either approve or reject"}, status_code=400)
        gate = await run_in_threadpool(self.console.gatekeeper.get, gate_id)
        keys = await run_in_threadpool(self.service.of, viewer.principal.id)
        if not keys:
            return JSONResponse(
                {
                    "error": "this gate needs a decision signed with a passkey; "
                    "register one under Passkeys first"
                },
                status_code=409,
            )
        options = generate_authentication_options(
            rp_id=self.rp_id,
            challenge=decision_challenge(gate.id, gate.binding_hash, verdict_text, comment),
            allow_credentials=[
                PublicKeyCredentialDescriptor(id=base64url_to_bytes(k.credential_id)) for k in keys
            ],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return Response(options_to_json(options), media_type="application/json")


__all__ = ["ConsolePasskeys", "relying_party"]
