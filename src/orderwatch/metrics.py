"""Prometheus metrics of the worker, on a registry that is injected rather than global.

Why a class and not module-level metrics: tests (and a second worker in one process) each get
their own ``CollectorRegistry``, so values can be read back without leaking between tests and
without ``Duplicated timeseries`` errors on re-import. The worker builds one ``Metrics`` and
passes it to the agents and to ``orderwatch.http``.

Labels are low-cardinality on purpose (topic, rule_id, severity, ...): an order or customer id
as a label would create a series per order and take Prometheus down. Personal data never
becomes a label either.

``docs/operations.md`` describes every metric; ``deploy/prometheus/alerts.yaml`` and the Grafana
dashboard use these names, and a unit test fails when they drift apart.
"""

from __future__ import annotations

import platform
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from orderwatch import __version__
from orderwatch.events.kpis import KpiRecord

#: v2: the action types of CONTRACT section 10 (pre-created: a paused-type alert needs a series)
KPIS: Final = ("payment_success_rate", "on_time_shipment_rate", "on_time_delivery_rate")
ACTION_TYPES: Final = (
    "order.resync_status",
    "payment.refund",
    "fulfillment.hold",
    "fulfillment.release",
    "customer.notify",
    "carrier.claim",
    "blacklist.suggest",
)

#: The kinds of keyed state the worker keeps (one Faust table each); pre-created so the
#: dashboard shows 0 rather than "no data" before the first report.
#: ``actions``: one order's remediation action records (``g:actions/<order_id>``); ``rates``: the
#: few global shards (rate windows, the action limits, the KPI windows)
STATE_SHARD_KINDS: Final = ("order", "stock", "address", "phone", "customer", "actions", "rates")

#: ``timeout``: deadline → published (how late the sweep is); ``event``: read → published.
DETECTION_KINDS: Final = ("timeout", "event")

# Events may legitimately arrive hours late (carrier scans, ERP batch exports); the top buckets
# tell "a bit behind" from "a day-old backfill" without an unbounded +Inf bucket doing the work.
EVENT_TIME_LAG_BUCKETS: Final = (
    0.1,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    21600.0,
    43200.0,
    86400.0,
)

# The sweep runs at most every second (CONTRACT §3), so a healthy timeout detection lands
# below ~1 s; the upper buckets exist to measure how bad a stall was.
DETECTION_LATENCY_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)

# A sweep must finish well inside its interval (≤ 1 s), so resolution matters below 1 s.
SWEEP_DURATION_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


# Operators answer within minutes to days: time to acknowledge (MTTA) and to resolve (MTTR),
# from the moment the condition became true (``event_time``).
RESPONSE_TIME_BUCKETS: Final = (
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    86400.0,
    259200.0,
    604800.0,
)

#: v2 statuses of exceptions not yet resolved (CONTRACT section 8), pre-created at 0.
OPEN_STATUSES: Final = ("open", "acknowledged", "snoozed", "inhibited")


class Metrics:
    """Every metric the worker exports, registered on ``registry``.

    Attribute names are the interface the agents call (``metrics.events_consumed.labels(...)``);
    the exported names are the interface of alerts and dashboards. Change neither lightly.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Never the global REGISTRY: it would also export process/GC collectors twice when two
        # Metrics exist, and tests could not read clean values.
        self.registry: CollectorRegistry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        self.events_consumed = Counter(
            "orderwatch_events_consumed_total",
            "Valid input events consumed, by topic and event type.",
            ["topic", "type"],
            registry=r,
        )
        self.invalid_messages = Counter(
            "orderwatch_invalid_messages_total",
            "Input messages that failed to decode or validate and went to the dead-letter topic.",
            ["topic", "reason"],
            registry=r,
        )
        self.processing_errors = Counter(
            "orderwatch_processing_errors_total",
            "Messages whose processing raised unexpectedly (a bug) and went to the dead-letter "
            "topic as internal_error, by stage (route, detect) and exception class.",
            ["stage", "exception"],
            registry=r,
        )
        self.exceptions_published = Counter(
            "orderwatch_exceptions_published_total",
            "Exception events published, by rule, severity, owner team and state.",
            ["rule_id", "severity", "owner", "state"],
            registry=r,
        )
        self.open_exceptions = Gauge(
            "orderwatch_open_exceptions",
            "Exceptions raised or escalated and not yet resolved, on this worker's partitions.",
            ["rule_id"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "orderwatch_consumer_lag_messages",
            "Messages between the high watermark and the committed offset, per assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.event_time_lag = Histogram(
            "orderwatch_event_time_lag_seconds",
            "Detector clock minus the event's occurred_at when the event is read.",
            buckets=EVENT_TIME_LAG_BUCKETS,
            registry=r,
        )
        self.detection_latency = Histogram(
            "orderwatch_detection_latency_seconds",
            "Delay until an exception is published: from its deadline (kind=timeout) "
            "or from reading its triggering event (kind=event).",
            ["kind"],
            buckets=DETECTION_LATENCY_BUCKETS,
            registry=r,
        )
        self.sweep_duration = Histogram(
            "orderwatch_sweep_duration_seconds",
            "Wall time of one deadline sweep.",
            buckets=SWEEP_DURATION_BUCKETS,
            registry=r,
        )
        self.state_shards = Gauge(
            "orderwatch_state_shards",
            "Keyed state entries held by this worker, by kind of state.",
            ["kind"],
            registry=r,
        )
        self.pending_deadlines = Gauge(
            "orderwatch_pending_deadlines",
            "Deadlines (timeouts and escalations) waiting in the deadline index.",
            registry=r,
        )
        self.shard_items = Counter(
            "orderwatch_shard_items_total",
            "Event copies through the shard topic, one per shard key: routed by stage 1, applied "
            "by stage 2, or skipped by stage 2 as a copy of an item it had read (copy: a router "
            "read its input again from an older commit). Summed over workers, routed minus "
            "applied minus copy is the detector's backlog.",
            ["stage"],
            registry=r,
        )
        self.rebalances = Counter(
            "orderwatch_rebalances_total",
            "Consumer group rebalances seen by this worker.",
            registry=r,
        )
        self.source_silent = Gauge(
            "orderwatch_source_silent",
            "1 while an input source has sent nothing for longer than expected, else 0.",
            ["source"],
            registry=r,
        )
        self.last_event_timestamp = Gauge(
            "orderwatch_last_event_timestamp_seconds",
            "Unix time (wall clock, on arrival) of the last message read from the topic.",
            ["topic"],
            registry=r,
        )
        self.action_events = Counter(
            "orderwatch_action_events_total",
            "Remediation action events published (CONTRACT section 10), by type and status.",
            ["type", "status"],
            registry=r,
        )
        self.kpi_total = Counter(
            "orderwatch_kpi_total",
            "Denominators of the hourly KPIs (section 11), added when an hour is published: "
            "payments attempted, orders due to ship, orders due to be delivered.",
            ["kpi", "dimension"],
            registry=r,
        )
        self.kpi_successes = Counter(
            "orderwatch_kpi_successes_total",
            "Numerators of the hourly KPIs: payments succeeded, orders shipped or delivered on "
            "time. Rates are successes / total over a range (recording rules), never exported.",
            ["kpi", "dimension"],
            registry=r,
        )
        self.action_type_paused = Gauge(
            "orderwatch_action_type_paused",
            "1 while the circuit breaker of an action type is open (11 of its last 20 results "
            "failed; paused 10 minutes), else 0.",
            ["type"],
            registry=r,
        )
        self.ready = Gauge(
            "orderwatch_ready",
            "1 when partitions are assigned and tables recovered, else 0.",
            registry=r,
        )
        self.exceptions_by_status = Gauge(
            "orderwatch_exceptions_by_status",
            "v2: exceptions not yet resolved on this worker's partitions, by rule and status "
            "(open, acknowledged, snoozed, inhibited).",
            ["rule_id", "status"],
            registry=r,
        )
        self.time_to_acknowledge = Histogram(
            "orderwatch_time_to_acknowledge_seconds",
            "v2: from an exception's event_time to its first acknowledgement (MTTA).",
            ["rule_id", "owner"],
            buckets=RESPONSE_TIME_BUCKETS,
            registry=r,
        )
        self.time_to_resolve = Histogram(
            "orderwatch_time_to_resolve_seconds",
            "v2: from an exception's event_time to its resolution (MTTR), by who resolved it "
            "(rule or operator).",
            ["rule_id", "owner", "resolved_by"],
            buckets=RESPONSE_TIME_BUCKETS,
            registry=r,
        )
        self.commands = Counter(
            "orderwatch_commands_total",
            "v2: operators' commands answered, by type and result (accepted, or the reason of "
            "the rejection: unknown_exception, stale, invalid_transition, invalid_command).",
            ["type", "result"],
            registry=r,
        )
        self.rules_version = Gauge(
            "orderwatch_rules_version_info",
            "1 for the rule set this worker runs, labelled by its version (a hash of the rules "
            "directory's files); workers that disagree show two versions.",
            ["version"],
            registry=r,
        )
        self.rules_reloads = Counter(
            "orderwatch_rules_reloads_total",
            "Changed rule sets seen: applied, or refused whole (invalid; the old set runs on).",
            ["result"],
            registry=r,
        )
        self.shard_cache_lookups = Counter(
            "orderwatch_shard_cache_lookups_total",
            "Shard reads of the engines' bounded caches (rocksdb store): hit in memory, or miss "
            "(read from the local store, or not there).",
            ["result"],
            registry=r,
        )
        self.shard_cache_shards = Gauge(
            "orderwatch_shard_cache_shards",
            "Shards held in memory by the engines' bounded caches (rocksdb store).",
            registry=r,
        )
        self.shard_cache_bytes = Gauge(
            "orderwatch_shard_cache_bytes",
            "Stored (encoded) bytes of the shards held in memory by the engines' bounded caches "
            "(rocksdb store; in RAM a decoded shard takes ~3 times its stored size).",
            registry=r,
        )
        self.parked_events = Gauge(
            "orderwatch_parked_events",
            "Event-time mode: events read ahead of the clock, waiting in their shards until the "
            "clock reaches them (bounded by pausing inputs read ahead: ORDERWATCH_ALIGN_DRIFT).",
            registry=r,
        )
        self.inputs_paused = Gauge(
            "orderwatch_inputs_paused",
            "Event-time mode: input partitions whose fetching is paused because they were read "
            "more than ORDERWATCH_ALIGN_DRIFT seconds of event time ahead of the slowest one.",
            registry=r,
        )
        self.state_changelog_offset = Gauge(
            "orderwatch_state_changelog_offset",
            "Changelog offset the local state store holds, per state partition (rocksdb store): "
            "a restart on the same directory reads the changelog after it.",
            ["partition"],
            registry=r,
        )
        self.state_restore_seconds = Gauge(
            "orderwatch_state_restore_seconds",
            "Seconds the last rebuild of the deadline index from the local store took.",
            registry=r,
        )
        self.build_info = Info(
            "orderwatch_build",
            "Version of orderwatch and of the Python running it.",
            registry=r,
        )

        self.build_info.info({"version": __version__, "python": platform.python_version()})
        for kind in DETECTION_KINDS:
            self.detection_latency.labels(kind=kind)
        for shard_kind in STATE_SHARD_KINDS:
            self.state_shards.labels(kind=shard_kind)
        for result in ("applied", "refused"):
            self.rules_reloads.labels(result=result)
        for action_type in ACTION_TYPES:
            self.action_type_paused.labels(type=action_type).set(0)
        for kpi in KPIS:  # a series per indicator from the start: rules and panels need one
            self.kpi_total.labels(kpi, "unknown")
            self.kpi_successes.labels(kpi, "unknown")

    def count_kpi(self, record: KpiRecord) -> None:
        """One published KPI record into the totals and successes counters."""
        dim = record.method or record.warehouse_id or record.carrier or "unknown"
        self.kpi_total.labels(record.kpi, dim).inc(record.denominator)
        self.kpi_successes.labels(record.kpi, dim).inc(record.numerator)

    def set_paused(self, types: list[str]) -> None:
        """The action types whose breaker is open now: 1 for those, 0 for the rest."""
        for action_type in ACTION_TYPES:
            self.action_type_paused.labels(type=action_type).set(1 if action_type in types else 0)

    def render(self, names: list[str] | None = None) -> bytes:
        """The registry in the Prometheus text exposition format, as served on ``/metrics``;
        ``names``: only the families with these sample names (``/metrics?name[]=...``)."""
        if names:
            return generate_latest(self.registry.restricted_registry(names))
        return generate_latest(self.registry)
