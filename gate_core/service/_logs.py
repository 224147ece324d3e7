"""Logs for log pipelines: ``gatehouse serve --log-format json`` (or ``log_format: json`` in
service.yaml, or GATEHOUSE_LOG_FORMAT=json) writes one JSON object per line to stderr:

    {"ts": "2026-12-05T21:14:12.345Z", "level": "INFO", "logger": "gatehouse.access",
     "message": "POST /v1/gates/g_…/decisions 200", "request_id": "…", "gate_id": "g_…",
     "actor": "alice", "method": "POST", "path": "/v1/gates/g_…/decisions", "status": 200,
     "duration_ms": 4.1}

Every request gets an id: the caller's ``X-Request-ID`` when it is well formed (1–128 of
``A-Z a-z 0-9 . _ : -``), else a fresh one; the response echoes it, and every line logged while
the request runs carries it, with the gate the path names and the verified caller's principal id.

Nothing a caller sends can forge a line: JSON escapes every control character (and, ASCII-only,
U+2028/U+2029/U+0085, which some pipelines also split on), and each field is cut to a bounded
length, so a line is always one object of bounded size.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_GATE_PATH = re.compile(r"^/(?:v1/gates|console/gates)/([A-Za-z0-9_-]{1,40})(?:/|$)")
MAX_FIELD = 4096  # characters kept of any one field (a message, a traceback, a path)

access_log = logging.getLogger("gatehouse.access")


@dataclass
class RequestInfo:
    """What lines logged during one request carry. One object per request, shared by reference:
    code that runs in another task or thread (FastAPI's dependencies, the thread pool) fills in
    the actor on the very object the middleware logs from."""

    request_id: str
    gate_id: str | None = None
    actor: str | None = None


current: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "gatehouse_request", default=None
)


def note_actor(principal_id: str) -> None:
    """The verified caller of the request being served (called once authentication succeeded)."""
    info = current.get()
    if info is not None:
        info.actor = principal_id


def _request_id(sent: bytes | None) -> str:
    if sent is not None:
        text = sent.decode("latin-1")
        if _WELL_FORMED_ID.fullmatch(text):
            return text
    return uuid.uuid4().hex


class RequestContext:
    """ASGI middleware: the request id (accepted or made, echoed in the response) and, when
    ``gatehouse.access`` logs at INFO, one line per request with its status and duration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers", [])).get(REQUEST_ID_HEADER.lower().encode())
        path = str(scope.get("path", ""))
        gate = _GATE_PATH.match(path)
        info = RequestInfo(_request_id(sent), gate_id=gate[1] if gate else None)
        token = current.set(info)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [
                    *(h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"),
                    (b"x-request-id", info.request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                method = str(scope.get("method", ""))
                access_log.info(
                    "%s %s %d",
                    method,
                    path,
                    status,
                    extra={
                        "method": method,
                        "path": path,
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            current.reset(token)


_EXTRA_FIELDS = ("method", "path", "status", "duration_ms")


def _bounded(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_FIELD:
        return value[:MAX_FIELD] + f"…[{len(value) - MAX_FIELD} more characters]"
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, every field bounded."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        info = current.get()
        entry["request_id"] = info.request_id if info is not None else None
        entry["gate_id"] = info.gate_id if info is not None else None
        entry["actor"] = info.actor if info is not None else None
        for name in _EXTRA_FIELDS:
            if name in record.__dict__:
                entry[name] = record.__dict__[name]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # ensure_ascii: control characters and U+2028/U+2029/U+0085 all leave as \\u escapes
        return json.dumps({k: _bounded(v) for k, v in entry.items()}, ensure_ascii=True, default=str)


def log_config(log_format: str, level: str) -> dict[str, Any] | None:
    """uvicorn's ``log_config`` for ``log_format``: None keeps uvicorn's own text setup (and
    Gatehouse's warnings on Python's last-resort handler, as before); json sends every logger —
    uvicorn's, Gatehouse's, the access lines — through :class:`JsonFormatter` on stderr."""
    if log_format != "json":
        return None
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": upper},
        "loggers": {
            "uvicorn": {"handlers": [], "level": upper, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": upper, "propagate": True},
            # our own access line (with request id and actor) replaces uvicorn's
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
            "gatehouse.access": {"level": "INFO" if upper in ("DEBUG", "INFO") else upper},
        },
    }
