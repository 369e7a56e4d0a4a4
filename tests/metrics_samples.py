"""One realistic set of metric values, shared by the metrics, HTTP and promtool tests.

Every metric gets at least one sample so that a scrape exercises every family (a labelled metric
without children renders only its HELP and TYPE lines, which would let lint problems hide).
"""

from __future__ import annotations

from orderwatch.metrics import Metrics


def fill_sample_values(metrics: Metrics) -> None:
    """Give every metric of ``metrics`` a plausible value, as a running worker would."""
    metrics.events_consumed.labels(topic="orders", type="order.created").inc(3)
    metrics.events_consumed.labels(topic="payment-callbacks", type="payment.succeeded").inc()
    metrics.invalid_messages.labels(topic="orders", reason="invalid_json").inc()
    metrics.processing_errors.labels(stage="detect", exception="KeyError").inc()
    metrics.exceptions_published.labels(
        rule_id="inventory.oversold", severity="critical", owner="warehouse", state="raised"
    ).inc()
    metrics.open_exceptions.labels(rule_id="inventory.oversold").set(1)
    metrics.consumer_lag.labels(topic="orders", partition="0").set(42)
    metrics.event_time_lag.observe(1.5)
    metrics.detection_latency.labels(kind="event").observe(0.02)
    metrics.detection_latency.labels(kind="timeout").observe(0.4)
    metrics.sweep_duration.observe(0.003)
    metrics.state_shards.labels(kind="order").set(10)
    metrics.pending_deadlines.set(7)
    metrics.rebalances.inc()
    metrics.shard_items.labels(stage="routed").inc(4)
    metrics.shard_items.labels(stage="applied").inc(3)
    metrics.source_silent.labels(source="oms").set(0)
    metrics.last_event_timestamp.labels(topic="orders").set(1_790_000_000.0)
    metrics.ready.set(1)
    metrics.exceptions_by_status.labels(rule_id="inventory.oversold", status="acknowledged").set(1)
    metrics.time_to_acknowledge.labels(rule_id="inventory.oversold", owner="warehouse").observe(
        240.0
    )
    metrics.time_to_resolve.labels(
        rule_id="inventory.oversold", owner="warehouse", resolved_by="operator"
    ).observe(3600.0)
    metrics.commands.labels(type="command.acknowledge", result="accepted").inc()
    metrics.commands.labels(type="command.snooze", result="invalid_transition").inc()
    metrics.rules_version.labels(version="0123456789ab").set(1)
    metrics.shard_cache_lookups.labels(result="hit").inc(9)
    metrics.shard_cache_lookups.labels(result="miss").inc(1)
    metrics.shard_cache_shards.set(10)
    metrics.shard_cache_bytes.set(4_096)
    metrics.state_changelog_offset.labels(partition="0").set(1234)
    metrics.state_restore_seconds.set(0.5)
    metrics.action_events.labels(type="order.resync_status", status="planned").inc()
    metrics.set_paused(["payment.refund"])
    metrics.kpi_total.labels(kpi="payment_success_rate", dimension="alipay").inc(10)
    metrics.kpi_successes.labels(kpi="payment_success_rate", dimension="alipay").inc(9)
