"""Limits per action type (CONTRACT section 10): at most N requested in any (t - 60 min, t],
beyond it throttled; 11 failed of the last 20 results pause the type for 10 minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orderwatch.engine import Engine
from orderwatch.engine.actions import paused_types
from orderwatch.engine.state import ACTIONS
from orderwatch.events.codec import decode_event
from orderwatch.rulefiles import load_catalog
from tests.factories import created, paid, plus, to_jsonl
from tests.unit.actions.book import result, rules_with, run

PNU = "payment.paid_not_updated"
AUTO = "- type: order.resync_status\n  mode: auto\n"


def _late(oid: str, at: str) -> list[dict[str, Any]]:
    """An order whose payment is read and whose status never follows: a resync at at + 10m."""
    return [created(oid, at), paid(oid, at, payment_id=f"P-{oid}")]


def _ticks(start: str, minutes: int) -> list[dict[str, Any]]:
    """Orders created every 30 s at :15 and :45 that raise nothing: they move the clock, so a
    deadline at :00 or :30 fires 15 s later, as a live worker's sweep would."""
    return [created(f"T{i}", plus(start, seconds=15 + 30 * i)) for i in range(minutes * 2)]


def _in_time(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: str(e["occurred_at"]))


def test_the_n_plus_first_within_an_hour_is_throttled_and_the_window_slides(
    tmp_path: Path,
) -> None:
    rules = rules_with(tmp_path, PNU, AUTO.rstrip("\n") + "\n  max_per_hour: 3\n")
    events: list[dict[str, Any]] = []
    for i in range(4):  # raised at 10:10, 10:20, 10:30, 10:40
        events += _late(f"O{i}", plus("10:00", minutes=10 * i))
    events += _late("O4", "11:00")  # raised 11:10: the 10:10 one has left (10:10, 11:10]
    events += _late("O5", "11:05")  # 11:15: 10:20, 10:30, 11:10 are inside -> throttled
    r = run(_in_time(events + _ticks("10:00", 80)), until="12:00", rules=rules)
    assert r.statuses() == ["requested"] * 3 + ["throttled", "requested", "throttled"]


def test_the_limit_counts_requested_only(tmp_path: Path) -> None:
    # dry_run plans are not requests: a hundred and one plans within the hour are all planned
    events: list[dict[str, Any]] = []
    for i in range(101):
        events += _late(f"O{i}", plus("10:00", seconds=10 * i))
    r = run(events, until="11:00")
    assert set(r.statuses()) == {"planned"} and len(r.actions) == 101


def _failing_day(
    rules: Path, n: int, fail: int, failed: set[int] | None = None
) -> list[dict[str, Any]]:
    """``n`` resyncs requested 30 s apart from 10:10:15, the first ``fail`` answered failed 5 s
    after their request, the rest succeeded."""
    events = [e for i in range(n) for e in _late(f"O{i}", plus("10:00", seconds=30 * i))]
    base = run(_in_time(events + _ticks("10:00", 30)), until="10:40", rules=rules)
    assert [a.order_id for a in base.actions] == [f"O{i}" for i in range(n)]
    for i, a in enumerate(base.actions):
        bad = i < fail if failed is None else i in failed
        events.append(result(not bad, a, plus("10:10", seconds=30 * i + 20)))
    return events


def test_eleven_failed_of_twenty_open_the_breaker_then_it_closes(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, PNU, AUTO)
    events = _failing_day(rules, 11, 11)  # the 11th failure at 10:15:20: paused to 10:25:20
    events += _late("X1", "10:06")  # raised 10:16:15: paused
    events += _late("X2", "10:16")  # raised 10:26:15: the breaker closed at 10:25:20
    r = run(_in_time(events + _ticks("10:00", 60)), until="11:00", rules=rules)
    xs = [a for a in r.actions if a.order_id in ("X1", "X2")]
    assert [(a.order_id, a.status) for a in xs] == [("X1", "paused"), ("X2", "requested")]


def test_ten_failed_of_twenty_keep_it_closed(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, PNU, AUTO)
    events = _failing_day(rules, 20, 10)
    events += _late("X1", "10:11")
    r = run(_in_time(events + _ticks("10:00", 60)), until="11:00", rules=rules)
    [x] = [a for a in r.actions if a.order_id == "X1"]
    assert x.status == "requested"


def test_only_the_last_twenty_results_count(tmp_path: Path) -> None:
    # 11 failures in all, but never 11 among the last 20: 10 failed, 10 succeeded, 1 failed
    rules = rules_with(tmp_path, PNU, AUTO)
    events = _failing_day(rules, 21, 0, failed={*range(10), 20})
    events += _late("X1", "10:11")  # raised 10:21:15, after all 21 results
    r = run(_in_time(events + _ticks("10:00", 60)), until="11:00", rules=rules)
    [x] = [a for a in r.actions if a.order_id == "X1"]
    assert x.status == "requested"
    # one more failure among them would have paused it
    events = _failing_day(rules, 21, 0, failed={*range(11), 20})
    events += _late("X1", "10:11")
    r = run(_in_time(events + _ticks("10:00", 60)), until="11:00", rules=rules)
    [x] = [a for a in r.actions if a.order_id == "X1"]
    assert x.status == "paused"


def test_paused_types_are_visible_on_the_action_shard(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, PNU, AUTO)
    events = _failing_day(rules, 11, 11)
    engine = Engine(load_catalog(rules))
    last = 0.0
    for raw in to_jsonl(_in_time(events + _ticks("10:00", 16))).splitlines():
        ev = decode_event(raw)
        last = max(last, ev.occurred_ts)
        engine.step(ev, last)
    shard = engine.shards.get(ACTIONS)
    assert paused_types(shard, last) == ["order.resync_status"]
    assert paused_types(shard, last + 601) == []
