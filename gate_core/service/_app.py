"""The gate service as an ASGI app: REST API, Slack and Teams endpoints, console, all on one core.

Background duties, run by every replica (all are idempotent, so replicas never conflict):
- a PostgreSQL LISTEN thread that wakes local waiters when another replica changes a gate;
- a sweeper that expires overdue gates, sends due reminders (each claimed by one replica) and
  signs a checkpoint when the audit head has moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import entry_points
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gate_core._errors import GatehouseError
from gate_core._gatekeeper import Gatekeeper
from gate_core._store._sql import CHANGE_CHANNEL, SqlStore
from gate_core.service import _api, _console, _directory_api, _logs, _metrics, _problems, _scim
from gate_core.service._auth import Authenticator
from gate_core.service._batcher import DecisionBatcher
from gate_core.service._bus import ChangeBus, PgChangeListener
from gate_core.service._config import ServiceConfig
from gate_core.service._directory_watch import DirectoryWatch
from gate_core.service._loops import LoopHealth
from gate_core.service._peer import SocketPeer
from gate_core.service._slack import slack_interactions, slack_router
from gate_core.service._slack_socket import SlackSocketMode
from gate_core.service._state import ServiceState
from gate_core.service._teams import teams_invokes, teams_router
from gate_core.service.notify import NotificationHub, Notifier, NotifyTarget
from gate_core.service.notify._hub import DeliveryOutcome

log = logging.getLogger("gatehouse.service")


def build_notifiers(config: ServiceConfig, gatekeeper: Gatekeeper) -> dict[str, Notifier]:
    """One notifier per instance of service.yaml's ``notifiers:`` (legacy keys included), by name."""
    notifiers = {
        name: instance.create(public_url=config.public_url, gatekeeper=gatekeeper)
        for name, instance in config.notifier_instances.items()
    }
    _report_unknown_instances(gatekeeper, notifiers)
    return notifiers


def _report_unknown_instances(gatekeeper: Gatekeeper, notifiers: Mapping[str, Notifier]) -> None:
    """A rule notifying an instance this service lacks is logged loudly once at start, not
    refused: the policy is valid without any service config, and replicas may differ in what they
    reach (a staging service without Slack still serves gates). Each gate logs it again."""
    policy = gatekeeper.policy
    missing: dict[str, set[str]] = {}
    for rule, targets in [*((r.name, r.notify) for r in policy.rules), ("default", policy.default.notify)]:
        for text in targets:
            instance = NotifyTarget.parse(text).instance  # well-formed: checked at policy load
            if instance not in notifiers:
                missing.setdefault(instance, set()).add(rule)
    for instance, rules in sorted(missing.items()):
        log.error(
            "policy rule(s) %s notify %r, but service.yaml configures no notifier instance of that name "
            "(configured: %s); those targets will get nothing",
            ", ".join(sorted(rules)),
            instance,
            ", ".join(sorted(notifiers)) or "none",
        )


class _DeliveryHealth:
    """Each delivery attempt counted in the metrics; a delivered one is also the notifier loop's
    last success (what an alert on a stalled or failing notifier reads)."""

    def __init__(self, metrics: _metrics.GateMetrics, loops: LoopHealth) -> None:
        self._metrics = metrics
        self._loops = loops

    def delivery(self, instance: str, outcome: DeliveryOutcome) -> None:
        self._metrics.delivery(instance, outcome)
        if outcome == "delivered":
            self._loops.succeeded("notifier", "delivery")


def _sweep_once(state: ServiceState) -> None:
    """One pass; each duty on its own, so a failure in one leaves the others running."""
    gatekeeper, loops = state.gatekeeper, state.loops

    def skipped(gate_id: str, exc: Exception) -> None:
        loops.bad_record("sweeper", f"gate {gate_id}", exc)

    def expiry() -> None:
        for gate in gatekeeper.expire_due(on_bad_record=skipped):
            state.changed(gate)

    def reminders() -> None:
        for gate in gatekeeper.due_reminders(on_bad_record=skipped):
            state.hub.remind(gate)

    duties: dict[str, Callable[[], object]] = {
        "directory": state.directory_watch.check if state.directory_watch else lambda: None,
        "expiry": expiry,
        "reminders": reminders,
        "alerts": state.hub.flush_alerts,  # summaries of findings held back since the last alert
        "checkpoint": gatekeeper.audit.checkpoint_if_moved,
        "witnesses": gatekeeper.audit.witness_pending,  # a checkpoint a witness missed, retried
    }
    for duty, run in duties.items():
        try:
            run()
            loops.succeeded("sweeper", duty)
        except GatehouseError as exc:  # database away: keep sweeping once it is back
            log.warning("sweep %s skipped: %s", duty, exc)
            loops.error("sweeper", exc)
        except Exception as exc:  # anything unforeseen: logged and counted, never the end of the loop
            log.exception("sweep %s failed", duty)
            loops.error("sweeper", exc)


async def _sweeper(state: ServiceState) -> None:
    while True:
        try:
            await run_in_threadpool(_sweep_once, state)
        except Exception as exc:  # belt and braces: _sweep_once already catches per duty
            log.exception("sweep failed")
            state.loops.error("sweeper", exc)
        await asyncio.sleep(state.config.sweep_interval_s)


def install_plugins(app: FastAPI, state: ServiceState) -> None:
    """Extensions (e.g. lineage) registered under the ``gatehouse.service`` entry point group add
    their routes with ``install(app, context)`` — ``context`` is this ServiceState, seen through
    the public ``gate_core.service.extension.ServiceContext``. One that cannot even be imported is
    logged and skipped; one that fails while installing stops the service, as a bad config would."""
    for plugin in entry_points(group="gatehouse.service"):
        try:
            install = plugin.load()
        except Exception as exc:  # a broken extension must not take the gates down with it
            log.error("service plugin %r not loaded: %s: %s", plugin.name, type(exc).__name__, exc)
            continue
        install(app, state)


def create_app(
    gatekeeper: Gatekeeper,
    config: ServiceConfig | None = None,
    *,
    notifiers: Mapping[str, Notifier] | None = None,
    local_signin: bool = False,
    sandbox: bool = False,
    directory_path: Path | None = None,
) -> FastAPI:
    """The gate service. ``sandbox``: the home is a sandbox (``init --example``, where identities
    are chosen, not verified); every console page then carries a banner saying so.
    ``directory_path``: re-read that directory file whenever it changes (each sweep), so decisions
    are judged on the directory as it is now (``_directory_watch``)."""
    config = config or ServiceConfig()
    gatekeeper.audit.submit_inline = False  # the sweeper submits checkpoints to witnesses
    state = ServiceState(
        gatekeeper=gatekeeper,
        config=config,
        bus=ChangeBus(),
        hub=NotificationHub(
            gatekeeper,
            build_notifiers(config, gatekeeper) if notifiers is None else notifiers,
            alert_interval_s=config.alert_interval_s,
        ),
        auth=Authenticator(gatekeeper, config.oidc, config.proxy),
        decisions=DecisionBatcher(gatekeeper),
        sandbox=sandbox,
        directory_watch=DirectoryWatch(directory_path, gatekeeper) if directory_path else None,
    )
    interactions = slack_interactions(state)
    slack = config.slack_app()
    socket_mode = (
        SlackSocketMode(interactions, app_token=slack.app_token.get_secret_value(), api_url=slack.api_url)
        if interactions is not None and slack is not None and slack.app_token is not None
        else None
    )
    state.hub.on_failure = lambda what, exc: state.loops.bad_record("notifier", what, exc)
    state.loops.watch("notifier", state.hub.running)
    metrics_router, metrics = _metrics.install(state)
    state.hub.observer = _DeliveryHealth(metrics, state.loops)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        listener = None
        store = gatekeeper.store
        if isinstance(store, SqlStore) and store.dialect == "postgresql":
            dsn = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            listener = PgChangeListener(dsn, CHANGE_CHANNEL, state.bus.publish, health=state.loops)
            state.loops.watch("listener", listener.is_alive)
            listener.start()
            await run_in_threadpool(listener.connected.wait, 10)
        sweeper = asyncio.create_task(_sweeper(state))
        if socket_mode is not None:
            socket_mode.start()
        state.loops.watch("sweeper", lambda: not sweeper.done())
        try:
            yield
        finally:
            if socket_mode is not None:
                await run_in_threadpool(socket_mode.stop)
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if listener is not None:
                listener.stop()
            await state.decisions.close()
            state.hub.close()

    app = FastAPI(
        title="Gatehouse",
        version="0.1.0",
        summary="Human approval gates for data pipelines",
        lifespan=lifespan,
    )
    app.state.gatehouse = state
    app.state.local_signin = local_signin
    _problems.install(app)
    app.add_middleware(_problems.BodyLimit, limit=config.max_body_bytes)
    app.add_middleware(_logs.RequestContext)  # outermost: every log line of a request carries its id
    app.include_router(_api.router)
    app.include_router(_directory_api.router)
    if config.metrics.enabled:
        app.include_router(metrics_router)
    app.include_router(slack_router(interactions))
    app.include_router(teams_router(teams_invokes(state)))
    _console.install(app, state)
    _scim.install(app, state)
    install_plugins(app, state)
    # Outermost, so the connection's own peer is recorded before anything may rewrite ``client``.
    app.add_middleware(SocketPeer, forwarded_allow_ips=config.forwarded_allow_ips)

    @app.get("/healthz", tags=["service"])
    def healthz() -> JSONResponse:
        try:
            size = gatekeeper.audit.size()
        except GatehouseError as exc:
            return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
        loops = state.loops.snapshot()
        stopped = [name for name, loop in loops.items() if not loop["running"]]
        body = {
            "status": "degraded" if stopped else "ok",
            "audit_entries": size,
            "waiting_gates": state.bus.waiting_gates,
            "loops": loops,
        }
        if stopped:  # a replica whose sweeper has ended must be restarted, not trusted
            body["detail"] = f"background loop(s) stopped: {', '.join(stopped)}"
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    return app
