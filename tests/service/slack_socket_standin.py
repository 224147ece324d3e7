"""A local stand-in for Slack's Socket Mode, at the wire, written from Slack's documentation.

    POST apps.connections.open   (Web API stand-in, app-level token)  → {"ok": true, "url": "ws://…"}
    ws connect                   → {"type": "hello", "num_connections": n, "connection_info": {…}}
    deliver(payload)             → {"envelope_id", "type": "interactive", "payload",
                                    "accepts_response_payload", "retry_attempt", "retry_reason"},
                                    then waits for the client's ack {"envelope_id"[, "payload"]}
                                    (Slack allows 3 seconds)
    refresh()                    → {"type": "disconnect", "reason": "refresh_requested"}: reconnect now
    drop()                       → closes every connection without a word (a network failure)

Nothing here comes from slack_sdk: the service's real ``SocketModeClient`` is what is tested.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

APP_ID = "A0GATEHOUSE"


class SocketAnswer:
    """What the client acknowledged, shaped like the HTTP response the Request URL would give."""

    def __init__(self, envelope_id: str, ack: dict[str, Any]) -> None:
        self.envelope_id = envelope_id
        self.ack = ack
        self.status_code = 200  # an ack is Slack's only success signal
        payload = ack.get("payload")
        self.content = json.dumps(payload).encode() if payload else b""
        self.text = self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)


class SocketModeStandIn:
    def __init__(self, *, app_token: str) -> None:
        self.app_token = app_token
        self.opened = 0  # apps.connections.open calls answered
        self._tickets = itertools.count(1)
        self._connections: list[ServerConnection] = []
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._changed = threading.Condition()

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> SocketModeStandIn:
        self._thread.start()
        self._server = self._run(self._serve())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            self._run(self._server.wait_closed())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _serve(self) -> Server:
        return await serve(self._connection, "127.0.0.1", 0)

    def _run(self, coroutine: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # ------------------------------------------------------------ the Web API side

    def connections_open(self, authorization: str | None) -> dict[str, Any]:
        """``apps.connections.open``: only the app-level token may open a connection."""
        if authorization != f"Bearer {self.app_token}":
            return {"ok": False, "error": "invalid_auth" if authorization else "not_authed"}
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        with self._changed:
            self.opened += 1
        return {
            "ok": True,
            "url": f"ws://127.0.0.1:{port}/link/?ticket={next(self._tickets)}&app_id={APP_ID}",
        }

    # ------------------------------------------------------------ the WebSocket side

    async def _connection(self, connection: ServerConnection) -> None:
        with self._changed:
            self._connections.append(connection)
            self._changed.notify_all()
        await connection.send(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len(self._connections),
                    "debug_info": {"host": "applink-standin", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": APP_ID},
                }
            )
        )
        try:
            async for message in connection:
                ack = json.loads(message)
                waiter = self._acks.get(str(ack.get("envelope_id")))
                if waiter is not None and not waiter.done():
                    waiter.set_result(ack)
        except ConnectionClosed:
            pass
        finally:
            with self._changed:
                self._connections.remove(connection)
                self._changed.notify_all()

    @property
    def connections(self) -> int:
        with self._changed:
            return len(self._connections)

    def wait_connected(self, count: int = 1, timeout: float = 30.0, *, opened_at_least: int = 0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._connections) < count or self.opened < opened_at_least:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{len(self._connections)} socket mode connection(s), wanted {count}"
                self._changed.wait(remaining)

    def deliver(
        self,
        payload: dict[str, Any],
        *,
        envelope_type: str = "interactive",
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        connection: int = -1,
        timeout: float = 10.0,
    ) -> SocketAnswer:
        """Send one envelope on a connection (the newest by default; Slack picks any of an app's
        connections) and return the client's ack."""
        envelope_id = envelope_id or str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "accepts_response_payload": envelope_type == "interactive",
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
            "payload": payload,
        }
        ack = self._run(self._send_and_wait(envelope_id, envelope, connection, timeout), timeout + 5)
        return SocketAnswer(envelope_id, ack)

    async def _send_and_wait(
        self, envelope_id: str, envelope: dict[str, Any], connection: int, timeout: float
    ) -> dict[str, Any]:
        waiter = self._acks[envelope_id] = self._loop.create_future()
        try:
            await self._connections[connection].send(json.dumps(envelope))
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self._acks.pop(envelope_id, None)

    def refresh(self) -> None:
        """Slack's ``disconnect`` message: the client should open a new connection at once."""
        message = {
            "type": "disconnect",
            "reason": "refresh_requested",
            "debug_info": {"host": "applink-standin"},
        }
        self._run(self._connections[-1].send(json.dumps(message)))

    def drop(self) -> None:
        """Every connection closed abruptly (no close frame), as a network failure does."""
        for connection in list(self._connections):
            connection.transport.abort()
