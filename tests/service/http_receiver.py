"""A real HTTP server on 127.0.0.1 that records what it is sent, for outbound-notification tests.

    with HttpReceiver() as receiver:
        receiver.fail_next(2)             # the next two requests get 500: proves the sender retries
        receiver.hold_s = 2.0             # answer every request only after 2 s: a slow receiver
        ... POST to f"{receiver.url}/any/path" ...
        [hit] = receiver.wait_for(1, path="/any/path")

Each request is recorded (method, path, headers, raw body) the moment its body has been read,
before any failure or hold is applied, so tests see attempts as well as successes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    def __init__(self, *, status: int = 200, reply: bytes = b"") -> None:
        self.status = status
        self.reply = reply
        self.hold_s = 0.0
        self._failures_left = 0
        self._failure_status = 500
        self._recorded: list[Recorded] = []
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for the next poll, and tests stop many receivers.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._changed:
            self._failures_left = count
            self._failure_status = status

    def requests(self, path: str | None = None) -> list[Recorded]:
        with self._changed:
            return [r for r in self._recorded if path is None or r.path == path]

    def successes(self, path: str | None = None) -> list[Recorded]:
        return [r for r in self.requests(path) if 200 <= r.answered < 300]

    def wait_for(
        self, count: int, *, path: str | None = None, timeout: float = 10.0, ok_only: bool = True
    ) -> list[Recorded]:
        """Block until ``count`` matching requests arrived (bounded), then return them all."""
        deadline = time.monotonic() + timeout

        def matching() -> list[Recorded]:
            hits = [r for r in self._recorded if path is None or r.path == path]
            return [r for r in hits if 200 <= r.answered < 300] if ok_only else hits

        with self._changed:
            while len(matching()) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} request(s) to {path or 'any path'} within {timeout}s; "
                        f"got {[(r.method, r.path, r.answered) for r in self._recorded]}"
                    )
                self._changed.wait(remaining)
            return matching()

    def _answer_for_next(self) -> int:
        with self._changed:
            if self._failures_left > 0:
                self._failures_left -= 1
                return self._failure_status
            return self.status

    def _record(self, hit: Recorded) -> None:
        with self._changed:
            self._recorded.append(hit)
            self._changed.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver._answer_for_next()
                # Record before holding: a test can see the attempt while the sender is still waiting.
                receiver._record(
                    Recorded("POST", self.path, dict(self.headers.items()), body, answered=status)
                )
                time.sleep(receiver.hold_s)
                reply = receiver.reply if status < 300 else b"receiver told to fail"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
