"""``orderwatch rules check`` on overrides and calendars: every mistake names its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from orderwatch.cli import app
from orderwatch.errors import RuleFileError, RuleSetError
from orderwatch.rulefiles import load_catalog
from tests.unit.tuning.books import rules_dir

HEAD = """rule_id: logistics.tracking_stale
title: Tracking has not moved
category: logistics
severity: medium
owner: logistics
params:
  threshold: 72h
summary: 'Order {order_id}: no tracking update since {last_event_at} ({threshold}).'
actions:
- Query the carrier.
overrides:
"""  # overrides start on line 12


def _check(tmp: Path, overrides: str, calendar: str | None = None) -> RuleFileError:
    folder = rules_dir(tmp, {}, calendar)
    (folder / "logistics.tracking_stale.yaml").write_text(HEAD + overrides, encoding="utf-8")
    with pytest.raises(RuleFileError) as info:
        load_catalog(folder)
    return info.value


@pytest.mark.parametrize(
    ("overrides", "line", "words"),
    [
        (
            "- when: {carrier: sf}\n  params: {threshold: 24h}\n"
            "- when: {colour: red}\n  params: {threshold: 1h}\n",
            14,
            "unknown field 'colour'",
        ),
        (
            "- when: {carrier: sf}\n  params: {threshold: 24h}\n"
            "- when: {channel: app}\n  params: {threshold: 48h}\n",
            14,
            "ambiguous override",
        ),
        (
            "- when: {carrier: sf}\n  params: {threshold: 24h}\n"
            "- when: {carrier: sf}\n  severity: low\n",
            14,
            "unreachable",
        ),
        ("- when: {country: cn}\n  params: {threshold: 24h}\n", 12, "unreachable"),
        ("- when: {carrier: sf}\n  params: {treshold: 24h}\n", 13, "treshold"),
        ("- when: {carrier: sf}\n  params: {threshold: soon}\n", 13, "not a duration"),
        ("- when: {carrier: sf}\n", 12, "changes nothing"),
        ("- when: {period: double12}\n  params: {threshold: 96h}\n", 12, "unknown period"),
        ("- when: {carrier: sf}\n  working_hours: night\n", 13, "unknown working_hours"),
        ("- when: {}\n  params: {threshold: 1h}\n", 12, "when"),
    ],
)
def test_each_mistake_names_file_and_line(
    tmp_path: Path, overrides: str, line: int, words: str
) -> None:
    error = _check(tmp_path, overrides)
    assert error.path.endswith("logistics.tracking_stale.yaml")
    assert error.line == line, error
    assert words in error.message


def test_a_more_specific_override_settles_an_overlap(tmp_path: Path) -> None:
    folder = rules_dir(tmp_path, {}, None)
    text = HEAD + (
        "- when: {carrier: sf}\n  params: {threshold: 24h}\n"
        "- when: {channel: app}\n  params: {threshold: 48h}\n"
        "- when: {carrier: sf, channel: app}\n  params: {threshold: 30h}\n"
    )
    (folder / "logistics.tracking_stale.yaml").write_text(text, encoding="utf-8")
    assert len(load_catalog(folder)["logistics.tracking_stale"].tuning.overrides) == 3


def test_rules_that_span_many_orders_match_on_the_period_only(tmp_path: Path) -> None:
    folder = rules_dir(
        tmp_path, {"fraud.address_cluster": {"overrides": [{"when": {"channel": "app"}}]}}
    )
    with pytest.raises(RuleFileError, match=r"unknown field 'channel'.*can match: period"):
        load_catalog(folder)


@pytest.mark.parametrize(
    ("calendar", "line", "words"),
    [
        (
            "periods:\n  d11:\n    start: 2026-11-10\n    end: 2026-11-20\n"
            "    time_zone: Asia/Shangai\n",
            5,
            "unknown time zone",
        ),
        (
            "periods:\n  d11:\n    start: 2026-11-10\n    end: 2026-11-01\n"
            "    time_zone: Asia/Shanghai\n",
            4,
            "end before start",
        ),
        (
            "periods:\n  d11:\n    start: 2026-11-10\n    end: 2026-11-20\n"
            "    time_zone: Asia/Shanghai\n    scale:\n      fraud.shared_phone: 2\n",
            7,
            "order timeouts only",
        ),
        (
            "working_hours:\n  day:\n    time_zone: Asia/Shanghai\n    days: [mon, tue]\n"
            "    hours: ['18:00-09:00']\n",
            5,
            "09:00-18:00",
        ),
    ],
)
def test_calendar_mistakes_name_their_line(
    tmp_path: Path, calendar: str, line: int, words: str
) -> None:
    folder = rules_dir(tmp_path, {}, calendar)
    with pytest.raises(RuleFileError) as info:
        load_catalog(folder)
    assert info.value.path.endswith("calendars.yaml")
    assert info.value.line == line, info.value
    assert words in info.value.message


def test_the_cli_prints_the_location_and_fails(tmp_path: Path) -> None:
    error = _check(tmp_path, "- when: {colour: red}\n  params: {threshold: 1h}\n")
    result = CliRunner().invoke(app, ["rules", "check", str(Path(error.path).parent)])
    assert result.exit_code == 1
    assert "logistics.tracking_stale.yaml:12: overrides[0].when: unknown field" in result.output


def test_every_broken_file_is_reported_in_one_run(tmp_path: Path) -> None:
    folder = rules_dir(tmp_path, {"payment.duplicate": {"severity": "urgent"}})
    (folder / "logistics.tracking_stale.yaml").write_text(
        HEAD + "- when: {colour: red}\n  params: {threshold: 1h}\n", encoding="utf-8"
    )
    with pytest.raises(RuleSetError) as info:
        load_catalog(folder)
    assert [Path(e.path).name for e in info.value.errors] == [
        "logistics.tracking_stale.yaml",
        "payment.duplicate.yaml",
    ]
    # still one RuleFileError to callers that report one problem: the first file's
    assert isinstance(info.value, RuleFileError)
    assert info.value.path.endswith("logistics.tracking_stale.yaml") and info.value.line == 12
    result = CliRunner().invoke(app, ["rules", "check", str(folder)])
    assert result.exit_code == 1
    lines = [x for x in result.output.splitlines() if x.startswith("error: ")]
    assert len(lines) == 2, result.output
    assert "logistics.tracking_stale.yaml:12: overrides[0].when: unknown field" in lines[0]
    assert "payment.duplicate.yaml" in lines[1] and "severity" in lines[1]
