"""The Teams bot notifier: approval cards people decide on in Teams, with one click.

    notifiers:
      teamsbot:
        type: teams-bot
        app_id: 00000000-…            # the bot's Microsoft App ID (Entra app registration)
        app_password: …               # its client secret (GATEHOUSE_TEAMS_APP_PASSWORD)
        tenant_id: …                  # clicks from any other tenant decide nothing
        conversations:                # target teamsbot:governance
          governance:
            service_url: https://smba.trafficmanager.net/emea/
            conversation_id: "19:…@thread.tacv2"

    gate opened  ─► hub ─► post_request  ─► POST …/v3/conversations/{id}/activities   (card) ─► ref stored
    gate changed ─► hub ─► post_outcome  ─► PUT  …/activities/{activityId}  (everyone sees the outcome)
    reminder due ─► hub ─► post_reminder ─► POST …/activities/{activityId}  (a reply in the card's thread)
    finding      ─► hub ─► post_alert    ─► POST …/activities/{activityId}  (an alert card in the card's
                                            thread; POST …/activities when the gate has no card there)

The clicks come back as invoke activities to ``/v1/teams/messages`` (``gate_core.service._teams``),
verified against the Bot Framework's signing keys. The webhook-only ``teams`` type stays for teams
that want cards without a bot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from gate_core._errors import ConfigError
from gate_core._gatekeeper import Gatekeeper
from gate_core._models import Gate
from gate_core._notify_target import NotifyTarget
from gate_core._ports import NotificationRef
from gate_core.service.notify._port import NotifierContext, NotifierType
from gate_core.service.notify._teams import OUT_OF_SCOPE, alert_card, clip, plain, when
from gate_core.service.notify._teams_bot_card import CARD_VERSION, bot_card, card_attachment
from gate_core.service.notify._webhook import is_http_url

if TYPE_CHECKING:  # the SDK is the `teams` extra: imported only where a bot is configured
    from microsoft_agents.activity import Activity

    from gate_core.service.notify._bot_connector import BotConnector

log = logging.getLogger("gatehouse.notify.teams")

TYPE_NAME = "teams-bot"
BOT_FRAMEWORK_TOKEN_URL = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
BOT_FRAMEWORK_OPENID = "https://login.botframework.com/v1/.well-known/openidconfiguration"


def _url(text: str) -> str:
    if not is_http_url(text):
        raise ValueError("not an http(s) URL")
    return text


Url = Annotated[str, AfterValidator(_url)]


class TeamsConversation(BaseModel):
    """Where cards for one target go: the conversation and the Bot Connector region serving it
    (both are in the activities Teams sends the bot, e.g. when it is added to a channel)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service_url: Url
    conversation_id: str = Field(min_length=1, max_length=400)


class TeamsBotConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    app_id: str = Field(min_length=1, max_length=100)
    app_password: SecretStr
    tenant_id: str = Field(min_length=1, max_length=100)
    conversations: dict[str, TeamsConversation]
    token_url: Url = BOT_FRAMEWORK_TOKEN_URL
    token_scope: str = BOT_FRAMEWORK_SCOPE
    openid_metadata_url: Url = BOT_FRAMEWORK_OPENID

    @model_validator(mode="after")
    def _sdk_installed(self) -> TeamsBotConfig:
        """Refused when the configuration loads, not at the first gate."""
        try:
            import microsoft_agents.activity  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "notifier type teams-bot needs the Microsoft 365 Agents SDK's activity models: "
                "pip install 'gatehouse-approvals[teams]'"
            ) from exc
        return self

    def connector(self, timeout_s: float = 10.0) -> BotConnector:
        from gate_core.service.notify._bot_connector import BotConnector

        return BotConnector(
            app_id=self.app_id,
            app_password=self.app_password,
            token_url=self.token_url,
            token_scope=self.token_scope,
            timeout_s=timeout_s,
        )


def card_message(card: dict[str, object], summary: str) -> Activity:
    from microsoft_agents.activity import Activity, Attachment

    return Activity(
        type="message",
        summary=summary,
        attachments=[Attachment.model_validate(card_attachment(card))],
    )


def summary(gate: Gate) -> str:
    """The notification text (toast, activity feed) beside the card."""
    req = gate.request
    return f"{gate.status.value}: {req.requester} asks to {req.action} {req.target}".strip()[:250]


def alert_summary(gate: Gate, details: Mapping[str, Any]) -> str:
    """The notification text beside an alert card (toast, activity feed)."""
    said = f"{details.get('operation', '?')} of {details.get('dataset', '?')}"
    more = int(details.get("more_findings") or 0)
    head = f"Out of scope on gate {gate.id}" + (f" ({more + 1:,} findings)" if more else "")
    return clip(" ".join(f"{head}: {said}".split()), 250)


def reminder_text(gate: Gate) -> str:
    missing = gate.approvals_missing()
    return plain(
        f"Reminder: gate {gate.id} still needs {missing} approval{'s' if missing != 1 else ''} "
        f"({len(gate.approvals)} of {gate.required_approvals} so far); it expires at {when(gate.expires_at)}."
    )


class TeamsBotNotifier:
    """Posts, updates and threads reminders under approval cards (the hub's Notifier port)."""

    kind = TYPE_NAME

    def __init__(
        self, config: TeamsBotConfig, *, public_url: str, gatekeeper: Gatekeeper, instance: str
    ) -> None:
        self.config = config
        self.connector = config.connector()
        self.public_url = public_url.rstrip("/")
        self.instance = instance
        self._gatekeeper = gatekeeper
        # Updates from two replicas (or a retry) may overlap: each re-reads the gate under the
        # card's lock, so the last update always shows the latest state.
        self._card_locks = tuple(threading.Lock() for _ in range(32))

    def _conversation(self, name: str, gate: Gate) -> TeamsConversation | None:
        conversation = self.config.conversations.get(name)
        if conversation is None:
            # Retrying cannot help a name that is not configured: say so once and move on.
            log.error(
                "gate %s: no Teams conversation named %r in notifiers.%s.conversations",
                gate.id,
                name,
                self.instance,
            )
        return conversation

    def post_request(self, gate: Gate, target: NotifyTarget) -> NotificationRef | None:
        conversation = self._conversation(target.address, gate)
        if conversation is None:
            return None
        activity = card_message(bot_card(gate, self.public_url), summary(gate))
        activity_id = self.connector.send(conversation.service_url, conversation.conversation_id, activity)
        return NotificationRef(
            gate_id=gate.id,
            target=str(target),
            channel=target.address,  # the configured name: service URL and conversation id come from it
            message_ref=activity_id,
            kind=self.kind,
            sent_at=datetime.now(UTC),
        )

    def post_outcome(self, gate: Gate, ref: NotificationRef) -> None:
        conversation = self._conversation(ref.channel, gate)
        if conversation is None:
            return
        with self._card_locks[hash((ref.channel, ref.message_ref)) % len(self._card_locks)]:
            latest = self._gatekeeper.get(gate.id)
            activity = card_message(bot_card(latest, self.public_url), summary(latest))
            self.connector.update(
                conversation.service_url, conversation.conversation_id, ref.message_ref, activity
            )

    def post_reminder(self, gate: Gate, target: NotifyTarget) -> None:
        if not gate.status.is_open:
            return
        conversation = self._conversation(target.address, gate)
        if conversation is None:
            return
        from microsoft_agents.activity import Activity

        text = Activity(type="message", text=reminder_text(gate), text_format="markdown")
        card = next((r for r in self._gatekeeper.notifications_for(gate.id) if r.target == str(target)), None)
        if card is not None:
            self.connector.reply(
                conversation.service_url, conversation.conversation_id, card.message_ref, text
            )
        else:  # the card never made it: remind in the open rather than not at all
            self.connector.send(conversation.service_url, conversation.conversation_id, text)

    def post_alert(self, gate: Gate, target: NotifyTarget, event: str, details: Mapping[str, Any]) -> None:
        """An after-the-fact finding (``lineage.out_of_scope``), proactively: an alert card in the
        thread of the gate's card in the target's conversation, else a new message there. Raising
        (the Bot Connector refused or was unreachable) has the hub retry, then count it failed."""
        if event != OUT_OF_SCOPE:
            log.warning("gate %s: Teams alerts carry %s only, not %r", gate.id, OUT_OF_SCOPE, event)
            return
        conversation = self._conversation(target.address, gate)
        if conversation is None:
            return
        card = dict(alert_card(gate, details, self.public_url))
        card["version"] = CARD_VERSION
        activity = card_message(card, alert_summary(gate, details))
        posted = next(
            (r for r in self._gatekeeper.notifications_for(gate.id) if r.target == str(target)), None
        )
        if posted is not None:
            self.connector.reply(
                conversation.service_url, conversation.conversation_id, posted.message_ref, activity
            )
        else:  # no card of the gate there (a gate closed by an allow rule, or the card failed)
            self.connector.send(conversation.service_url, conversation.conversation_id, activity)


def _create(config: TeamsBotConfig, context: NotifierContext) -> TeamsBotNotifier:
    return TeamsBotNotifier(
        config, public_url=context.public_url, gatekeeper=context.gatekeeper, instance=context.name
    )


TEAMS_BOT = NotifierType(TYPE_NAME, TeamsBotConfig, _create)
