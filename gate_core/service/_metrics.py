"""``/metrics``: the service in the Prometheus exposition format (the official ``prometheus_client``).

Two kinds of figures, because a service runs as N replicas behind a load balancer:

    state   read from the database when scraped (StateCollector) — the same on every replica:
            gatehouse_gates{status,rule}, gatehouse_gates_expiring_undecided{rule},
            gatehouse_audit_entries, gatehouse_audit_checkpoint_entries,
            gatehouse_audit_checkpoint_timestamp_seconds, gatehouse_audit_unsigned_entries,
            gatehouse_store_up                                    aggregate with max(), never sum()
    process this replica's own (one process per replica: ``gatehouse serve`` runs one uvicorn
            worker, so no multiprocess mode is needed):
            gatehouse_decisions_total{channel,verdict}, gatehouse_refusals_total{action,reason,channel},
            gatehouse_gates_opened_total{rule,status}, gatehouse_time_to_decision_seconds{outcome},
            gatehouse_decision_to_resume_seconds, gatehouse_notifier_deliveries_total{type,notifier,outcome},
            gatehouse_lineage_violations_total{kind,rule},
            gatehouse_longpoll_waiters, gatehouse_longpoll_gates, gatehouse_loop_*, gatehouse_db_pool_*
                                                                  aggregate with sum() (counters: of rate())

Every label value is bounded and says nothing about a gate's content or a person: rule names come
from the policy, channels, verdicts and statuses are enums, reasons are the errors' stable codes,
notifier instances and types come from service.yaml, violation kinds are the scope check's stable
names (lineage._scope.KINDS). Never a requester, an approver, a dataset.

The state read is one read-only transaction, done at most once per ``metrics.min_interval_s``
per replica however often anyone scrapes (a scrape flood costs the database nothing more).
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from sqlalchemy.pool import QueuePool

from gate_core._errors import AuthenticationFailed, GatehouseError
from gate_core._models import Gate, GateStatus, Verdict
from gate_core._ports import StoreFigures
from gate_core.identity import AuthMethod
from gate_core.service._state import ServiceState, state_of
from gate_core.service.notify._hub import DeliveryOutcome

log = logging.getLogger("gatehouse.service")

# People decide in minutes to days; a resumed step in milliseconds to seconds.
DECISION_BUCKETS = (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
RESUME_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
# A violation's kind comes from an extension: a stable snake_case name, or "other" — a plugin that
# put free text there must not turn the label into an unbounded (or revealing) set.
_KIND = re.compile(r"[a-z][a-z0-9_]{0,39}")


class GateMetrics:
    """The events of this process: a GateObserver of the core and the hub's DeliveryObserver."""

    def __init__(self, registry: CollectorRegistry, notifier_types: Mapping[str, str]) -> None:
        self._types = dict(notifier_types)
        self.decisions = Counter(
            "gatehouse_decisions",
            "Decisions recorded, by the channel the person was identified through and the verdict.",
            ["channel", "verdict"],
            registry=registry,
        )
        self.refusals = Counter(
            "gatehouse_refusals",
            "Decisions, cancellations and consumptions refused, by the refusal's stable code.",
            ["action", "reason", "channel"],
            registry=registry,
        )
        self.opened = Counter(
            "gatehouse_gates_opened",
            "Gates opened, by the policy rule that applied and the status they opened in.",
            ["rule", "status"],
            registry=registry,
        )
        self.time_to_decision = Histogram(
            "gatehouse_time_to_decision_seconds",
            "From a gate's opening to the decision that closed it (approved or rejected by people).",
            ["outcome"],
            buckets=DECISION_BUCKETS,
            registry=registry,
        )
        self.decision_to_resume = Histogram(
            "gatehouse_decision_to_resume_seconds",
            "From a gate's approval to its step running (the first consumption of the approval).",
            buckets=RESUME_BUCKETS,
            registry=registry,
        )
        self.deliveries = Counter(
            "gatehouse_notifier_deliveries",
            "Attempts to reach a notifier: delivered, retried (failed, tried again) or failed for good.",
            ["type", "notifier", "outcome"],
            registry=registry,
        )
        self.violations = Counter(
            "gatehouse_lineage_violations",
            "Accesses found after the fact beyond what a gate approved (lineage out_of_scope findings), "
            "by the scope check's kind and the policy rule of the gate.",
            ["kind", "rule"],
            registry=registry,
        )

    # GateObserver
    def gate_opened(self, gate: Gate) -> None:
        self.opened.labels(gate.rule, gate.status.value).inc()

    def decision_recorded(self, gate: Gate, verdict: Verdict, via: AuthMethod) -> None:
        self.decisions.labels(via.value, verdict.value).inc()
        if gate.status in (GateStatus.APPROVED, GateStatus.REJECTED) and gate.decided_at is not None:
            waited = (gate.decided_at - gate.created_at).total_seconds()
            self.time_to_decision.labels(gate.status.value.lower()).observe(max(0.0, waited))

    def refused(self, action: str, reason: str, via: AuthMethod) -> None:
        self.refusals.labels(action, reason, via.value).inc()

    def approval_used(self, gate: Gate) -> None:
        if gate.decided_at is not None and gate.consumed_at is not None:
            self.decision_to_resume.observe(max(0.0, (gate.consumed_at - gate.decided_at).total_seconds()))

    def violation_found(self, gate: Gate, kind: str) -> None:
        self.violations.labels(kind if _KIND.fullmatch(kind) else "other", gate.rule).inc()

    # DeliveryObserver
    def delivery(self, instance: str, outcome: DeliveryOutcome) -> None:
        self.deliveries.labels(self._types.get(instance, "unknown"), instance, outcome).inc()


class StateCollector:
    """Figures read when scraped: from the database (the same on every replica) and from this
    process's own loops, long-polls and connection pool."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._cached: tuple[float, StoreFigures | None] | None = None

    def _figures(self) -> StoreFigures | None:
        """At most one database read per min_interval_s; None while the database is away."""
        config = self._state.config.metrics
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < config.min_interval_s:
                return self._cached[1]
            gatekeeper = self._state.gatekeeper
            horizon = gatekeeper.clock.now() + timedelta(seconds=config.expiring_within_s)
            figures: StoreFigures | None
            try:
                figures = gatekeeper.store.figures(horizon)
            except GatehouseError as exc:
                log.warning("metrics: the store could not be read: %s", exc)
                figures = None
            self._cached = (now, figures)
            return figures

    def collect(self) -> Iterable[Metric]:
        figures = self._figures()
        up = GaugeMetricFamily(
            "gatehouse_store_up", "1 when the last metrics read of the database succeeded."
        )
        up.add_metric([], 1 if figures is not None else 0)
        yield up
        if figures is not None:
            yield from self._store_metrics(figures)
        yield from self._process_metrics()

    def _rules(self, figures: StoreFigures) -> list[str]:
        """Every rule of the policy in force (so a quiet rule reads 0 rather than vanishing) and
        every rule a stored gate names."""
        policy = self._state.gatekeeper.policy
        named = {rule for _status, rule in figures.gates}
        return sorted({*(r.name for r in policy.rules), "default", *named})

    def _store_metrics(self, figures: StoreFigures) -> Iterator[Metric]:
        gates = GaugeMetricFamily(
            "gatehouse_gates", "Gates in the database by status and policy rule.", labels=["status", "rule"]
        )
        for status in GateStatus:
            for rule in self._rules(figures):
                gates.add_metric([status.value, rule], figures.gates.get((status, rule), 0))
        yield gates
        horizon = self._state.config.metrics.expiring_within_s
        expiring = GaugeMetricFamily(
            "gatehouse_gates_expiring_undecided",
            f"PENDING gates nobody decided yet, expiring within {horizon:g} s (metrics.expiring_within_s).",
            labels=["rule"],
        )
        for rule in self._rules(figures):
            expiring.add_metric([rule], figures.expiring_undecided.get(rule, 0))
        yield expiring
        yield GaugeMetricFamily(
            "gatehouse_audit_entries", "Entries in the audit log.", value=figures.audit_entries
        )
        yield GaugeMetricFamily(
            "gatehouse_audit_checkpoint_entries",
            "Audit entries covered by the newest signed checkpoint.",
            value=figures.checkpoint_size,
        )
        yield GaugeMetricFamily(
            "gatehouse_audit_unsigned_entries",
            "Audit entries no signed checkpoint covers yet.",
            value=max(0, figures.audit_entries - figures.checkpoint_size),
        )
        if figures.checkpoint_at is not None:
            yield GaugeMetricFamily(
                "gatehouse_audit_checkpoint_timestamp_seconds",
                "When the newest checkpoint was signed (unix time).",
                value=figures.checkpoint_at.timestamp(),
            )

    def _process_metrics(self) -> Iterator[Metric]:
        state = self._state
        yield GaugeMetricFamily(
            "gatehouse_longpoll_waiters", "Long-polls parked in this process.", value=state.bus.waiters
        )
        yield GaugeMetricFamily(
            "gatehouse_longpoll_gates",
            "Distinct gates long-polls wait on in this process.",
            value=state.bus.waiting_gates,
        )
        running = GaugeMetricFamily(
            "gatehouse_loop_running", "1 while the background loop runs.", labels=["loop"]
        )
        errors = CounterMetricFamily(
            "gatehouse_loop_errors",
            "Whole passes of a background loop that failed (retried).",
            labels=["loop"],
        )
        bad = CounterMetricFamily(
            "gatehouse_loop_bad_records", "Records a background loop passed over.", labels=["loop"]
        )
        for name, (is_running, bad_records, failed) in sorted(state.loops.counts().items()):
            running.add_metric([name], 1 if is_running else 0)
            errors.add_metric([name], failed)
            bad.add_metric([name], bad_records)
        yield from (running, errors, bad)
        last = GaugeMetricFamily(
            "gatehouse_loop_last_success_timestamp_seconds",
            "When a duty of a background loop last completed (unix time): sweeper expiry, reminders, "
            "alerts and checkpoint; listener listen; notifier delivery.",
            labels=["loop", "duty"],
        )
        for (name, duty), at in sorted(state.loops.last_success().items()):
            last.add_metric([name, duty], at)
        yield last
        pool = getattr(state.gatekeeper.store, "engine", None)
        pool = getattr(pool, "pool", None)
        if isinstance(pool, QueuePool):
            yield GaugeMetricFamily(
                "gatehouse_db_pool_size", "Connections the pool keeps.", value=pool.size()
            )
            yield GaugeMetricFamily(
                "gatehouse_db_pool_checked_out", "Database connections in use now.", value=pool.checkedout()
            )
            yield GaugeMetricFamily(
                "gatehouse_db_pool_overflow",
                "Connections open beyond the pool's size (negative: pool slots not yet opened).",
                value=pool.overflow(),
            )


def install(state: ServiceState) -> tuple[APIRouter, GateMetrics]:
    """The registry of this app (not the global one, so several apps in one process never share
    figures), its observers wired in, and the ``/metrics`` route."""
    registry = CollectorRegistry(auto_describe=False)
    configured = {name: i.type.name for name, i in state.config.notifier_instances.items()}
    types = {name: configured.get(name, type(n).__name__) for name, n in state.hub.notifiers.items()}
    metrics = GateMetrics(registry, types)
    registry.register(StateCollector(state))
    state.gatekeeper.add_observer(metrics)
    router = APIRouter()

    @router.get("/metrics", tags=["service"], include_in_schema=False)
    def scrape(request: Request) -> Response:
        config = state_of(request).config.metrics
        if config.token is not None:
            sent = request.headers.get("authorization", "")
            expected = f"Bearer {config.token.get_secret_value()}"
            if not hmac.compare_digest(sent.encode(), expected.encode()):
                raise AuthenticationFailed(
                    "/metrics needs the metrics token (metrics.token) as a Bearer token"
                )
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    return router, metrics
