"""Errors as RFC 9457 ``application/problem+json``, and the request-body size limit.

Every GatehouseError maps to one status by its class; validation failures are 422 and
malformed JSON 400. Nothing a client sends can produce a 500: an unexpected exception is
logged with its traceback and answered as a 500 problem without internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gate_core import _errors as e

log = logging.getLogger("gatehouse.service")
PROBLEM = "application/problem+json"

_STATUS: list[tuple[type[e.GatehouseError], int]] = [
    (e.AuthenticationFailed, 401),
    (e.PermissionDenied, 403),
    (e.InvalidInput, 422),
    (e.UnknownPrincipal, 422),
    (e.NotFound, 404),
    (e.AlreadyDecided, 409),
    (e.DuplicateDecision, 409),
    (e.GateExpired, 409),
    (e.ApprovalNotUsable, 409),
    (e.IdempotencyConflict, 409),
    (e.DecisionRefused, 403),
    (e.RequestRefused, 403),
    (e.StoreUnavailable, 503),
]


def status_for(error: e.GatehouseError) -> int:
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 500


def problem(status: int, title: str, detail: str, code: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:gatehouse:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    headers = {"WWW-Authenticate": 'Bearer realm="gatehouse"'} if status == 401 else {}
    if status == 503:
        headers["Retry-After"] = "1"
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _gatehouse_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.GatehouseError)
    status = status_for(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, e.AlreadyDecided):
        extra = {
            "gate_status": exc.status,
            "decided_by": list(exc.by),
            "decided_at": exc.at.isoformat() if exc.at else None,
        }
    if status == 500:
        log.error("service error: %s", exc)
    return problem(status, type(exc).__name__, str(exc), exc.code, **extra)


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))} for err in exc.errors()
    ]
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        return problem(
            400, "Malformed JSON", "the request body is not valid JSON", "malformed_json", errors=errors
        )
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    detail = f"{'.'.join(first['loc'])}: {first['msg']}"
    return problem(422, "Invalid request", detail, "invalid_request", errors=errors)


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, "HTTP error", str(exc.detail), f"http_{exc.status_code}")


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return problem(500, "Internal error", "the service failed unexpectedly; nothing was changed", "internal")


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.GatehouseError, _gatehouse_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether announced or streamed.

    The body is read here, up to the limit, before the app runs: frameworks turn errors raised
    while they read a body into a generic 400, and an oversized body must be a clear 413.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._too_large(scope, receive, send)
            return
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.limit:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413, "Body too large", f"request bodies are limited to {self.limit} bytes", "too_large"
        )
        await response(scope, receive, send)
