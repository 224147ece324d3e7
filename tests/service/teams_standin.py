"""A local stand-in for Microsoft's side of a Teams bot, and invoke activities to drive Gatehouse with.

Nothing in the suite may reach Microsoft, yet what Gatehouse sends and checks must be the real
protocol. So one HTTP server plays every Microsoft endpoint a bot talks to, shaped as Microsoft
documents them, and records each call:

    POST /botframework.com/oauth2/v2.0/token      client credentials → {"token_type": "Bearer", …}
    GET  /v1/.well-known/openidconfiguration      Bot Framework OpenID metadata (issuer, jwks_uri, algs)
    GET  /v1/.well-known/keys                     JWKS; each RSA key with its "endorsements"
    POST {serviceUrl}v3/conversations/{id}/activities             send   → {"id": …}
    POST {serviceUrl}v3/conversations/{id}/activities/{activityId}  reply  → {"id": …}
    PUT  {serviceUrl}v3/conversations/{id}/activities/{activityId}  update → {"id": …}
    GET  {serviceUrl}v3/conversations/{id}/members/{userId}       TeamsChannelAccount, or 404

The conversations API accepts only the bearer tokens its token endpoint issued (401 otherwise).

``connector_token`` signs what the Bot Connector would put on a request to the bot (RS256 with the
JWKS key, iss https://api.botframework.com, aud the app id, serviceUrl), with any claim or key
overridden for the attacks; ``invoke`` builds an ``adaptiveCard/action`` invoke activity in the
shape of Microsoft's Universal Actions documentation. Both are written here from the documents,
not with Gatehouse's or the SDK's code, so the service's checks are tested independently.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://api.botframework.com"
SCOPE = "https://api.botframework.com/.default"
_T = TypeVar("_T")


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey
    endorsements: list[str] | None

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key().public_numbers()
        jwk: dict[str, Any] = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _b64(public.n),
            "e": _b64(public.e),
        }
        if self.endorsements is not None:
            jwk["endorsements"] = self.endorsements
        return jwk


def new_key(endorsements: list[str] | None = None) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = base64.urlsafe_b64encode(secrets.token_bytes(15)).decode()
    return SigningKey(kid, private, ["msteams", "skype", "webchat"] if endorsements is None else endorsements)


@dataclass(frozen=True)
class ConnectorCall:
    method: str
    path: str  # unquoted, without the service URL's prefix
    body: Mapping[str, Any]
    status: int
    answer: Mapping[str, Any]
    raw: bytes = b""  # the request body exactly as it arrived

    @property
    def card(self) -> dict[str, Any]:
        """The Adaptive Card of an activity sent or updated."""
        [attachment] = self.body["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        return dict(attachment["content"])

    @property
    def text(self) -> str:
        return json.dumps(self.body, ensure_ascii=False)


class BotConnectorStandIn:
    def __init__(
        self,
        *,
        app_id: str,
        app_password: str,
        tenant_id: str,
        members: Mapping[str, Mapping[str, Any]],
        conversation_id: str,
    ) -> None:
        self.app_id = app_id
        self.app_password = app_password
        self.tenant_id = tenant_id
        self.members = {k: dict(v) for k, v in members.items()}  # Teams user id → TeamsChannelAccount
        self.conversation_id = conversation_id
        self.keys = [new_key()]
        self.key_fetches = 0
        self.reachable = True  # False: the metadata and keys endpoints answer 503
        self._issued: set[str] = set()
        self._calls: list[ConnectorCall] = []
        self._activities: dict[tuple[str, str], dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> BotConnectorStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # ------------------------------------------------------------ addresses

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def service_url(self) -> str:
        """Like https://smba.trafficmanager.net/amer/ (Teams' service URLs end in a slash)."""
        return f"{self.base_url}/smba/amer/"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/botframework.com/oauth2/v2.0/token"

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/v1/.well-known/openidconfiguration"

    # ------------------------------------------------------------ tokens the Bot Connector signs

    def connector_token(
        self,
        *,
        key: SigningKey | None = None,
        kid: str | None = None,
        algorithm: str = "RS256",
        secret: bytes | None = None,
        **claims: Any,
    ) -> str:
        """A JWT as the Bot Connector sends it; keyword claims override (None removes one)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "serviceUrl": self.service_url,
            "nbf": now - 5,
            "exp": now + 3600,
            "iss": ISSUER,
            "aud": self.app_id,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        signing = key or self.keys[0]
        headers = {"kid": kid or signing.kid, "x5t": kid or signing.kid, "typ": "JWT"}
        return jwt.encode(
            body, secret if secret is not None else signing.private, algorithm=algorithm, headers=headers
        )

    def rotate(self) -> SigningKey:
        """Microsoft publishes a new key and signs with it; the old one is gone."""
        with self._changed:
            self.keys = [new_key()]
            return self.keys[0]

    # ------------------------------------------------------------ what was received

    def calls(self, method: str | None = None, path_part: str = "") -> list[ConnectorCall]:
        with self._changed:
            return [c for c in self._calls if (method is None or c.method == method) and path_part in c.path]

    def wait_for(
        self,
        method: str,
        where: Callable[[ConnectorCall], bool] = lambda _: True,
        timeout: float = 10.0,
    ) -> ConnectorCall:
        with self._changed:
            self._changed.wait_for(
                lambda: any(c.method == method and where(c) for c in self._calls), timeout=timeout
            )
            found = next((c for c in self._calls if c.method == method and where(c)), None)
        if found is None:
            seen = [(c.method, c.path) for c in self.calls()]
            raise AssertionError(f"no matching {method} within {timeout}s; calls: {seen}")
        return found

    def member_lookups(self) -> list[str]:
        return [c.path.rsplit("/", 1)[-1] for c in self.calls("GET", "/members/")]

    # ------------------------------------------------------------ the endpoints

    def _token(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE:
            return 400, {"error": "invalid_request"}
        if form.get("client_id") != self.app_id or form.get("client_secret") != self.app_password:
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret",
            }
        token = secrets.token_urlsafe(32)
        self._issued.add(token)
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        }

    def _metadata(self) -> tuple[int, dict[str, Any]]:
        if not self.reachable:
            return 503, {"error": "unavailable"}
        return 200, {
            "issuer": ISSUER,
            "authorization_endpoint": "https://invalid.botframework.com",
            "jwks_uri": f"{self.base_url}/v1/.well-known/keys",
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        }

    def _jwks(self) -> tuple[int, dict[str, Any]]:
        if not self.reachable:
            return 503, {"error": "unavailable"}
        self.key_fetches += 1
        return 200, {"keys": [k.jwk() for k in self.keys]}

    def _conversations(
        self, method: str, parts: list[str], body: Mapping[str, Any], authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme != "Bearer" or token not in self._issued:
            return 401, {"message": "Authorization has been denied for this request."}
        # parts: [conversationId, "activities"|"members", (activityId|userId)?]
        conversation = parts[0]
        if conversation.split(";")[0] != self.conversation_id:
            return 404, {"error": {"code": "ConversationNotFound", "message": "Conversation not found."}}
        if parts[1:2] == ["members"] and len(parts) == 3 and method == "GET":
            member = self.members.get(parts[2])
            if member is None:
                return 404, {"error": {"code": "MemberNotFoundInConversation", "message": "Member not found"}}
            return 200, member
        if parts[1:2] != ["activities"] or not body.get("type"):
            return 400, {"error": {"code": "BadArgument", "message": "Unknown request"}}
        if method == "POST" and len(parts) == 2:
            activity_id = f"1:{next(self._ids)}{uuid.uuid4().hex[:6]}"
            self._activities[(conversation, activity_id)] = dict(body)
            return 201, {"id": activity_id}
        if method == "POST" and len(parts) == 3:
            if (conversation, parts[2]) not in self._activities or body.get("replyToId") != parts[2]:
                return 404, {"error": {"code": "ActivityNotFoundInConversation", "message": "Not found"}}
            activity_id = f"1:{next(self._ids)}{uuid.uuid4().hex[:6]}"
            self._activities[(conversation, activity_id)] = dict(body)
            return 201, {"id": activity_id}
        if method == "PUT" and len(parts) == 3:
            if (conversation, parts[2]) not in self._activities:
                return 404, {"error": {"code": "ActivityNotFoundInConversation", "message": "Not found"}}
            self._activities[(conversation, parts[2])] = dict(body)
            return 200, {"id": parts[2]}
        return 405, {"error": {"code": "MethodNotAllowed", "message": method}}

    def answer(
        self, method: str, path: str, body: Mapping[str, Any], authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        if path == "/botframework.com/oauth2/v2.0/token" and method == "POST":
            return self._token(body)
        if path == "/v1/.well-known/openidconfiguration":
            return self._metadata()
        if path == "/v1/.well-known/keys":
            return self._jwks()
        if path.startswith("/smba/amer/v3/conversations/"):
            raw = path.removeprefix("/smba/amer/v3/conversations/").split("/")
            return self._conversations(method, [unquote(p) for p in raw], body, authorization)
        return 404, {"error": "not found"}

    def _record(
        self, method: str, path: str, body: Mapping[str, Any], authorization: str | None, raw: bytes = b""
    ) -> tuple[int, bytes]:
        with self._changed:
            status, answer = self.answer(method, path, body, authorization)
            self._calls.append(ConnectorCall(method, unquote(path), body, status, answer, raw))
            self._changed.notify_all()
        return status, json.dumps(answer).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                content_type = self.headers.get("Content-Type") or ""
                body: dict[str, Any] = {}
                if raw and "json" in content_type:
                    body = json.loads(raw)
                elif raw:
                    body = dict(parse_qsl(raw.decode("utf-8")))
                path = urlsplit(self.path).path
                status, data = standin._record(method, path, body, self.headers.get("Authorization"), raw)
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

        return Handler


# ---------------------------------------------------------------- what Teams sends the bot


def member(
    user_id: str, name: str, email: str | None, upn: str | None, aad: str, tenant: str
) -> dict[str, Any]:
    """A TeamsChannelAccount as GET …/members/{userId} answers it."""
    given, _, surname = name.partition(" ")
    found: dict[str, Any] = {
        "id": user_id,
        "name": name,
        "aadObjectId": aad,
        "givenName": given,
        "surname": surname or None,
        "tenantId": tenant,
        "userRole": "user",
    }
    if email is not None:
        found["email"] = email
    if upn is not None:
        found["userPrincipalName"] = upn
    return found


def invoke(
    *,
    service_url: str,
    conversation_id: str,
    reply_to_id: str,
    user_id: str,
    aad_object_id: str,
    tenant_id: str,
    app_id: str,
    verb: str,
    data: Mapping[str, Any],
    channel_id: str = "msteams",
) -> dict[str, Any]:
    """An Action.Execute click as Teams delivers it to the bot's messaging endpoint."""
    now = datetime.now(UTC)
    channel = conversation_id.split(";")[0]
    return {
        "name": "adaptiveCard/action",
        "type": "invoke",
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "localTimestamp": now.isoformat(),
        "id": f"f:{uuid.uuid4().hex}",
        "channelId": channel_id,
        "serviceUrl": service_url,
        "from": {"id": user_id, "name": user_id, "aadObjectId": aad_object_id},
        "conversation": {
            "isGroup": True,
            "conversationType": "channel",
            "tenantId": tenant_id,
            "id": f"{channel};messageid={reply_to_id.removeprefix('1:')}",
        },
        "recipient": {"id": f"28:{app_id}", "name": "Gatehouse"},
        "entities": [
            {
                "locale": "en-US",
                "country": "US",
                "platform": "Web",
                "timezone": "Europe/Berlin",
                "type": "clientInfo",
            }
        ],
        "channelData": {
            "channel": {"id": channel},
            "team": {"id": channel},
            "tenant": {"id": tenant_id},
            "source": {"name": "message"},
            "legacy": {"replyToId": reply_to_id},
        },
        "replyToId": reply_to_id,
        "value": {
            "action": {"type": "Action.Execute", "id": f"action-{verb}", "verb": verb, "data": dict(data)},
            "trigger": "manual",
        },
        "locale": "en-US",
    }
