"""The Slack notifier: approval cards posted, updated and reminded through the Web API.

    gate opened  ─► hub ─► SlackNotifier.post_request  ─► chat.postMessage (Block Kit card) ─► ref stored
    gate changed ─► hub ─► SlackNotifier.post_outcome  ─► chat.update (outcome; buttons gone once closed)
    reminder due ─► hub ─► SlackNotifier.post_reminder ─► reply in the card's thread

    notifiers:
      slack: {type: slack, bot_token: xoxb-…, signing_secret: …}

    targets: slack:#name, slack:C0123 (a channel), slack:@U0123 (a direct message)

The clicks on a card's buttons come back to ``gate_core.service._slack``: at the signed
interactivity endpoint (verified with the instance's ``signing_secret``), or over Socket Mode
(``app_token``; ``gate_core.service._slack_socket``), into the same handler either way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator
from slack_sdk import WebClient

from gate_core._gatekeeper import Gatekeeper
from gate_core._models import Gate, Principal
from gate_core._notify_target import NotifyTarget
from gate_core._ports import NotificationRef
from gate_core.service._slack_card import (
    alert_text,
    card_blocks,
    fallback_text,
    reminder_text,
    slack_channel,
)
from gate_core.service.notify._port import NotifierContext, NotifierType

log = logging.getLogger("gatehouse.slack")


class SlackConfig(BaseModel):
    """One Slack app. Its clicks arrive either at the Request URL, signed with ``signing_secret``,
    or — for a service no one can reach from the internet — over Socket Mode, which the service
    opens itself with the app-level token ``app_token`` (``xapp-…``, scope ``connections:write``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bot_token: SecretStr
    signing_secret: SecretStr | None = None
    app_token: SecretStr | None = None
    api_url: str = "https://slack.com/api/"

    @model_validator(mode="after")
    def _a_way_for_clicks(self) -> SlackConfig:
        if self.signing_secret is None and self.app_token is None:
            raise ValueError(
                "set signing_secret (clicks at the Request URL) or app_token (Socket Mode), or both"
            )
        if self.app_token is not None and not self.app_token.get_secret_value().startswith("xapp-"):
            raise ValueError("app_token must be the app-level token (xapp-…), not a bot or user token")
        return self


class SlackNotifier:
    """Posts, updates and threads reminders under approval cards (the hub's Notifier port)."""

    kind = "slack"

    def __init__(
        self, config: SlackConfig, public_url: str, gatekeeper: Gatekeeper, *, client: WebClient | None = None
    ) -> None:
        self.client = client or WebClient(
            token=config.bot_token.get_secret_value(), base_url=config.api_url, timeout=10
        )
        self.public_url = public_url.rstrip("/")
        # display names, the latest gate and stored card references (updates, threaded reminders)
        self._gatekeeper = gatekeeper
        # Updates from two replicas (or a retry) may overlap: each re-reads the gate under the
        # card's lock, so the last update always shows the latest state.
        self._card_locks = tuple(threading.Lock() for _ in range(32))

    def console_url(self, gate: Gate) -> str:
        return f"{self.public_url}/console/gates/{gate.id}"

    def _requester(self, gate: Gate) -> Principal | None:
        return self._gatekeeper.directory.find(gate.request.requester)

    def _post_card(self, channel: str, gate: Gate) -> tuple[str, str]:
        response = self.client.chat_postMessage(
            channel=channel,
            text=fallback_text(gate),
            blocks=card_blocks(gate, console_url=self.console_url(gate), requester=self._requester(gate)),
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(response["channel"]), str(response["ts"])

    def post_request(self, gate: Gate, target: NotifyTarget) -> NotificationRef | None:
        channel = slack_channel(target)
        if channel is None:
            log.warning("gate %s: %r is not a Slack channel (#name, C0123) or user (@U0123)", gate.id, target)
            return None
        channel_id, ts = self._post_card(channel, gate)
        return NotificationRef(
            gate_id=gate.id,
            target=str(target),
            channel=channel_id,  # chat.update needs the id Slack answered with, never "#name"
            message_ref=ts,
            kind=self.kind,
            sent_at=datetime.now(UTC),
        )

    def post_outcome(self, gate: Gate, ref: NotificationRef) -> None:
        with self._card_locks[hash((ref.channel, ref.message_ref)) % len(self._card_locks)]:
            latest = self._gatekeeper.get(gate.id)
            self.client.chat_update(
                channel=ref.channel,
                ts=ref.message_ref,
                text=fallback_text(latest),
                blocks=card_blocks(
                    latest, console_url=self.console_url(latest), requester=self._requester(latest)
                ),
            )

    def post_reminder(self, gate: Gate, target: NotifyTarget) -> None:
        if not gate.status.is_open:
            return
        refs = self._gatekeeper.notifications_for(gate.id)
        card = next((r for r in refs if r.target == str(target)), None)
        if card is not None:
            self.client.chat_postMessage(
                channel=card.channel, thread_ts=card.message_ref, text=reminder_text(gate)
            )
            return
        channel = slack_channel(target)  # the card never made it: remind in the open rather than not at all
        if channel is not None:
            self.client.chat_postMessage(channel=channel, text=reminder_text(gate))

    def post_alert(self, gate: Gate, target: NotifyTarget, event: str, details: Mapping[str, Any]) -> None:
        """An after-the-fact finding (``lineage.out_of_scope``), threaded under the gate's card when
        there is one, else in the target channel. Names and kinds only: never contents."""
        text = alert_text(gate, details, self.console_url(gate))
        refs = self._gatekeeper.notifications_for(gate.id)
        card = next((r for r in refs if r.target == str(target)), None)
        channel = card.channel if card is not None else slack_channel(target)
        if channel is None:
            return
        self.client.chat_postMessage(
            channel=channel,
            thread_ts=card.message_ref if card is not None else None,
            text=text,
            # a pipeline names the datasets: Slack must not fetch or preview what they point to
            unfurl_links=False,
            unfurl_media=False,
        )


def _create(config: SlackConfig, context: NotifierContext) -> SlackNotifier:
    return SlackNotifier(config, context.public_url, context.gatekeeper)


SLACK = NotifierType("slack", SlackConfig, _create)
