"""The exported metric names, types and labels are an interface (alerts, dashboards): pin them."""

from __future__ import annotations

import platform

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from orderwatch import __version__
from orderwatch.metrics import DETECTION_KINDS, STATE_SHARD_KINDS, Metrics
from tests.metrics_samples import fill_sample_values

# (family name as the text parser reports it, type, label names of its main samples)
EXPECTED: dict[str, tuple[str, frozenset[str]]] = {
    "orderwatch_events_consumed": ("counter", frozenset({"topic", "type"})),
    "orderwatch_invalid_messages": ("counter", frozenset({"topic", "reason"})),
    "orderwatch_processing_errors": ("counter", frozenset({"stage", "exception"})),
    "orderwatch_exceptions_published": (
        "counter",
        frozenset({"rule_id", "severity", "owner", "state"}),
    ),
    "orderwatch_open_exceptions": ("gauge", frozenset({"rule_id"})),
    "orderwatch_consumer_lag_messages": ("gauge", frozenset({"topic", "partition"})),
    "orderwatch_event_time_lag_seconds": ("histogram", frozenset()),
    "orderwatch_detection_latency_seconds": ("histogram", frozenset({"kind"})),
    "orderwatch_sweep_duration_seconds": ("histogram", frozenset()),
    "orderwatch_state_shards": ("gauge", frozenset({"kind"})),
    "orderwatch_pending_deadlines": ("gauge", frozenset()),
    "orderwatch_rebalances": ("counter", frozenset()),
    "orderwatch_shard_items": ("counter", frozenset({"stage"})),
    "orderwatch_source_silent": ("gauge", frozenset({"source"})),
    "orderwatch_last_event_timestamp_seconds": ("gauge", frozenset({"topic"})),
    "orderwatch_ready": ("gauge", frozenset()),
    "orderwatch_shard_cache_lookups": ("counter", frozenset({"result"})),
    "orderwatch_shard_cache_shards": ("gauge", frozenset()),
    "orderwatch_shard_cache_bytes": ("gauge", frozenset()),
    "orderwatch_parked_events": ("gauge", frozenset()),
    "orderwatch_inputs_paused": ("gauge", frozenset()),
    "orderwatch_state_changelog_offset": ("gauge", frozenset({"partition"})),
    "orderwatch_state_restore_seconds": ("gauge", frozenset()),
    "orderwatch_action_events": ("counter", frozenset({"type", "status"})),
    "orderwatch_action_type_paused": ("gauge", frozenset({"type"})),
    "orderwatch_kpi": ("counter", frozenset({"kpi", "dimension"})),
    "orderwatch_kpi_successes": ("counter", frozenset({"kpi", "dimension"})),
    # An Info is a gauge named ``<name>_info`` in the text format.
    "orderwatch_build_info": ("gauge", frozenset({"version", "python"})),
    # v2: the operators' loop
    "orderwatch_exceptions_by_status": ("gauge", frozenset({"rule_id", "status"})),
    "orderwatch_time_to_acknowledge_seconds": ("histogram", frozenset({"rule_id", "owner"})),
    "orderwatch_time_to_resolve_seconds": (
        "histogram",
        frozenset({"rule_id", "owner", "resolved_by"}),
    ),
    "orderwatch_commands": ("counter", frozenset({"type", "result"})),
    "orderwatch_rules_version_info": ("gauge", frozenset({"version"})),
    "orderwatch_rules_reloads": ("counter", frozenset({"result"})),
}

# Anything that identifies one order or one person must never be a label.
FORBIDDEN_LABELS = {"order_id", "customer_id", "event_id", "exception_id", "phone", "address"}


def _scrape(metrics: Metrics) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    families = text_string_to_metric_families(metrics.render().decode())
    return {
        f.name: (f.type, [(s.name, dict(s.labels), s.value) for s in f.samples])
        for f in families
        if not f.name.endswith("_created")
    }


def test_every_metric_is_exported_with_its_name_type_and_labels() -> None:
    metrics = Metrics()
    fill_sample_values(metrics)

    scraped = _scrape(metrics)

    assert set(scraped) == set(EXPECTED)
    for name, (kind, labels) in EXPECTED.items():
        scraped_kind, samples = scraped[name]
        assert scraped_kind == kind, name
        assert samples, f"{name} has no sample"
        for _, sample_labels, _ in samples:
            assert set(sample_labels) - {"le"} == labels, name
            assert not FORBIDDEN_LABELS & set(sample_labels), name


def test_a_fresh_registry_is_created_and_the_global_one_is_left_alone() -> None:
    first, second = Metrics(), Metrics()  # a second one must not raise "Duplicated timeseries"

    assert first.registry is not second.registry
    assert first.registry is not REGISTRY
    assert REGISTRY.get_sample_value("orderwatch_rebalances_total") is None


def test_an_injected_registry_receives_the_metrics() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)

    metrics.rebalances.inc(2)

    assert metrics.registry is registry
    assert registry.get_sample_value("orderwatch_rebalances_total") == 2


def test_values_move_and_render_shows_them() -> None:
    metrics = Metrics()
    reg = metrics.registry
    labels = {"topic": "orders", "type": "order.created"}
    assert reg.get_sample_value("orderwatch_events_consumed_total", labels) is None

    metrics.events_consumed.labels(**labels).inc()
    metrics.events_consumed.labels(**labels).inc()
    metrics.event_time_lag.observe(90_000)  # more than a day late: only +Inf holds it
    metrics.ready.set(1)

    assert reg.get_sample_value("orderwatch_events_consumed_total", labels) == 2
    assert reg.get_sample_value("orderwatch_event_time_lag_seconds_bucket", {"le": "86400.0"}) == 0
    assert reg.get_sample_value("orderwatch_event_time_lag_seconds_bucket", {"le": "+Inf"}) == 1
    assert reg.get_sample_value("orderwatch_ready") == 1
    assert (
        b'orderwatch_events_consumed_total{topic="orders",type="order.created"} 2.0'
        in metrics.render()
    )


def test_event_time_lag_buckets_reach_a_day() -> None:
    metrics = Metrics()
    metrics.event_time_lag.observe(86_400)

    reg = metrics.registry
    assert reg.get_sample_value("orderwatch_event_time_lag_seconds_bucket", {"le": "86400.0"}) == 1


@pytest.mark.parametrize("kind", DETECTION_KINDS)
def test_detection_latency_kinds_exist_before_the_first_detection(kind: str) -> None:
    count = Metrics().registry.get_sample_value(
        "orderwatch_detection_latency_seconds_count", {"kind": kind}
    )

    assert count == 0


def test_state_shard_kinds_exist_before_the_first_report() -> None:
    reg = Metrics().registry

    values = {
        k: reg.get_sample_value("orderwatch_state_shards", {"kind": k}) for k in STATE_SHARD_KINDS
    }

    assert values == dict.fromkeys(STATE_SHARD_KINDS, 0.0)


def test_build_info_names_the_version_and_python() -> None:
    value = Metrics().registry.get_sample_value(
        "orderwatch_build_info",
        {"version": __version__, "python": platform.python_version()},
    )

    assert value == 1
