"""Slack interactivity: the signed endpoint the Approve/Reject buttons of approval cards call.

The cards are posted by the ``slack`` notifier type (``gate_core.service.notify._slack``); the
clicks are verified with the signing secret of that notifier instance in service.yaml.

    click ─► POST /v1/slack/interactions ─► signature (v0 HMAC, 5-minute window) + replay check
          ─► Slack user id ─► users.info e-mail (cached) ─► caller_from_slack_email ─► Gatekeeper.decide
          ─► refused: ephemeral reply to that user via response_url     accepted: state.changed(gate)

Slack is one more way in, never a second rule book: every decision goes through Gatekeeper.decide,
so self-approval, approver groups, quorum and "already decided" are the core's answers, audited the
same way as on every other path. Who clicked is established by the Slack profile e-mail (scope
``users:read.email``) matched against the directory by gate_core.identity; a Slack user without an
e-mail, or with one the directory does not know, decides nothing.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from functools import partial
from typing import Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient
from starlette.concurrency import run_in_threadpool

from gate_core._errors import AuthenticationFailed, DecisionRefused, NotFound, PrincipalDeparted
from gate_core._gatekeeper import principal_may_decide
from gate_core._models import (
    Actor,
    AuthMethod,
    Gate,
    Principal,
    Verdict,
)
from gate_core.identity import caller_from_slack_email
from gate_core.service._problems import problem
from gate_core.service._slack_card import (
    ACTION_APPROVE,
    ACTION_REJECT,
    REASON_ACTION,
    REASON_BLOCK,
    REASON_MAX,
    REJECT_CALLBACK,
    mrkdwn_escape,
    reject_modal,
)
from gate_core.service._state import ServiceState
from gate_core.service.notify._slack import SlackConfig

log = logging.getLogger("gatehouse.slack")

SIGNATURE_WINDOW_S = 300  # Slack's own rule (and SignatureVerifier's): older requests are refused
_GATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")

# ---------------------------------------------------------------- who clicked


class _Refused(Exception):
    """A click that changes nothing; the (plain-text) message goes back to the person who clicked."""


class ReplayGuard:
    """Refuses a (timestamp, signature) pair already seen while it could still verify.

    Per process: behind a load balancer a replay sent to another replica passes this check, but
    the core still answers it "already decided" or "one person counts once" — a replayed click
    never counts twice. Bounded: past ``capacity`` the oldest entries go first."""

    def __init__(self, window_s: float = SIGNATURE_WINDOW_S, capacity: int = 100_000) -> None:
        self.window_s = window_s
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def first_sighting(self, timestamp: str, signature: str, now: float) -> bool:
        key = (timestamp, signature)
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now:
                self._seen.popitem(last=False)
            if key in self._seen:
                return False
            # valid until its own timestamp leaves the window (a future-dated one stays valid longer)
            self._seen[key] = int(timestamp) + self.window_s
            if len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            return True


class SlackEmails:
    """Slack user id → profile e-mail through ``users.info``, cached for a few minutes: without the
    cache every click costs one more Web API call inside Slack's 3-second answer window."""

    def __init__(self, client: WebClient, *, ttl_s: float = 300.0, capacity: int = 10_000) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def email_of(self, user_id: str) -> str:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(user_id)
            if cached is not None and cached[1] > now:
                return cached[0]
        email = self._lookup(user_id)
        with self._lock:
            self._cache[user_id] = (email, now + self.ttl_s)
            self._cache.move_to_end(user_id)
            if len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return email

    def _lookup(self, user_id: str) -> str:
        try:
            response = self.client.users_info(user=user_id)
        except SlackApiError as exc:
            raise _Refused(
                f"Slack could not tell Gatehouse who you are ({exc.response.get('error')}); "
                "nothing was recorded."
            ) from exc
        except (SlackClientError, OSError) as exc:
            raise _Refused(
                "Gatehouse could not reach Slack to check who you are; nothing was recorded."
            ) from exc
        user = response.get("user") or {}
        email = (user.get("profile") or {}).get("email") if isinstance(user, dict) else None
        if not isinstance(email, str) or not email:
            raise _Refused(
                "Your Slack profile has no e-mail address Gatehouse can read, so it cannot tell who you "
                "are; nothing was recorded."
            )
        return email


# ---------------------------------------------------------------- interaction payloads


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _User(_Payload):
    id: str = Field(min_length=1, max_length=64)


class _Action(_Payload):
    action_id: str
    value: str = ""


class BlockActions(_Payload):
    type: Literal["block_actions"]
    user: _User
    actions: list[_Action] = Field(min_length=1)
    response_url: str = Field(pattern=r"^https?://")
    trigger_id: str = ""


class _Input(_Payload):
    value: str | None = None


class _ViewState(_Payload):
    values: dict[str, dict[str, _Input]] = {}


class _View(_Payload):
    callback_id: str = ""
    private_metadata: str = ""
    state: _ViewState = _ViewState()


class ViewSubmission(_Payload):
    type: Literal["view_submission"]
    user: _User
    view: _View


Interaction = BlockActions | ViewSubmission
_KINDS: Mapping[str, type[BlockActions] | type[ViewSubmission]] = {
    "block_actions": BlockActions,
    "view_submission": ViewSubmission,
}


class MalformedPayload(ValueError):
    pass


def parse_interaction(body: bytes) -> Interaction | None:
    """The payload of a signed Request URL request; None for kinds Gatehouse does not handle."""
    fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    if len(fields.get("payload", [])) != 1:
        raise MalformedPayload("expected exactly one form field 'payload'")
    try:
        data = json.loads(fields["payload"][0])
    except json.JSONDecodeError as exc:
        raise MalformedPayload("'payload' is not JSON") from exc
    return interaction_from(data)


def interaction_from(data: object) -> Interaction | None:
    """An interaction payload as Slack sends it (the Request URL's form field, or a Socket Mode
    envelope's ``payload``); None for kinds Gatehouse does not handle."""
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise MalformedPayload("'payload' has no 'type'")
    model = _KINDS.get(data["type"])
    if model is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MalformedPayload(f"{data['type']} payload: {where}: {first['msg']}") from exc


def _gate_id(text: str) -> str:
    if not _GATE_ID.match(text):
        raise MalformedPayload(f"{text[:60]!r} is not a gate id")
    return text


def _post_ephemeral(response_url: str, text: str) -> None:
    response = WebhookClient(response_url, timeout=5).send(
        text=text, response_type="ephemeral", replace_original=False
    )
    if response.status_code != 200:
        raise RuntimeError(f"response_url answered {response.status_code}: {response.body[:200]}")


# ---------------------------------------------------------------- the endpoint


class SlackInteractions:
    """Verifies, parses and acts on Slack interactivity requests for one app."""

    def __init__(self, state: ServiceState, config: SlackConfig) -> None:
        self.state = state
        secret = config.signing_secret
        # a Socket Mode-only app has no signing secret: then no request at the URL is genuine
        self.verifier = SignatureVerifier(secret.get_secret_value()) if secret is not None else None
        self.replays = ReplayGuard()
        # short timeout: these calls happen while Slack waits (3 s) for our answer
        self.client = WebClient(token=config.bot_token.get_secret_value(), base_url=config.api_url, timeout=2)
        self.emails = SlackEmails(self.client)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        refusal = self.authenticate(body, request.headers)
        if refusal is not None:
            log.warning("slack interaction refused: %s", refusal)
            return problem(401, "Slack signature refused", refusal, "slack_signature_invalid")
        try:
            interaction = parse_interaction(body)
            if interaction is None:
                return Response(status_code=200)  # a kind we do not handle: acknowledge, do nothing
            answer = await run_in_threadpool(self.dispatch, interaction)
        except MalformedPayload as exc:
            return problem(400, "Malformed Slack payload", str(exc), "slack_payload_malformed")
        return JSONResponse(answer) if answer is not None else Response(status_code=200)

    def authenticate(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """Why the request is not a fresh, genuine Slack request — or None when it is."""
        if self.verifier is None:
            return "this Slack app receives its interactions over Socket Mode (no signing secret is set)"
        timestamp = headers.get("x-slack-request-timestamp")
        signature = headers.get("x-slack-signature")
        if not timestamp or not signature:
            return "X-Slack-Request-Timestamp and X-Slack-Signature are required"
        if not (timestamp.isascii() and timestamp.isdigit()):
            return "X-Slack-Request-Timestamp is not a Unix time"
        now = time.time()  # the clock SignatureVerifier checks the window with
        if abs(now - int(timestamp)) > SIGNATURE_WINDOW_S:
            return "X-Slack-Request-Timestamp is outside the 5-minute window"
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return "the body is not UTF-8"
        if not self.verifier.is_valid(body, timestamp, signature):
            return "X-Slack-Signature does not match the body"
        if not self.replays.first_sighting(timestamp, signature, now):
            return "this exact signed request was already received (replay)"
        return None

    def dispatch(self, interaction: Interaction) -> dict[str, Any] | None:
        """Act on one interaction (in a worker thread); returns the JSON answer Slack expects, if any."""
        if isinstance(interaction, BlockActions):
            self.on_button(interaction)
            return None
        return self.on_view_submission(interaction)

    def on_button(self, payload: BlockActions) -> None:
        action = next((a for a in payload.actions if a.action_id in (ACTION_APPROVE, ACTION_REJECT)), None)
        if action is None:
            return  # some other button (none of ours): nothing to do
        gate_id = _gate_id(action.value)
        try:
            verdict = Verdict.APPROVE if action.action_id == ACTION_APPROVE else Verdict.REJECT
            principal = self.principal_of(payload.user.id, gate_id, verdict)
            if action.action_id == ACTION_APPROVE:
                self.decide(gate_id, principal, Verdict.APPROVE, "")
            else:
                self.open_reject_modal(gate_id, principal, payload.trigger_id)
        except _Refused as refusal:
            self.reply_ephemeral(payload.response_url, f":no_entry_sign: {mrkdwn_escape(str(refusal))}")

    def on_view_submission(self, payload: ViewSubmission) -> dict[str, Any] | None:
        view = payload.view
        if view.callback_id != REJECT_CALLBACK:
            return None
        gate_id = _gate_id(view.private_metadata)
        field = view.state.values.get(REASON_BLOCK, {}).get(REASON_ACTION)
        if field is None:
            raise MalformedPayload(f"view_submission payload: no {REASON_BLOCK}.{REASON_ACTION} input")
        reason = (field.value or "").strip()
        try:
            if not reason:
                raise _Refused("A reason is required: it goes into the audit trail and to the requester.")
            if len(reason) > REASON_MAX:
                raise _Refused(f"Keep the reason under {REASON_MAX} characters.")
            self.decide(
                gate_id, self.principal_of(payload.user.id, gate_id, Verdict.REJECT), Verdict.REJECT, reason
            )
        except _Refused as refusal:
            return {"response_action": "errors", "errors": {REASON_BLOCK: str(refusal)}}
        return None

    def principal_of(self, slack_user_id: str, gate_id: str, verdict: Verdict) -> Principal:
        email = self.emails.email_of(slack_user_id)
        try:
            return caller_from_slack_email(self.state.gatekeeper.directory, email).principal
        except PrincipalDeparted as departed:
            # Someone who left clicked a card still on screen: the core refuses it on that gate
            # and audits it there (decision.refused), like any other refused decision.
            actor = Actor(principal_id=email, via=AuthMethod.SLACK, email=email)
            try:
                self.state.gatekeeper.decide(gate_id, actor=actor, verdict=verdict)
            except (DecisionRefused, NotFound) as refusal:
                raise _Refused(f"{refusal} (gate {gate_id}; nothing changed)") from departed
            raise _Refused(str(departed)) from departed  # not reached: the core refuses them
        except AuthenticationFailed as exc:
            log.warning("slack user %s (%s) is not in the directory", slack_user_id, email)
            raise _Refused(
                f"Your Slack e-mail {email} is not in the Gatehouse directory, so you cannot "
                "decide gates; nothing was recorded."
            ) from exc

    def decide(self, gate_id: str, principal: Principal, verdict: Verdict, comment: str) -> Gate:
        actor = Actor(principal_id=principal.id, via=AuthMethod.SLACK, email=principal.email)
        try:
            gate = self.state.gatekeeper.decide(gate_id, actor=actor, verdict=verdict, comment=comment)
        except (DecisionRefused, NotFound) as refusal:
            raise _Refused(f"{refusal} (gate {gate_id}; nothing changed)") from refusal
        self.state.changed(gate)  # wakes waiters now; the card update goes to the hub's pool
        return gate

    def open_reject_modal(self, gate_id: str, principal: Principal, trigger_id: str) -> None:
        """Ask for a reason — but refuse at once anyone the core would refuse, rather than after
        they typed one. The rejection itself is decided (and audited) on submit."""
        gatekeeper = self.state.gatekeeper
        try:
            gate = gatekeeper.get(gate_id)
        except NotFound as exc:
            raise _Refused(f"{exc}; nothing changed") from exc
        why_not = principal_may_decide(gate, principal, gatekeeper.clock.now())
        if why_not is not None:
            raise _Refused(f"{why_not} (gate {gate_id}; nothing changed)")
        if not trigger_id:
            raise MalformedPayload("block_actions payload: trigger_id is required to open the reject dialog")
        try:
            self.client.views_open(trigger_id=trigger_id, view=reject_modal(gate))
        except (SlackClientError, OSError) as exc:
            log.warning("views.open for gate %s failed: %s", gate_id, exc)
            raise _Refused(
                "Slack would not open the reject dialog in time; please click Reject again."
            ) from exc

    def reply_ephemeral(self, response_url: str, text: str) -> None:
        """Only the person who clicked sees it. Sent from the hub's pool: it is not part of the
        answer Slack waits for, and a slow response_url must not hold that answer up."""
        self.state.hub.deliver(
            response_url, "slack ephemeral reply", partial(_post_ephemeral, response_url, text)
        )


def slack_interactions(state: ServiceState) -> SlackInteractions | None:
    """The handler of the configured Slack app's interactions, or None without Slack."""
    slack = state.config.slack_app()
    return SlackInteractions(state, slack) if slack is not None else None


def slack_router(interactions: SlackInteractions | None) -> APIRouter:
    """``POST /v1/slack/interactions`` for this app (404 when Slack is not configured)."""
    router = APIRouter(prefix="/v1/slack", tags=["slack"])

    @router.post(
        "/interactions",
        responses={401: {"description": "missing, forged, stale or replayed signature"}},
    )
    async def slack_interactions(request: Request) -> Response:
        """Slack interactivity (Request URL of the Slack app): Approve/Reject clicks and the reject dialog."""
        if interactions is None:
            return problem(404, "Slack is not configured", "slack is not configured", "slack_not_configured")
        return await interactions.handle(request)

    return router
