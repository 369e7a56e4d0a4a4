"""Alerts, dashboard and docs must name metrics that the worker really exports.

A renamed metric does not break anything loudly: the alert simply never fires again and the
panel says "No data". These tests turn that silence into a failure. They read the files and a
real ``Metrics().render()`` scrape; no Prometheus or Grafana is needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orderwatch.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = [
    ROOT / "deploy" / "prometheus" / "alerts.test.yaml",
    ROOT / "deploy" / "prometheus" / "alerts.long.test.yaml",
]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "orderwatch.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
DASHBOARD_PROVIDERS = (
    ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "orderwatch.yaml"
)
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}


def _exported_series_names() -> set[str]:
    """Every series name a scrape of a fresh ``Metrics`` can contain.

    A labelled metric with no children renders only HELP and TYPE, so names come from the
    families and their types, not from the samples.
    """
    names: set[str] = set()
    for family in text_string_to_metric_families(Metrics().render().decode()):
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def _rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(ALERTS.read_text())["groups"]
    return groups


def _rules() -> Iterator[dict[str, Any]]:
    for group in _rule_groups():
        yield from group["rules"]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _dashboard_queries(node: Any) -> Iterator[str]:
    """PromQL in panel targets (``expr``) and in template variables (``query``/``definition``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"expr", "query", "definition"} and isinstance(value, str):
                yield value
            else:
                yield from _dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_queries(item)


def _metric_names(promql: str) -> set[str]:
    """The orderwatch series names in an expression (recording rules contain a colon)."""
    bare = _GRAFANA_VARIABLE.sub(" ", _STRING.sub('""', promql))
    return {token for token in _IDENTIFIER.findall(bare) if "orderwatch" in token}


def _used_names() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for rule in _rules():
        where = f"{ALERTS.name}: {rule.get('alert') or rule.get('record')}"
        used[where] = _metric_names(rule["expr"])
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        used[f"{DASHBOARD.name}: {panel['title']}"] = set().union(
            *(_metric_names(q) for q in _dashboard_queries(panel.get("targets", [])))
        )
    used[f"{DASHBOARD.name}: templating"] = set().union(
        *(_metric_names(q) for q in _dashboard_queries(dashboard["templating"]))
    )
    return used


def test_the_name_extraction_sees_through_strings_and_variables() -> None:
    expr = (
        'sum by (le) (rate(orderwatch_x_bucket{rule_id="orderwatch_fake", instance=~"$instance"}'
        "[$__rate_interval])) > rule_id:orderwatch_y:rate30m"
    )

    assert _metric_names(expr) == {"orderwatch_x_bucket", "rule_id:orderwatch_y:rate30m"}


def test_every_name_in_alerts_and_dashboard_is_exported_or_recorded() -> None:
    exported = _exported_series_names()
    recorded = {rule["record"] for rule in _rules() if "record" in rule}

    unknown = {
        where: sorted(names - exported - recorded)
        for where, names in _used_names().items()
        if names - exported - recorded
    }

    assert unknown == {}


def test_the_dashboard_uses_the_metrics_it_is_meant_to_show() -> None:
    shown = set().union(*_used_names().values())

    for name in (
        "orderwatch_events_consumed_total",
        "orderwatch_consumer_lag_messages",
        "orderwatch_event_time_lag_seconds_bucket",
        "orderwatch_exceptions_published_total",
        "orderwatch_open_exceptions",
        "orderwatch_invalid_messages_total",
        "orderwatch_detection_latency_seconds_bucket",
        "orderwatch_sweep_duration_seconds_bucket",
        "orderwatch_exceptions_by_status",
        "orderwatch_commands_total",
        "orderwatch_time_to_acknowledge_seconds_sum",
        "orderwatch_time_to_resolve_seconds_count",
    ):
        assert name in shown


def test_the_check_catches_a_misspelt_metric() -> None:
    exported = _exported_series_names()

    assert "orderwatch_event_consumed_total" not in exported
    assert "orderwatch_events_consumed_total" in exported
    assert "orderwatch_build_info" in exported


EXPECTED_ALERTS = {
    "OrderwatchWorkerDown",
    "OrderwatchConsumerLagGrowing",
    "OrderwatchEventTimeLagHigh",
    "OrderwatchDeadLetterRate",
    "OrderwatchExceptionRateAnomalous",
    "OrderwatchCriticalExceptionsOpen",
    "OrderwatchSourceSilent",
    "OrderwatchRulesVersionsDiffer",
    "OrderwatchRulesReloadRefused",
    "OrderwatchNotReady",
    "OrderwatchActionTypePaused",
    "OrderwatchKpiBelowThreshold",
    "OrderwatchKpiWeekOverWeekDrop",
}


def test_the_alert_set_is_complete() -> None:
    assert {alert["alert"] for alert in _alerts()} == EXPECTED_ALERTS


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: str(a["alert"]))
def test_every_alert_routes_and_explains_itself(alert: dict[str, Any]) -> None:
    assert alert["labels"]["severity"] in {"critical", "warning", "info"}
    for annotation in ("summary", "description", "runbook"):
        assert alert["annotations"].get(annotation), annotation
    assert f"docs/operations.md#{alert['alert'].lower()}" in alert["annotations"]["runbook"]


def test_every_alert_has_a_firing_and_a_quiet_promtool_case() -> None:
    cases: dict[str, set[bool]] = {}
    tests = [t for path in ALERT_TESTS for t in yaml.safe_load(path.read_text())["tests"]]
    for test in tests:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))

    assert cases == {name: {True, False} for name in EXPECTED_ALERTS}


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard_folder() -> None:
    datasources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    providers = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    dashboard = json.loads(DASHBOARD.read_text())

    assert [d["type"] for d in datasources] == ["prometheus"]
    assert providers[0]["type"] == "file"
    assert providers[0]["options"]["path"]
    assert dashboard["uid"] == "orderwatch"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_operations_doc_describes_every_metric_and_alert() -> None:
    doc = OPERATIONS_DOC.read_text()
    metric_names = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(Metrics().render().decode())
        if not family.name.endswith("_created")
    }

    missing_metrics = sorted(name for name in metric_names if f"`{name}`" not in doc)
    missing_alerts = sorted(name for name in EXPECTED_ALERTS if f"### {name}" not in doc)

    assert (missing_metrics, missing_alerts) == ([], [])
