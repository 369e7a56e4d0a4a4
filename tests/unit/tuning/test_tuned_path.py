"""The tuned path agrees with the fast path: a rule set whose overrides match nothing gives the
same exceptions, byte for byte, as the shipped rules on a simulated day with every anomaly.

``orders._desired`` keeps its fast arithmetic for rules without overrides or calendars; with them
``orders.anchors`` and the engine's resolution compute the deadlines. This holds the two together.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from orderwatch.engine import Engine, ReplayClock
from orderwatch.engine.orders import DELIVERY_DELAYED, TIMEOUTS, _desired, anchors
from orderwatch.engine.state import OrderShard
from orderwatch.events.codec import decode_event
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from orderwatch.simulation.traffic import SimConfig, Simulator, write_file
from tests.unit.tuning.books import rules_dir

NOWHERE = {"when": {"carrier": "no-such-carrier"}, "params": {"threshold": "1h"}}


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    path = tmp_path_factory.mktemp("tuned") / "day.jsonl"
    manifest = write_file(Simulator(SimConfig(seed=11, orders=400, anomaly_rate=0.2)), path)
    return path.read_bytes(), manifest["until"]


def _replay(data: bytes, until: str, rules: Path | None) -> tuple[bytes, Engine]:
    from datetime import datetime

    engine = Engine(load_catalog(rules))
    out = io.BytesIO()
    replay(
        io.BytesIO(data).readlines(),
        engine,
        out,
        io.StringIO(),
        datetime.fromisoformat(until.replace("Z", "+00:00")),
    )
    return out.getvalue(), engine


def test_overrides_that_match_nothing_change_nothing(
    day: tuple[bytes, str], tmp_path: Path
) -> None:
    data, until = day
    edits: dict[str, dict[str, object]] = {}
    for rule in TIMEOUTS:
        key = "grace" if rule.endswith(("orphan", "shipped_unpaid")) else "threshold"
        edits[rule] = {"overrides": [{**NOWHERE, "params": {key: "1h"}}]}
    tuned = rules_dir(tmp_path, edits)
    plain, _ = _replay(data, until, None)
    other, engine = _replay(data, until, tuned)
    assert engine.tuned_timeouts == frozenset(TIMEOUTS)
    assert plain and other == plain


def test_anchors_plus_thresholds_are_the_desired_deadlines(day: tuple[bytes, str]) -> None:
    """After every event, on the order it touched."""
    data, _ = day
    engine = Engine(load_catalog())
    clock = ReplayClock()
    checked = 0
    for line in data.splitlines():
        event = decode_event(line)
        engine.step(event, clock.observe(event.occurred_ts))
        shard = engine.shards.get(f"o:{getattr(event, 'order_id', None)}")
        if not isinstance(shard, OrderShard):
            continue
        expected = {
            rule: shard.promised_by
            if rule == DELIVERY_DELAYED and shard.promised_by is not None
            else anchor + engine.timeout_limits[rule]
            for rule, anchor in anchors(shard).items()
        }
        assert _desired(engine, shard) == expected, shard.key
        checked += bool(expected)
    assert checked > 1000
