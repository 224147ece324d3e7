"""``POST /v1/teams/messages``: the Teams bot's messaging endpoint (see ``_teams_invoke``).

Importing this module needs no Microsoft SDK: the handler (and the SDK's activity models, the
``teams`` extra) are imported only when service.yaml configures a ``teams-bot`` notifier.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gate_core.service._problems import problem
from gate_core.service._state import ServiceState

if TYPE_CHECKING:
    from gate_core.service._teams_invoke import TeamsInvokes


def teams_invokes(state: ServiceState) -> TeamsInvokes | None:
    """The handler of the configured Teams bot's activities, or None without a bot."""
    bot = state.config.teams_bot()
    if bot is None:
        return None
    from gate_core.service._teams_invoke import TeamsInvokes

    return TeamsInvokes(state, bot)


def teams_router(invokes: TeamsInvokes | None) -> APIRouter:
    """``POST /v1/teams/messages``: the bot's messaging endpoint (404 when no bot is configured)."""
    router = APIRouter(prefix="/v1/teams", tags=["teams"])

    @router.post(
        "/messages",
        responses={
            401: {"description": "missing, forged, expired or misdirected Bot Framework token"},
            403: {"description": "the signing key does not endorse the activity's channel"},
        },
    )
    async def teams_messages(request: Request) -> Response:
        """Bot Framework activities for the Teams bot: Approve / Reject clicks on approval cards."""
        if invokes is None:
            return problem(
                404,
                "Teams bot is not configured",
                "no teams-bot notifier is configured",
                "teams_not_configured",
            )
        return await invokes.handle(request)

    return router
