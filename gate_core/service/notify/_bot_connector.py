"""The Bot Connector REST API, as the Teams bot uses it, with the bot's client-credentials token.

    token      POST {token_url}  grant_type=client_credentials, client_id, client_secret, scope
               → {"token_type": "Bearer", "expires_in": 3599, "access_token": "…"}   (cached)
    send       POST {serviceUrl}/v3/conversations/{conversationId}/activities          → {"id": …}
    reply      POST {serviceUrl}/v3/conversations/{conversationId}/activities/{activityId}
    update     PUT  {serviceUrl}/v3/conversations/{conversationId}/activities/{activityId}
    member     GET  {serviceUrl}/v3/conversations/{conversationId}/members/{userId}
               → TeamsChannelAccount (id, name, aadObjectId, email, userPrincipalName, tenantId, …)

Activities and accounts are the Microsoft 365 Agents SDK's models (``microsoft-agents-activity``),
serialised with their own camelCase aliases. The HTTP is plain httpx: every call here is made from
a worker thread (the notification hub's pool, or the invoke handler's), where the SDK's aiohttp
client would need an event loop of its own per call.

Errors name the conversation and the HTTP status, never the client secret or the bearer token.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import quote

import httpx
from microsoft_agents.activity import Activity, ResourceResponse
from microsoft_agents.activity.teams import TeamsChannelAccount
from pydantic import SecretStr, ValidationError

_EARLY_RENEWAL_S = 300  # renew a token this long before it expires: a call never carries a stale one


class BotConnectorError(RuntimeError):
    """The Bot Connector (or the token endpoint) refused or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _path_segment(value: str) -> str:
    """Conversation and activity ids keep ':', '@', ';' and '=' (Teams ids are full of them)."""
    return quote(value, safe=":@;=")


class BotConnector:
    """One bot's calls to the Bot Connector; thread-safe, one cached token."""

    def __init__(
        self,
        *,
        app_id: str,
        app_password: SecretStr,
        token_url: str,
        token_scope: str,
        timeout_s: float = 10.0,
    ) -> None:
        self.app_id = app_id
        self._password = app_password
        self.token_url = token_url
        self.token_scope = token_scope
        self.timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry)

    # ------------------------------------------------------------ the bot's own token

    def token(self) -> str:
        with self._lock:
            if self._token is not None and self._token[1] > time.monotonic():
                return self._token[0]
            token, expires_in = self._fetch_token()
            self._token = (token, time.monotonic() + max(0.0, expires_in - _EARLY_RENEWAL_S))
            return token

    def _fetch_token(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.app_id,
            "client_secret": self._password.get_secret_value(),
            "scope": self.token_scope,
        }
        try:
            response = httpx.post(self.token_url, data=form, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise BotConnectorError(f"token endpoint unreachable: {type(exc).__name__}") from None
        if not response.is_success:
            raise BotConnectorError(
                f"token endpoint refused the bot's credentials: HTTP {response.status_code}",
                status=response.status_code,
            )
        try:
            body = response.json()
            token, expires_in = body["access_token"], float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise BotConnectorError("token endpoint answered without an access_token") from None
        if not isinstance(token, str) or not token:
            raise BotConnectorError("token endpoint answered without an access_token")
        return token, expires_in

    def _forget_token(self) -> None:
        with self._lock:
            self._token = None

    # ------------------------------------------------------------ the conversations API

    def _call(self, method: str, url: str, what: str, body: Activity | None = None) -> httpx.Response:
        content = None if body is None else body.model_dump(by_alias=True, exclude_none=True, mode="json")
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.token()}"}
            try:
                response = httpx.request(method, url, json=content, headers=headers, timeout=self.timeout)
            except httpx.HTTPError as exc:
                raise BotConnectorError(f"{what}: {type(exc).__name__}: {exc}") from None
            if response.status_code == 401 and attempt == 1:
                self._forget_token()  # revoked or rotated early: one fresh token, one more try
                continue
            if not response.is_success:
                raise BotConnectorError(
                    f"{what}: HTTP {response.status_code}: {response.text[:200]}", status=response.status_code
                )
            return response
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    @staticmethod
    def _conversation(service_url: str, conversation_id: str) -> str:
        return f"{service_url.rstrip('/')}/v3/conversations/{_path_segment(conversation_id)}"

    def _activity_id(self, response: httpx.Response, what: str) -> str:
        try:
            answer = ResourceResponse.model_validate_json(response.content or b"{}")
        except ValidationError:
            raise BotConnectorError(f"{what}: the answer is not a ResourceResponse") from None
        if not answer.id:
            raise BotConnectorError(f"{what}: the answer carries no activity id")
        return answer.id

    def send(self, service_url: str, conversation_id: str, activity: Activity) -> str:
        """Post a new activity into the conversation; returns its id."""
        what = f"send to conversation {conversation_id}"
        url = f"{self._conversation(service_url, conversation_id)}/activities"
        return self._activity_id(self._call("POST", url, what, activity), what)

    def reply(self, service_url: str, conversation_id: str, activity_id: str, activity: Activity) -> str:
        """Post ``activity`` as a reply to ``activity_id`` (its thread in a channel)."""
        what = f"reply to {activity_id} in conversation {conversation_id}"
        activity = activity.model_copy(update={"reply_to_id": activity_id})
        url = f"{self._conversation(service_url, conversation_id)}/activities/{_path_segment(activity_id)}"
        return self._activity_id(self._call("POST", url, what, activity), what)

    def update(self, service_url: str, conversation_id: str, activity_id: str, activity: Activity) -> None:
        """Replace a posted activity (everyone in the conversation sees the new card)."""
        what = f"update {activity_id} in conversation {conversation_id}"
        activity = activity.model_copy(update={"id": activity_id})
        url = f"{self._conversation(service_url, conversation_id)}/activities/{_path_segment(activity_id)}"
        self._call("PUT", url, what, activity)

    def member(self, service_url: str, conversation_id: str, user_id: str) -> TeamsChannelAccount:
        """One member of the conversation, as the tenant's directory describes them."""
        what = f"member lookup in conversation {conversation_id}"
        url = f"{self._conversation(service_url, conversation_id)}/members/{_path_segment(user_id)}"
        response = self._call("GET", url, what)
        try:
            return TeamsChannelAccount.model_validate_json(response.content)
        except ValidationError:
            raise BotConnectorError(f"{what}: the answer is not a TeamsChannelAccount") from None
