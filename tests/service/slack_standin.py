"""A local stand-in for the Slack Web API, and signed interaction requests to drive Gatehouse with.

Nothing in the suite may reach slack.com, yet the Slack code under test must be the real thing:
slack_sdk's ``WebClient`` (pointed here by ``SlackConfig.api_url``) and ``WebhookClient`` (pointed
here by the payload's ``response_url``). So this server answers the Web API methods Gatehouse uses
the way Slack does, and records every call:

    with SlackStandIn(token="xoxb-test", users={"U0BOB": "bob@example.com"}) as slack:
        slack.api_url                                   # SlackConfig(api_url=...)
        slack.response_url()                            # goes into a block_actions payload
        slack.wait_for("chat.update", lambda c: "APPROVED" in c.text)
        slack.ephemerals                                # what response_url received

    chat.postMessage   channel "#name", "C…" or a user "U…" (→ the bot's DM "D…"); thread_ts for replies
    chat.update        only the channel *id* and ts of a message posted before (as Slack insists)
    users.info         profile e-mail from ``users``; unknown ids answer user_not_found
    views.open         needs a trigger_id; records the view
    apps.connections.open   with a SocketModeStandIn: a ws:// URL for the app-level token

Every method checks ``Authorization: Bearer <token>`` (``not_authed`` / ``invalid_auth``), and,
like Slack, reports errors as HTTP 200 with ``{"ok": false, "error": …}``.

``signed_interaction`` builds the form body and headers Slack sends to an interactivity URL:
``X-Slack-Signature: v0=HMAC-SHA256(secret, "v0:{timestamp}:{body}")``, written here from Slack's
documentation rather than with slack_sdk, so the service's verification is checked independently.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.service.slack_socket_standin import SocketModeStandIn

_T = TypeVar("_T")


@dataclass(frozen=True)
class SlackCall:
    """One Web API call as the stand-in understood it."""

    method: str
    body: Mapping[str, Any]
    answer: Mapping[str, Any]
    raw: bytes = b""  # the request body exactly as it arrived

    @property
    def text(self) -> str:
        """Everything readable in the call (text and blocks), for assertions on content."""
        return json.dumps(
            {"text": self.body.get("text"), "blocks": self.body.get("blocks")}, ensure_ascii=False
        )


class SlackStandIn:
    def __init__(
        self, *, token: str, users: Mapping[str, str | None], socket: SocketModeStandIn | None = None
    ) -> None:
        self.token = token
        self.socket = socket  # answers apps.connections.open (Socket Mode) when given
        self.users = dict(users)  # Slack user id → profile e-mail (None: a profile without one)
        self._calls: list[SlackCall] = []
        self._ephemerals: list[dict[str, Any]] = []
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._channels: dict[str, str] = {}
        self._ts = itertools.count(1)
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._response_urls = itertools.count(1)

    # ------------------------------------------------------------ lifecycle and addresses

    def __enter__(self) -> SlackStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def response_url(self) -> str:
        """A fresh response_url, as Slack puts one in every block_actions payload."""
        return f"{self.base_url}/actions/T0GATEHOUSE/{next(self._response_urls)}/hook"

    def channel_id(self, name: str) -> str:
        """The id Slack gives the channel ``#name`` (stable for the stand-in's life)."""
        with self._changed:
            return self._channel_for(name)

    # ------------------------------------------------------------ what was received

    def calls(self, method: str | None = None) -> list[SlackCall]:
        with self._changed:
            return [c for c in self._calls if method is None or c.method == method]

    @property
    def ephemerals(self) -> list[dict[str, Any]]:
        with self._changed:
            return list(self._ephemerals)

    def wait_for(
        self, method: str, where: Callable[[SlackCall], bool] = lambda _: True, timeout: float = 10.0
    ) -> SlackCall:
        """The first ``method`` call matching ``where``, waiting for it to arrive (no polling)."""
        found = self._wait(
            lambda: next((c for c in self._calls if c.method == method and where(c)), None), timeout
        )
        if found is None:
            seen = [(c.method, c.body.get("text")) for c in self.calls()]
            raise AssertionError(f"no matching {method} call within {timeout}s; calls: {seen}")
        return found

    def wait_for_ephemeral(self, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        found = self._wait(
            lambda: list(self._ephemerals) if len(self._ephemerals) >= count else None, timeout
        )
        if found is None:
            raise AssertionError(f"fewer than {count} ephemeral replies within {timeout}s: {self.ephemerals}")
        return found

    def _wait(self, probe: Callable[[], _T | None], timeout: float) -> _T | None:
        with self._changed:
            self._changed.wait_for(lambda: probe() is not None, timeout=timeout)
            return probe()

    # ------------------------------------------------------------ the Web API

    def _channel_for(self, channel: str) -> str:
        if channel.startswith("#"):
            return self._channels.setdefault(channel, f"C{len(self._channels) + 1:08d}")
        if channel.startswith(("U", "W")):
            return "D" + channel[1:]  # the bot's direct-message channel with that user
        return channel

    def answer(self, method: str, body: Mapping[str, Any], authorization: str | None) -> dict[str, Any]:
        if method == "apps.connections.open" and self.socket is not None:  # the app-level token's
            return self.socket.connections_open(authorization)
        if not authorization:
            return {"ok": False, "error": "not_authed"}
        if authorization != f"Bearer {self.token}":
            return {"ok": False, "error": "invalid_auth"}
        handler = {
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "users.info": self._users_info,
            "views.open": self._views_open,
        }.get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        return handler(body)

    def _post_message(self, body: Mapping[str, Any]) -> dict[str, Any]:
        if not body.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not body.get("text") and not body.get("blocks"):
            return {"ok": False, "error": "no_text"}
        channel = self._channel_for(str(body["channel"]))
        thread_ts = body.get("thread_ts")
        if thread_ts and (channel, thread_ts) not in self._messages:
            return {"ok": False, "error": "thread_not_found"}
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        message = {"type": "message", "text": body.get("text"), "blocks": body.get("blocks"), "ts": ts}
        if thread_ts:
            message["thread_ts"] = thread_ts
        self._messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _update(self, body: Mapping[str, Any]) -> dict[str, Any]:
        key = (str(body.get("channel")), str(body.get("ts")))
        if key not in self._messages:
            return {"ok": False, "error": "message_not_found"}
        self._messages[key].update(text=body.get("text"), blocks=body.get("blocks"))
        return {"ok": True, "channel": key[0], "ts": key[1], "text": body.get("text")}

    def _users_info(self, body: Mapping[str, Any]) -> dict[str, Any]:
        user_id = str(body.get("user"))
        if user_id not in self.users:
            return {"ok": False, "error": "user_not_found"}
        email = self.users[user_id]
        profile = {"real_name": user_id, "display_name": user_id, **({"email": email} if email else {})}
        return {
            "ok": True,
            "user": {"id": user_id, "name": user_id.lower(), "deleted": False, "profile": profile},
        }

    def _views_open(self, body: Mapping[str, Any]) -> dict[str, Any]:
        if not body.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        view = body.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        return {"ok": True, "view": {"id": f"V{next(self._ts):08d}", **(view or {})}}

    def _record(
        self, method: str, body: Mapping[str, Any], authorization: str | None, raw: bytes = b""
    ) -> dict[str, Any]:
        with self._changed:
            answer = self.answer(method, body, authorization)
            self._calls.append(SlackCall(method, body, answer, raw))
            self._changed.notify_all()
            return answer

    def _record_ephemeral(self, body: dict[str, Any]) -> None:
        with self._changed:
            self._ephemerals.append(body)
            self._changed.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                self._api(b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/actions/"):
                    standin._record_ephemeral(json.loads(body))
                    self._reply(200, b"ok", "text/plain")
                else:
                    self._api(body)

            def _api(self, body: bytes) -> None:
                url = urlsplit(self.path)
                if not url.path.startswith("/api/"):
                    self._reply(404, b"not found", "text/plain")
                    return
                fields: dict[str, Any] = dict(parse_qsl(url.query))
                if "json" in (self.headers.get("Content-Type") or ""):
                    fields.update(json.loads(body or b"{}"))
                else:
                    fields.update(parse_qsl(body.decode("utf-8")))
                answer = standin._record(
                    url.path.removeprefix("/api/"), fields, self.headers.get("Authorization"), body
                )
                self._reply(200, json.dumps(answer).encode(), "application/json; charset=utf-8")

            def _reply(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


# ---------------------------------------------------------------- signed interaction requests


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v0=`` + HMAC-SHA256 over ``v0:{timestamp}:{body}``, as Slack computes it."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_interaction(
    payload: Mapping[str, Any] | str, secret: str, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The form body (``payload=<json>``) and headers Slack would send, signed with ``secret``."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    body = urlencode({"payload": text}).encode()
    return body, signed_headers(body, secret, timestamp=timestamp)


def signed_headers(body: bytes, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    """Headers signing any form body (also ones that are not a valid interaction)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": slack_signature(secret, stamp, body),
    }


_trigger_ids = itertools.count(1)


def block_actions(
    *,
    user: str,
    action_id: str,
    value: str,
    response_url: str,
    channel: str = "C00000001",
    ts: str = "1.000001",
) -> dict[str, Any]:
    """A button click on a message, shaped like Slack's block_actions payload."""
    return {
        "type": "block_actions",
        "team": {"id": "T0GATEHOUSE", "domain": "gatehouse-test"},
        "user": {"id": user, "username": user.lower(), "team_id": "T0GATEHOUSE"},
        "api_app_id": "A0GATEHOUSE",
        "token": "verification-token-is-deprecated",
        "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": f"{next(_trigger_ids)}.1.abcdef",
        "channel": {"id": channel, "name": "data-approvals"},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "gatehouse_buttons",
                "text": {"type": "plain_text", "text": action_id},
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def view_submission(
    *, user: str, view: Mapping[str, Any], values: Mapping[str, Mapping[str, str]]
) -> dict[str, Any]:
    """A modal submitted by ``user``: ``view`` as it was opened, ``values`` as block_id → action_id → text."""
    state = {
        block: {action: {"type": "plain_text_input", "value": text} for action, text in actions.items()}
        for block, actions in values.items()
    }
    return {
        "type": "view_submission",
        "team": {"id": "T0GATEHOUSE", "domain": "gatehouse-test"},
        "user": {"id": user, "username": user.lower(), "team_id": "T0GATEHOUSE"},
        "api_app_id": "A0GATEHOUSE",
        "trigger_id": f"{next(_trigger_ids)}.1.abcdef",
        "view": {**view, "id": "V00000001", "state": {"values": state}},
        "response_urls": [],
    }
