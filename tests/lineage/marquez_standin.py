"""A local stand-in for Marquez's lineage endpoint: ``POST /api/v1/lineage`` answers 201 and keeps
the body, as Marquez does. Tests never call out; this listens on 127.0.0.1 on a free port.

``go_down()`` closes the listening socket, so clients get "connection refused" (an endpoint that
is really down); ``come_back()`` listens again on the same port. ``fail_with = 503`` keeps
listening but answers every event with that status (a proxy in front of a sick Marquez).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

LINEAGE_PATH = "/api/v1/lineage"


class MarquezStandIn:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers) of every POST
        self.fail_with: int | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def event_types(self) -> list[str]:
        return [e["eventType"] for e in self.events]

    def _listen(self) -> None:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with stand_in._lock:
                    stand_in.requests.append((self.path, dict(self.headers.items())))
                    status = stand_in._receive(self.path, self.headers.get("Content-Type", ""), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def _receive(self, path: str, content_type: str, body: bytes) -> int:
        if path != LINEAGE_PATH:
            return 404
        if self.fail_with is not None:
            return self.fail_with
        if not content_type.startswith("application/json"):
            return 415
        try:
            event = json.loads(body)
        except ValueError:
            return 400  # Marquez rejects a body that is not an OpenLineage event
        if not isinstance(event, dict) or "eventType" not in event or "run" not in event:
            return 422
        self.events.append(event)
        return 201

    def go_down(self) -> None:
        """Stop listening: connections are refused until ``come_back()``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def come_back(self) -> None:
        """Listen again, on the same port."""
        if self._server is None:
            self._listen()

    def close(self) -> None:
        self.go_down()

    def __enter__(self) -> MarquezStandIn:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
