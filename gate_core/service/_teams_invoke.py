"""Teams clicks: what the bot's messaging endpoint does with Approve / Reject on a card.

The cards are posted by the ``teams-bot`` notifier type (``gate_core.service.notify._teams_bot``).

    click ─► POST /v1/teams/messages   invoke activity, name "adaptiveCard/action",
          │                            value.action.verb approve | reject | refresh, data {gate, reason}
          ├─ bearer JWT verified as the Bot Framework requires (_teams_auth) ─► 401/403, nothing read
          ├─ tenant = the bot's tenant; the card was posted for that gate in that conversation
          ├─ from.id ─► Bot Connector member lookup (e-mail, UPN, aadObjectId = from.aadObjectId)
          │           ─► caller_from_teams_member ─► Gatekeeper.decide (via teams)
          └─ invoke response {statusCode: 200, type: application/vnd.microsoft.card.adaptive, value: card}
               accepted: the card with the outcome — and the hub PUTs it into the conversation for all
               refused:  the unchanged card with the refusal on top, for the clicker only

Teams is one more way in, never a second rule book: self-approval, approver groups, quorum and
"already decided" are the core's answers, audited as on every other path. A member the directory
does not know decides nothing.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from microsoft_agents.activity import Activity, AdaptiveCardInvokeResponse, AdaptiveCardInvokeValue
from microsoft_agents.activity.teams import TeamsChannelAccount
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from gate_core._errors import AuthenticationFailed, DecisionRefused, NotFound
from gate_core._models import Actor, AuthMethod, Gate, Principal, Verdict
from gate_core.identity import caller_from_teams_member
from gate_core.service._problems import problem
from gate_core.service._state import ServiceState
from gate_core.service._teams_auth import BotFrameworkTokens, TokenRefused
from gate_core.service.notify._bot_connector import BotConnector, BotConnectorError
from gate_core.service.notify._teams import CARD_CONTENT_TYPE
from gate_core.service.notify._teams_bot import TYPE_NAME, TeamsBotConfig
from gate_core.service.notify._teams_bot_card import (
    GATE_FIELD,
    REASON_INPUT,
    REASON_MAX,
    VERB_APPROVE,
    VERB_REFRESH,
    VERB_REJECT,
    bot_card,
)

log = logging.getLogger("gatehouse.teams")

INVOKE_NAME = "adaptiveCard/action"
TEAMS_CHANNEL = "msteams"
_GATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class _Refused(Exception):
    """A click that changes nothing; the message goes back to the person who clicked, only."""


class _BadAction(Exception):
    """An invoke whose action Gatehouse cannot read (answered with Teams' error response)."""


def _invoke_response(card: dict[str, Any]) -> dict[str, Any]:
    response = AdaptiveCardInvokeResponse(status_code=200, type=CARD_CONTENT_TYPE, value=card)
    return response.model_dump(by_alias=True, exclude_none=True, mode="json")


def _error_response(status: int, message: str) -> dict[str, Any]:
    value = {"code": "BadRequest" if status == 400 else "NotFound", "message": message}
    response = AdaptiveCardInvokeResponse(
        status_code=status, type="application/vnd.microsoft.error", value=value
    )
    return response.model_dump(by_alias=True, exclude_none=True, mode="json")


def _malformed(detail: str) -> Response:
    return problem(
        400, "Malformed activity", f"not a Bot Framework activity: {detail}", "teams_activity_malformed"
    )


def _tenant_of(activity: Activity) -> str | None:
    """The tenant Teams says the activity comes from (channelData.tenant.id, else the conversation's)."""
    data = activity.channel_data
    if isinstance(data, dict):
        tenant = data.get("tenant")
        if isinstance(tenant, dict) and isinstance(tenant.get("id"), str):
            return str(tenant["id"])
    return activity.conversation.tenant_id if activity.conversation is not None else None


class TeamsMembers:
    """Teams user id → the member as the Bot Connector describes them, cached for a few minutes:
    Teams waits only a few seconds for the invoke response."""

    def __init__(self, connector: BotConnector, *, ttl_s: float = 300.0, capacity: int = 10_000) -> None:
        self.connector = connector
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._cache: OrderedDict[tuple[str, str], tuple[TeamsChannelAccount, float]] = OrderedDict()
        self._lock = threading.Lock()

    def member(self, service_url: str, conversation_id: str, user_id: str) -> TeamsChannelAccount:
        key, now = (service_url, user_id), time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[1] > now:
                return cached[0]
        try:
            member = self.connector.member(service_url, conversation_id, user_id)
        except BotConnectorError as exc:
            log.warning("teams member lookup of %s failed: %s", user_id, exc)
            raise _Refused("Teams could not tell Gatehouse who you are; nothing was recorded.") from exc
        with self._lock:
            self._cache[key] = (member, now + self.ttl_s)
            self._cache.move_to_end(key)
            if len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return member


class TeamsInvokes:
    """Verifies, parses and acts on the bot's incoming activities."""

    def __init__(self, state: ServiceState, config: TeamsBotConfig) -> None:
        self.state = state
        self.config = config
        self.tokens = BotFrameworkTokens(app_id=config.app_id, metadata_url=config.openid_metadata_url)
        # short timeout: these calls happen while Teams waits for the invoke response
        self.members = TeamsMembers(config.connector(timeout_s=3.0))
        self.public_url = state.config.public_url

    async def handle(self, request: Request) -> Response:
        authorization = request.headers.get("authorization")
        if not authorization:  # refused before the body is even parsed
            return problem(
                401,
                "Bot Framework token refused",
                "an Authorization: Bearer token is required",
                "teams_token_invalid",
            )
        body = await request.body()
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _malformed("the body is not a JSON object")
        # The token is checked against the two fields it vouches for, read straight off the JSON:
        # nothing else of an unauthenticated body is looked at, not even by the SDK's models.
        service_url, channel_id = data.get("serviceUrl"), data.get("channelId")
        try:
            await run_in_threadpool(
                self.tokens.verify,
                authorization,
                service_url=service_url if isinstance(service_url, str) else None,
                channel_id=channel_id if isinstance(channel_id, str) else None,
            )
        except TokenRefused as refusal:
            log.warning("teams activity refused: %s", refusal)
            return problem(refusal.status, "Bot Framework token refused", str(refusal), "teams_token_invalid")
        try:
            activity = Activity.model_validate(data)
        except Exception as exc:  # ValidationError, and the SDK's own plain Exceptions for conflicts
            return _malformed(str(exc).splitlines()[0][:200])
        if activity.type != "invoke" or activity.name != INVOKE_NAME:
            # messages, installs, other invokes: acknowledged, not acted on — but logged with where
            # they come from, which is how an admin learns a channel's conversation id and service URL
            log.info(
                "teams %s activity in conversation %s (serviceUrl %s)",
                activity.type,
                activity.conversation.id if activity.conversation is not None else "?",
                activity.service_url,
            )
            return Response(status_code=200)
        answer = await run_in_threadpool(self.on_card_action, activity)
        return JSONResponse(answer)

    def on_card_action(self, activity: Activity) -> dict[str, Any]:
        """One Action.Execute (in a worker thread); returns the invoke response body."""
        try:
            value = AdaptiveCardInvokeValue.model_validate(activity.value)
            verb, data = value.action.verb, value.action.data
            gate_id = data.get(GATE_FIELD)
            if not isinstance(gate_id, str) or not _GATE_ID.match(gate_id):
                raise _BadAction("the action carries no gate id")
            if verb not in (VERB_APPROVE, VERB_REJECT, VERB_REFRESH):
                raise _BadAction(f"unknown verb {str(verb)[:40]!r}")
        except (ValidationError, _BadAction) as exc:
            reason = str(exc).splitlines()[0][:200]
            return _error_response(400, f"Gatehouse cannot read this card action: {reason}")
        try:
            gate = self.state.gatekeeper.get(gate_id)
        except NotFound:
            return _error_response(404, f"gate {gate_id} does not exist")
        user_id = activity.from_property.id if activity.from_property is not None else None
        try:
            self._check_origin(activity, gate)
            if verb == VERB_REFRESH:
                return _invoke_response(bot_card(gate, self.public_url))
            principal = self.principal_of(activity)
            if verb == VERB_APPROVE:
                decided = self.decide(gate_id, principal, Verdict.APPROVE, "")
            else:
                typed = data.get(REASON_INPUT)
                reason = typed.strip() if isinstance(typed, str) else ""
                if not reason:
                    raise _Refused("A reason is required: it goes into the audit trail and to the requester.")
                if len(reason) > REASON_MAX:
                    raise _Refused(f"Keep the reason under {REASON_MAX} characters.")
                decided = self.decide(gate_id, principal, Verdict.REJECT, reason)
        except _Refused as refusal:
            latest = self.state.gatekeeper.get(gate_id)
            return _invoke_response(bot_card(latest, self.public_url, notice=str(refusal), only_for=user_id))
        return _invoke_response(bot_card(decided, self.public_url))

    def _check_origin(self, activity: Activity, gate: Gate) -> None:
        """The click comes from this bot's tenant, on a card posted for this gate in this conversation."""
        if str(activity.channel_id) != TEAMS_CHANNEL:
            raise _Refused("Gatehouse takes decisions from Microsoft Teams only; nothing was recorded.")
        if _tenant_of(activity) != self.config.tenant_id:
            raise _Refused("This Teams tenant is not the one Gatehouse serves; nothing was recorded.")
        conversation = (activity.conversation.id if activity.conversation is not None else "").split(";")[0]
        posted_in = {
            self.config.conversations[ref.channel].conversation_id
            for ref in self.state.gatekeeper.notifications_for(gate.id)
            if ref.kind == TYPE_NAME and ref.channel in self.config.conversations
        }
        if conversation not in posted_in:
            raise _Refused(
                f"Gatehouse posted no card for gate {gate.id} in this conversation; nothing was recorded."
            )

    def principal_of(self, activity: Activity) -> Principal:
        sender = activity.from_property
        if sender is None or not sender.id or activity.conversation is None or not activity.service_url:
            raise _Refused("Teams did not say who clicked; nothing was recorded.")
        member = self.members.member(activity.service_url, activity.conversation.id, sender.id)
        if sender.aad_object_id and member.aad_object_id and sender.aad_object_id != member.aad_object_id:
            raise _Refused("Teams named two different people for this click; nothing was recorded.")
        try:
            return caller_from_teams_member(
                self.state.gatekeeper.directory, member.email, member.user_principal_name
            ).principal
        except AuthenticationFailed as exc:
            log.warning("teams member %s (%s): %s", sender.id, sender.aad_object_id, exc)
            raise _Refused(f"Gatehouse cannot tell who you are: {exc}; nothing was recorded.") from exc

    def decide(self, gate_id: str, principal: Principal, verdict: Verdict, comment: str) -> Gate:
        actor = Actor(principal_id=principal.id, via=AuthMethod.TEAMS, email=principal.email)
        try:
            gate = self.state.gatekeeper.decide(gate_id, actor=actor, verdict=verdict, comment=comment)
        except (DecisionRefused, NotFound) as refusal:
            raise _Refused(f"{refusal} (gate {gate_id}; nothing changed)") from refusal
        self.state.changed(gate)  # wakes waiters now; the card update for everyone goes to the hub
        return gate
