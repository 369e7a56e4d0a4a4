"""Rule book: a new rule set in the middle of open timeouts and open exceptions.

``Engine.set_rules`` is what a worker calls between batches when its rules directory changed;
these cases pin what docs/contract.md promises ("A new rule set"): deadlines already scheduled
follow the new thresholds from then on; an open exception keeps its id and escalates by the new
``escalate_after`` from the start of the interval in progress.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from orderwatch.engine import Engine
from orderwatch.engine.catalog import format_duration, parse_duration
from orderwatch.events.codec import decode_event
from orderwatch.events.exception import ExceptionEvent
from orderwatch.rulefiles import load_catalog
from tests.factories import created, paid, plus, status, to_jsonl
from tests.unit.tuning.books import rules_dir

NOT_SHIPPED = "logistics.not_shipped"
PAID = "2026-11-20T10:00:00Z"


def _t(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()


class Scenario:
    """An engine fed event by event on the replay clock, with a reload in between."""

    def __init__(self, rules: Path | None = None) -> None:
        self.engine = Engine(load_catalog(rules))
        self.out: list[ExceptionEvent] = []
        self.now = 0.0

    def feed(self, *events: dict[str, Any]) -> None:
        for raw in to_jsonl(list(events)).splitlines():
            event = decode_event(raw)
            self.now = max(self.now, event.occurred_ts)
            self.out += self.engine.step(event, self.now)

    def sweep(self, at: str) -> list[ExceptionEvent]:
        self.now = max(self.now, _t(at))
        fresh = self.engine.sweep(self.now)
        self.out += fresh
        return fresh

    def reload(self, folder: Path) -> None:
        self.engine.set_rules(load_catalog(folder))


def _paid_order(s: Scenario) -> None:
    s.feed(created("O1", plus(PAID, minutes=-5)), paid("O1", PAID), status("O1", "paid", PAID))


@pytest.mark.parametrize(("threshold", "hours"), [("24h", 24), ("72h", 72), ("5h", 5)])
def test_a_scheduled_deadline_follows_the_new_threshold(
    tmp_path: Path, threshold: str, hours: int
) -> None:
    """Paid at 10:00 with 48h to ship; ten hours later the threshold changes."""
    s = Scenario()
    _paid_order(s)
    assert s.sweep(plus(PAID, hours=10)) == []
    s.reload(rules_dir(tmp_path, {NOT_SHIPPED: {"params": {"threshold": threshold}}}))
    due = plus(PAID, hours=hours)
    if hours > 10:
        assert s.sweep(due) == [], "the new deadline, not a second earlier"
        fired = s.sweep(plus(due, seconds=1))
    else:  # already passed: the next sweep fires it
        fired = s.sweep(plus(PAID, hours=10, seconds=0.5))
    # (a deadline 5h after payment found at 10h escalates at once too: 4h after its event time)
    [raised] = [e for e in fired if e.state == "raised"]
    assert raised.rule_id == NOT_SHIPPED
    assert raised.event_time == datetime.fromisoformat(due), "event_time: the new deadline"
    assert raised.evidence.values["threshold"] == format_duration(parse_duration(threshold))
    assert [e.state for e in s.sweep(plus(PAID, hours=hours + 3))] == []


def test_an_open_exception_escalates_on_the_new_interval(tmp_path: Path) -> None:
    """Raised at paid+48h (medium: escalate every 4h). One hour later escalate_after becomes 2h
    and the owner changes: the interval in progress (from 48h) ends at 50h, not 52h, and the
    escalation names the new owner; then never: no more escalations."""
    s = Scenario()
    _paid_order(s)
    [raised] = s.sweep(plus(PAID, hours=48, seconds=1))
    assert raised.owner == "warehouse"
    s.sweep(plus(PAID, hours=49))
    s.reload(
        rules_dir(tmp_path / "a", {NOT_SHIPPED: {"escalate_after": "2h", "owner": "logistics"}})
    )
    assert s.sweep(plus(PAID, hours=50)) == []
    [escalated] = s.sweep(plus(PAID, hours=50, seconds=1))
    assert (escalated.state, escalated.escalation_level) == ("escalated", 1)
    assert escalated.exception_id == raised.exception_id
    assert escalated.owner == "logistics"
    assert escalated.event_time == raised.event_time and escalated.summary == raised.summary
    s.reload(rules_dir(tmp_path / "b", {NOT_SHIPPED: {"escalate_after": "never"}}))
    assert s.sweep(plus(PAID, days=5)) == []


def test_a_switched_off_rule_stops_its_timeouts_and_escalations(tmp_path: Path) -> None:
    s = Scenario()
    _paid_order(s)
    s.feed(created("O2", plus(PAID, minutes=-5)), paid("O2", plus(PAID, hours=10)))
    s.feed(status("O2", "paid", plus(PAID, hours=10)))
    [raised] = s.sweep(plus(PAID, hours=48, seconds=1))
    assert raised.order_id == "O1"
    s.reload(rules_dir(tmp_path, {NOT_SHIPPED: {"enabled": False}}))
    assert s.sweep(plus(PAID, days=5)) == [], "O2's deadline and O1's escalation are gone"


def test_an_invalid_set_never_reaches_the_engine(tmp_path: Path) -> None:
    from orderwatch.errors import RuleFileError

    folder = rules_dir(tmp_path, {NOT_SHIPPED: {"params": {"threshold": "soon"}}})
    with pytest.raises(RuleFileError):
        load_catalog(folder)


def test_replay_equals_a_reload_free_run_when_the_set_is_unchanged(tmp_path: Path) -> None:
    """Reloading the same rules changes nothing (no deadline moves, no event)."""
    a, b = Scenario(), Scenario()
    events = [created("O1", plus(PAID, minutes=-5)), paid("O1", PAID)]
    for s in (a, b):
        s.feed(*events)
        s.sweep(plus(PAID, hours=10))
    b.reload(rules_dir(tmp_path, {}))
    for s in (a, b):
        s.sweep(plus(PAID, days=3))
    assert [e.model_dump() for e in a.out] == [e.model_dump() for e in b.out]
