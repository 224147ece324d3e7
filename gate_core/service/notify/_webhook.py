"""Signed outbound webhooks: gate events as JSON for SIEMs, ticketing and your own automation.

    notifiers: {webhook: {type: webhook, endpoints: {siem: {url: https://…, secret: …}}}}

    notify target webhook:siem ──► POST endpoints["siem"].url
        X-Gatehouse-Event:     gate.opened | gate.decided | gate.reminder
        X-Gatehouse-Delivery:  dlv_…   the same for every retry of one delivery: deduplicate on it
        X-Gatehouse-Timestamp: 1763734185                        (unix seconds)
        X-Gatehouse-Signature: v1=hex(HMAC-SHA256(secret, f"{timestamp}.{raw body}"))
        {"event": …, "delivery": …, "gate": <Gate JSON>, "console_url": …}

``gate.decided`` is sent on every change after the gate opened — a recorded decision (the gate
stays PENDING while a quorum is incomplete), approval, rejection, expiry, cancellation — so read
``gate.status``. Parameters whose names look like credentials are ``[redacted]`` as in the audit
trail: a webhook leaves the trust boundary.

Receivers check a delivery with :func:`verify_webhook_signature` (signature over the timestamp
and the exact bytes received, five-minute window against replays, constant-time compare).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypedDict

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr, field_validator

from gate_core._audit import redact_parameters
from gate_core._models import Gate
from gate_core._notify_target import NotifyTarget
from gate_core._ports import NotificationRef
from gate_core.service.notify._port import NotifierContext, NotifierType

log = logging.getLogger("gatehouse.notify.webhook")

EVENT_HEADER = "X-Gatehouse-Event"
DELIVERY_HEADER = "X-Gatehouse-Delivery"
TIMESTAMP_HEADER = "X-Gatehouse-Timestamp"
SIGNATURE_HEADER = "X-Gatehouse-Signature"
SIGNATURE_VERSION = "v1"

WebhookEvent = Literal["gate.opened", "gate.decided", "gate.reminder", "lineage.out_of_scope"]


class WebhookPayload(TypedDict, total=False):
    event: WebhookEvent
    delivery: str
    gate: dict[str, Any]
    console_url: str
    alert: dict[str, Any]  # only on alerts (lineage.out_of_scope): what was found, never contents


# ---------------------------------------------------------------- configuration


def is_http_url(text: str) -> bool:
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL:
        return False
    return parsed.scheme in ("https", "http") and bool(parsed.host)


def _http_url(text: str) -> str:
    """Refused at start-up rather than at the first gate; the error never repeats the URL (it
    may hold a token)."""
    if not is_http_url(text):
        raise ValueError("not an http(s) URL")
    return text


class WebhookTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: Annotated[str, AfterValidator(_http_url)]
    secret: SecretStr

    @field_validator("secret")
    @classmethod
    def _signable(cls, secret: SecretStr) -> SecretStr:
        if not secret.get_secret_value():
            raise ValueError("must not be empty (deliveries are signed)")
        return secret


class WebhookConfig(BaseModel):
    """One instance, any number of receivers: the target's address names the receiver."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoints: dict[str, WebhookTarget]


# ---------------------------------------------------------------- signing and verifying


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 over ``timestamp.body``: the timestamp is signed, so it cannot be
    moved forward to replay an old delivery."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify_webhook_signature(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance_s: int = 300,
    now: float | None = None,
) -> bool:
    """True only if ``headers`` carry a valid Gatehouse signature of ``body`` made within
    ``tolerance_s`` seconds of ``now`` (either side, for clock skew).

    Pass the raw request body exactly as received (not re-serialised JSON). Header names match
    case-insensitively. Missing, malformed or stale headers and a wrong secret all return False;
    this never raises on what a sender controls."""
    lowered = {name.lower(): value for name, value in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "").strip()
    given = lowered.get(SIGNATURE_HEADER.lower(), "").strip()
    # isdigit() alone accepts non-ASCII digits; isascii() keeps the timestamp a plain integer.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or not given.isascii():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), given)


def delivery_id(name: str, event: WebhookEvent, gate: Gate) -> str:
    """Deterministic, so a retried delivery (by the hub, or by another replica) keeps its id and
    receivers can deduplicate; every change of the gate gets a new one."""
    state = f"{name}\n{event}\n{gate.id}\n{gate.status.value}\n{len(gate.decisions)}"
    return "dlv_" + hashlib.sha256(state.encode("utf-8")).hexdigest()[:32]


# ---------------------------------------------------------------- the notifier


def gate_json(gate: Gate) -> dict[str, Any]:
    data = gate.model_dump(mode="json")
    data["request"]["parameters"] = redact_parameters(gate.request.parameters)
    return data


class WebhookDeliveryFailed(RuntimeError):
    """A receiver did not accept a delivery. Names the target, never the URL (it may hold a token)."""


class WebhookNotifier:
    """Notifier for ``INSTANCE:NAME`` targets, each NAME a URL and a shared signing secret."""

    kind = "webhook"

    def __init__(
        self,
        targets: Mapping[str, WebhookTarget],
        *,
        public_url: str,
        instance: str = "webhook",
        timeout_s: float = 10.0,
    ) -> None:
        self.targets = dict(targets)
        self.instance = instance  # errors name the target as the policy wrote it, never the URL
        self.public_url = public_url.rstrip("/")
        self.timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))

    def post_request(self, gate: Gate, target: NotifyTarget) -> NotificationRef | None:
        name = target.address
        delivery = self._send(name, "gate.opened", gate)
        if delivery is None:
            return None
        # Stored so that the hub sends this gate's later changes to the same receiver.
        return NotificationRef(
            gate_id=gate.id,
            target=str(target),
            channel=name,
            message_ref=delivery,
            kind=self.kind,
            sent_at=datetime.now(UTC),
        )

    def post_outcome(self, gate: Gate, ref: NotificationRef) -> None:
        self._send(ref.channel, "gate.decided", gate)

    def post_reminder(self, gate: Gate, target: NotifyTarget) -> None:
        self._send(target.address, "gate.reminder", gate)

    def post_alert(self, gate: Gate, target: NotifyTarget, event: str, details: Mapping[str, Any]) -> None:
        """An after-the-fact finding about the gate (``lineage.out_of_scope``): ``details`` in ``alert``."""
        if event != "lineage.out_of_scope":
            log.warning("gate %s: webhook alerts carry lineage.out_of_scope only, not %r", gate.id, event)
            return
        self._send(target.address, "lineage.out_of_scope", gate, dict(details))

    def payload(self, name: str, event: WebhookEvent, gate: Gate) -> WebhookPayload:
        return {
            "event": event,
            "delivery": delivery_id(name, event, gate),
            "gate": gate_json(gate),
            "console_url": f"{self.public_url}/console/gates/{gate.id}",
        }

    def _send(
        self, name: str, event: WebhookEvent, gate: Gate, alert: dict[str, Any] | None = None
    ) -> str | None:
        """Sign and POST one event; returns its delivery id, raises when it was not accepted."""
        target = self.targets.get(name)
        if target is None:
            # Retrying cannot help a name that is not configured: say so once and move on.
            log.error("gate %s: no webhook named %r in notifiers.%s.endpoints", gate.id, name, self.instance)
            return None
        payload = self.payload(name, event, gate)
        if alert is not None:
            payload["alert"] = alert
            # one delivery id per finding (retries keep it), not per gate state
            payload["delivery"] = (
                "dlv_"
                + hashlib.sha256(f"{payload['delivery']}\n{alert.get('id', '')}".encode()).hexdigest()[:32]
            )
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Gatehouse-Webhook/1",
            EVENT_HEADER: event,
            DELIVERY_HEADER: payload["delivery"],
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(target.secret.get_secret_value(), timestamp, body),
        }
        try:
            response = httpx.post(target.url, content=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise WebhookDeliveryFailed(f"{self.instance}:{name}: {type(exc).__name__}: {exc}") from None
        if not response.is_success:
            raise WebhookDeliveryFailed(f"{self.instance}:{name}: HTTP {response.status_code} for {event}")
        return payload["delivery"]


def _create(config: WebhookConfig, context: NotifierContext) -> WebhookNotifier:
    return WebhookNotifier(config.endpoints, public_url=context.public_url, instance=context.name)


WEBHOOK = NotifierType("webhook", WebhookConfig, _create)
