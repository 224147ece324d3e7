"""``GET /v1/directory[?at=TIME]`` (admin scope): the API side of ``gatehouse directory show`` —
who existed and who was in which group at any past moment."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from gate_core._errors import InvalidInput
from gate_core._tokens import Scope
from gate_core.identity._provisioned import directory_view
from gate_core.service._auth import Identity
from gate_core.service._state import identity, state_of

router = APIRouter(prefix="/v1")


@router.get("/directory", tags=["identity"])
async def directory(
    request: Request,
    caller: Annotated[Identity, Depends(identity)],
    at: Annotated[str | None, Query(max_length=64, description="ISO 8601; UTC when no zone")] = None,
) -> dict[str, Any]:
    caller.require(Scope.ADMIN)
    moment = None
    if at is not None:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError as exc:
            raise InvalidInput(f"at={at!r} is not an ISO 8601 time") from exc
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    source = state_of(request).gatekeeper.directory
    return await run_in_threadpool(directory_view, source, moment)
