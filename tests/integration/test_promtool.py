"""The Prometheus rules and our scrape output, checked by Prometheus's own tool.

promtool is the only judge that counts here: a rule file that Python's YAML loader accepts can
still be rejected by Prometheus, and an alert can be syntactically fine and never fire.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from orderwatch.metrics import Metrics
from tests.metrics_samples import fill_sample_values

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
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
    result = _promtool("test", "rules", str(PROMETHEUS_DIR / "alerts.test.yaml"))

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
