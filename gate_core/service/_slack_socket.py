"""Slack Socket Mode: the app's clicks without a public Request URL.

A service inside a private network cannot be called by Slack. In Socket Mode it calls out instead:
slack_sdk's built-in ``SocketModeClient`` (its own WebSocket, no further dependency) asks
``apps.connections.open`` (with the app-level token, ``xapp-…``) for a WebSocket URL, connects,
and receives the same interaction payloads the Request URL would get, each in an envelope it must
acknowledge within Slack's 3 seconds::

    Slack ──envelope {envelope_id, type: interactive, payload}──► SlackSocketMode._on_request
          ◄──ack {envelope_id, payload: answer}───────────────── SlackInteractions.dispatch(payload)

The payload goes to exactly the handler the HTTP endpoint uses (same identity rules, same audit);
only the proof differs: the connection is authenticated by the app token, so there is no request
signature to check. slack_sdk reconnects on drops and on Slack's ``disconnect`` messages; when
Slack cannot be reached at start-up, this module keeps trying in the background, so the API and
the other channels serve meanwhile.

Slack delivers an envelope to one of an app's open connections and retries it (to any of them)
when no ack arrives in time. A retry this process has already handled is acknowledged again
without acting twice; a retry reaching another replica meets the core's rules — one decision per
person, the first decision that completes a gate wins — so a click is never applied twice.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

from slack_sdk import WebClient
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from gate_core.service._slack import MalformedPayload, SlackInteractions, interaction_from

log = logging.getLogger("gatehouse.slack")

_REMEMBERED = 10_000  # envelope ids kept to recognise Slack's retries
_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # waits between attempts to connect at start-up


class SlackSocketMode:
    """One outbound Socket Mode connection for the Slack app, feeding ``interactions``."""

    def __init__(
        self, interactions: SlackInteractions, *, app_token: str, api_url: str, ping_interval_s: float = 5.0
    ) -> None:
        self.interactions = interactions
        self.client = SocketModeClient(
            app_token=app_token,
            web_client=WebClient(base_url=api_url, timeout=10),
            ping_interval=ping_interval_s,
        )
        self.client.socket_mode_request_listeners.append(self._on_request)
        self._stopped = threading.Event()
        self._connector: threading.Thread | None = None
        self._lock = threading.Lock()
        # envelope id → its answer (pending while being handled), to recognise Slack's retries
        self._answers: OrderedDict[str, Future[dict[str, Any] | None]] = OrderedDict()

    def start(self) -> None:
        """Connect in the background (never blocks or fails the service's start-up)."""
        self._connector = threading.Thread(target=self._connect, name="gatehouse-slack-socket", daemon=True)
        self._connector.start()

    def _connect(self) -> None:
        for attempt in range(1_000_000):
            if self._stopped.is_set():
                return
            try:
                self.client.connect()
                return  # from here on slack_sdk reconnects by itself
            except Exception as exc:  # Slack unreachable or the token refused: keep serving, retry
                wait = _RETRY_S[min(attempt, len(_RETRY_S) - 1)]
                log.error("slack socket mode: could not connect (retrying in %.0f s): %s", wait, exc)
                self.client.wss_uri = None  # ask apps.connections.open for a fresh URL next time
                self._stopped.wait(wait)

    def stop(self) -> None:
        self._stopped.set()
        if self._connector is not None:
            self._connector.join(timeout=15)
        self.client.close()

    def _on_request(self, client: BaseSocketModeClient, request: SocketModeRequest) -> None:
        answer: dict[str, Any] | None = None
        try:
            answer = self._answer(request)
        except Exception:  # one bad envelope must not stop the connection: ack it, log it
            log.exception("slack socket mode: envelope %s not handled", request.envelope_id)
        client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id, payload=answer))

    def _answer(self, request: SocketModeRequest) -> dict[str, Any] | None:
        with self._lock:
            seen = self._answers.get(request.envelope_id)
            if seen is None:
                mine: Future[dict[str, Any] | None] = Future()
                self._answers[request.envelope_id] = mine
                while len(self._answers) > _REMEMBERED:
                    self._answers.popitem(last=False)
        if seen is not None:  # Slack's retry of one we handle or handled: the same answer, acted on once
            return seen.result(timeout=30)
        try:
            mine.set_result(self._dispatch(request))
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        return mine.result()

    def _dispatch(self, request: SocketModeRequest) -> dict[str, Any] | None:
        if request.type != "interactive":
            return None  # events and slash commands are not ours
        try:
            interaction = interaction_from(request.payload)
        except MalformedPayload as exc:
            log.warning("slack socket mode: malformed payload in envelope %s: %s", request.envelope_id, exc)
            return None
        return self.interactions.dispatch(interaction) if interaction is not None else None
