"""Overrides and calendars live equal replay: the worker (event time) with a tuned rule set
publishes exactly what ``orderwatch replay`` of the same events with the same rules gives.

The tuned set shortens and lengthens timeouts by carrier and channel, scales two timeouts during a
promotion that covers the generated day, and counts ``not_shipped`` in working hours for the app
channel; the test first checks, offline, that the tuning changes what is raised (so the live run
has something to agree on).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from orderwatch.broker import EmbeddedBroker
from orderwatch.engine import Engine
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from tests.factories import to_jsonl
from tests.integration.harness import Collector, Topics, WorkerProcess, produce
from tests.integration.test_worker_runtime import Key, _key, converge, scenario
from tests.unit.tuning.books import rules_dir

pytestmark = pytest.mark.integration

CALENDAR = """
periods:
  promotion:
    start: 2026-11-20
    end: 2026-11-21
    time_zone: Asia/Shanghai
    scale:
      logistics.tracking_stale: 2
      logistics.delivery_delayed: 1.5
working_hours:
  warehouse:
    time_zone: Asia/Shanghai
    days: [mon, tue, wed, thu, fri]
    hours: ["09:00-12:00", "13:00-18:00"]
"""
EDITS: dict[str, dict[str, object]] = {
    "logistics.tracking_stale": {
        "overrides": [
            {"when": {"carrier": "carrier-sf"}, "params": {"threshold": "24h"}},
            {
                "when": {"carrier": ["carrier-dhl", "carrier-ups"]},
                "params": {"threshold": "96h"},
                "severity": "low",
            },
        ]
    },
    "logistics.not_shipped": {
        "overrides": [
            {
                "when": {"channel": "app"},
                "working_hours": "warehouse",
                "params": {"threshold": "8h"},
            }
        ]
    },
    "payment.paid_not_updated": {
        "overrides": [{"when": {"method": "alipay"}, "params": {"threshold": "5m"}}]
    },
}


def replayed(events: list[dict[str, Any]], rules: Path | None) -> tuple[set[Key], list[Any]]:
    out, err = io.BytesIO(), io.StringIO()
    replay(io.BytesIO(to_jsonl(events)).readlines(), Engine(load_catalog(rules)), out, err)
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return {_key(e) for e in lines}, lines


async def test_a_tuned_rule_set_live_equals_replay(
    broker: EmbeddedBroker, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    topics = Topics()
    await topics.create(broker.bootstrap)
    rules = rules_dir(tmp_path, EDITS, CALENDAR)
    events = scenario(seed=11)
    plain, _ = replayed(events, None)
    expected, lines = replayed(events, rules)
    assert expected != plain, "the tuning changes what is raised"
    applied = {
        k
        for e in lines
        for k in ("override", "calendar", "working_hours")
        if k in e["evidence"]["values"]
    }
    assert applied == {"override", "calendar", "working_hours"}, applied
    workers.append(
        WorkerProcess(
            broker.bootstrap, topics, tmp_path, clock="event", rules_dir=str(rules)
        ).start()
    )
    async with Collector(broker.bootstrap, topics.exceptions) as out:
        await produce(broker.bootstrap, topics, list(events))
        await converge(out, expected, 120)
