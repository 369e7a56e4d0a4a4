"""The Prometheus rules and our scrape output, checked by Prometheus's own tool.

promtool is the only judge that counts here: a rule file that Python's YAML loader accepts can
still be rejected by Prometheus, and an alert can be syntactically fine and never fire.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from orderwatch.metrics import Metrics
from tests.metrics_samples import fill_sample_values

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS_DIR = DEPLOY_DIR / "prometheus"
DASHBOARD = DEPLOY_DIR / "grafana" / "dashboards" / "orderwatch.json"
# What Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$instance": ".*"}
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not on PATH: run deploy/install-ci-tools.sh (Debian package prometheus)",
)


def _promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_rules_are_valid() -> None:
    result = _promtool("check", "rules", str(PROMETHEUS_DIR / "alerts.yaml"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_behaves_as_its_unit_tests_say() -> None:
    # alerts.long.test.yaml: the day- and week-long cases, at a 5-minute evaluation interval
    result = _promtool(
        "test",
        "rules",
        str(PROMETHEUS_DIR / "alerts.test.yaml"),
        str(PROMETHEUS_DIR / "alerts.long.test.yaml"),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_scrape_output_has_no_lint_problems() -> None:
    metrics = Metrics()
    fill_sample_values(metrics)

    result = _promtool("check", "metrics", stdin=metrics.render())

    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip() == ""


def test_the_lint_catches_a_badly_named_metric() -> None:
    """Proves the check above can fail: promtool does lint what we feed it."""
    bad = (
        b"# HELP orderwatch_latency_ms x\n"
        b"# TYPE orderwatch_latency_ms counter\n"
        b"orderwatch_latency_ms 1\n"
    )

    result = _promtool("check", "metrics", stdin=bad)

    assert result.returncode != 0
    assert "orderwatch_latency_ms" in result.stdout + result.stderr


def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    """Grafana shows a broken query only as an error on one panel; promtool fails loudly.

    Each panel target becomes a recording rule in a throwaway file, which promtool parses.
    """
    rules = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            rules.append(
                {"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": expr}
            )
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    result = _promtool("check", "rules", str(path))

    assert rules
    assert result.returncode == 0, result.stdout + result.stderr
